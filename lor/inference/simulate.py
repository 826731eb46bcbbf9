"""Simulated catalogs: prior -> emulator -> data model -> selection.

The same function makes estimator training pairs, held-out validation sets, the shipped
example catalog and the calibration test surveys, so every one of them is drawn the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from lor.inference.data_model import DataModel
from lor.inference.prior import PopulationPrior
from lor.units import njy_to_abmag

if TYPE_CHECKING:
    from lor.emulators.protocol import Emulator


@dataclass
class SimulatedCatalog:
    theta: np.ndarray  # (N, D) true parameters
    flux: np.ndarray  # (N, B) observed fluxes, nJy
    flux_err: np.ndarray  # (N, B) reported 1-sigma errors, nJy
    true_flux: np.ndarray  # (N, B) noiseless fluxes, nJy
    years: np.ndarray  # (N,) survey depth in years

    def __len__(self) -> int:
        return len(self.theta)

    def subset(self, mask: np.ndarray) -> SimulatedCatalog:
        return SimulatedCatalog(
            *(getattr(self, f)[mask] for f in ("theta", "flux", "flux_err", "true_flux", "years"))
        )


ROUND_MAX = 2_000_000
"""Most prior draws simulated in one round of :func:`simulate_catalog` (~0.5 GB of arrays)."""


def observed_mag(flux: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(flux > 0, njy_to_abmag(np.maximum(flux, 1e-30)), np.inf)


def simulate_catalog(
    n: int,
    emulator: Emulator,
    prior: PopulationPrior | None = None,
    data_model: DataModel | None = None,
    seed: int = 0,
    years: float | tuple[float, float] = 10.0,
    error_scatter: float = 0.0,
    zeropoint_offset: np.ndarray | None = None,
    noise_scale: np.ndarray | None = None,
    select: bool = True,
    max_draws: int = 1000,
    depth_offset_mag: tuple[float, float] = (0.0, 0.0),
    floor_mag: tuple[float, float] | float = 0.0,
    hidden_floor_mag: np.ndarray | None = None,
) -> SimulatedCatalog:
    """Draw ``n`` objects that pass the prior's selection (``i_obs < 25.3`` by default).

    ``years`` is a depth or a (low, high) range drawn log-uniformly per object, so an
    estimator trained on it serves catalogs of any depth in between. ``depth_offset_mag``
    (low, high) moves each band's depth on its own, uniformly per object and band;
    ``floor_mag`` is a fractional error floor (mag) or a (low, high) range drawn
    log-uniformly per object and band (see :meth:`DataModel.observe`). Together they make
    catalogs whose errors do not follow one depth formula, as real catalogs' do not.
    ``hidden_floor_mag`` (B,) is model error the reported errors do not carry.
    """
    prior = prior or PopulationPrior()
    data_model = data_model or DataModel(bands=emulator.band_names)
    rng = np.random.default_rng(seed)
    band = emulator.band_names.index(prior.selection["band"]) if select else None
    parts: list[SimulatedCatalog] = []
    have = drawn = 0
    for _ in range(max_draws):
        # Each round is sized by the acceptance so far (a prior of real galaxies keeps ~7%
        # at i < 25.3, the interim prior ~55%), at most ROUND_MAX draws to bound memory.
        rate = max(have / drawn, 1e-3) if drawn else 0.5
        m = int(min(max(1.2 * (n - have) / rate, 1024), ROUND_MAX))
        theta = prior.sample(m, seed=int(rng.integers(2**31 - 1)))
        drawn += m
        true_flux = emulator.fluxes_njy(theta)
        if isinstance(years, tuple):
            yrs = 10.0 ** rng.uniform(np.log10(years[0]), np.log10(years[1]), m)
        else:
            yrs = np.full(m, float(years))
        shape = true_flux.shape
        depth = None
        if depth_offset_mag != (0.0, 0.0):
            depth = rng.uniform(depth_offset_mag[0], depth_offset_mag[1], shape)
        floor = _draw_floor(floor_mag, shape, rng)
        flux, err = data_model.observe(
            true_flux, rng, yrs, zeropoint_offset, noise_scale, error_scatter=error_scatter,
            depth_offset=depth, floor_mag=floor, hidden_floor_mag=hidden_floor_mag,
        )  # fmt: skip
        keep = np.ones(m, bool)
        if band is not None:
            keep = observed_mag(flux[:, band]) < prior.selection["mag_max"]
        parts.append(
            SimulatedCatalog(theta[keep], flux[keep], err[keep], true_flux[keep], yrs[keep])
        )
        have += int(keep.sum())
        if have >= n:
            break
    cat = SimulatedCatalog(
        *(
            np.concatenate([getattr(p, f) for p in parts])[:n]
            for f in ("theta", "flux", "flux_err", "true_flux", "years")
        )
    )
    if len(cat) < n:
        raise RuntimeError(f"selection kept only {len(cat)} of {n} objects after {max_draws} draws")
    return cat


def _draw_floor(
    floor_mag: tuple[float, float] | float, shape: tuple[int, ...], rng: np.random.Generator
) -> np.ndarray | None:
    if isinstance(floor_mag, tuple):
        lo, hi = np.log(floor_mag[0]), np.log(floor_mag[1])
        return np.exp(rng.uniform(lo, hi, shape))
    return float(floor_mag) * np.ones(shape[-1]) if floor_mag else None
