"""Catalogs from models lor does not use: the misspecification suite (issue #12).

lor's own simulations are drawn from its own model, so they cannot tell whether posteriors
stay honest on real galaxies. Each *variant* here draws an LSST-like catalog from a model
that differs from lor's in one documented way -- bagpipes (Carnall et al. 2018, MNRAS 480,
4379) with other star-formation histories and dust laws, stronger nebular emission, lor's
own exact forward model under a population unlike its default prior, or errors from another
error model -- at LSST 10-year depth with the ``i < 25.3`` selection. Recipes and seeds live
in :data:`VARIANTS`; ``lor bench misspecified`` runs each one end to end.

Parameters start from a prior draw (z, mass formed, metallicity, the delayed-tau shape, dust,
log U); each variant maps them onto its own model. Candidates are pre-selected with the
shipped emulator (``i < 25.8``, half a magnitude looser than the cut, so no object the
variant would keep is lost before bagpipes is asked) and the cut is applied to the variant's
own observed magnitudes.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lor.inference.data_model import DataModel
from lor.inference.simulate import SimulatedCatalog, observed_mag
from lor.sps.parameters import ETA_BIRTH_CLOUD, PARAM_NAMES, T_BIRTH_CLOUD_GYR

PRESELECT_MARGIN_MAG = 0.5


@dataclass(frozen=True)
class Variant:
    """One way the truth differs from lor's model."""

    name: str
    description: str
    model: str  # "bagpipes" or "lor" (lor's exact forward model)
    seed: int
    prior: dict[str, Any] = field(default_factory=dict)  # prior record; {} = estimator's
    sfh: str = "delayed"  # bagpipes: delayed, dblplaw, burst, constant
    dust: str = "CF00"  # bagpipes: CF00, Calzetti, Salim
    log_u: tuple[float, float] | None = None  # nebular log U drawn U(lo, hi) instead
    depth_offset_mag: tuple[float, float] = (0.0, 0.0)
    error_scatter_dex: float = 0.0
    floor_mag: float = 0.0  # reported error floor
    noise_scale: float = 1.0  # true scatter over reported error


VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant("dblplaw-sfh", "bagpipes, double power-law SFH (peak time, rising and "
                "falling slopes drawn broadly), CF00 dust", "bagpipes", 1201, sfh="dblplaw"),
        Variant("burst-sfh", "bagpipes, delayed-tau SFH plus a recent burst of 1-20% of "
                "the mass, 10-300 Myr old", "bagpipes", 1202, sfh="burst"),
        Variant("constant-sfh", "bagpipes, constant SFH since age_frac x the age of the "
                "universe", "bagpipes", 1203, sfh="constant"),
        Variant("calzetti-dust", "bagpipes, Calzetti et al. (2000) attenuation for stars "
                "and lines", "bagpipes", 1204, dust="Calzetti"),
        Variant("salim-dust", "bagpipes, Salim et al. (2018) attenuation: Calzetti slope "
                "tilted by delta ~ U(-0.8, 0.2), 2175 A bump B = 1", "bagpipes", 1205,
                dust="Salim"),
        Variant("strong-nebular", "bagpipes, nebular emission at log U ~ U(-1.8, -1.0) "
                "(lines stronger than the prior's)", "bagpipes", 1206, log_u=(-1.8, -1.0)),
        Variant("other-population", "lor's exact forward model, population of the v1 "
                "Smail-form interim prior (median z 1.26 at i < 25.3)", "lor", 1207,
                prior={"family": "population", "family_version": "1"}),
        Variant("other-errors", "lor's exact forward model; errors from another error "
                "model: depths moved per object and band by U(-0.5, 0.5) mag, 0.15 dex "
                "scatter, a 0.01 mag reported floor, true scatter 1.2x the reported errors",
                "lor", 1208, depth_offset_mag=(-0.5, 0.5), error_scatter_dex=0.15,
                floor_mag=0.01, noise_scale=1.2),
    )
}  # fmt: skip
"""The suite: name -> recipe. Seeds are fixed so every run draws the same catalogs."""


def _bagpipes_components(variant: Variant, p: np.ndarray, t_univ: float, rng) -> dict:  # type: ignore[no-untyped-def]
    v = dict(zip(PARAM_NAMES, p, strict=True))
    zmet = float(10 ** v["log_zmet"])
    age = float(v["age_frac"] * t_univ)
    comps: dict[str, Any] = {"redshift": float(v["redshift"]), "t_bc": T_BIRTH_CLOUD_GYR}
    if variant.sfh == "dblplaw":
        comps["dblplaw"] = {
            "massformed": float(v["log_mstar"]), "metallicity": zmet,
            "tau": float(t_univ * rng.uniform(0.1, 0.95)),
            "alpha": float(10 ** rng.uniform(-0.3, 1.3)), "beta": float(10 ** rng.uniform(-0.3, 1.3)),
        }  # fmt: skip
    elif variant.sfh == "constant":
        comps["constant"] = {"massformed": float(v["log_mstar"]), "metallicity": zmet,
                             "age_max": max(age, 0.02), "age_min": 0.0}  # fmt: skip
    else:
        delayed = {"massformed": float(v["log_mstar"]), "metallicity": zmet,
                   "age": max(age, 0.02), "tau": float(10 ** v["log_tau"])}  # fmt: skip
        if variant.sfh == "burst":
            frac = 10 ** rng.uniform(-2.0, np.log10(0.2))
            delayed["massformed"] = float(v["log_mstar"] + np.log10(1 - frac))
            comps["burst"] = {"massformed": float(v["log_mstar"] + np.log10(frac)),
                              "metallicity": zmet,
                              "age": float(min(10 ** rng.uniform(-2.0, np.log10(0.3)), age))}  # fmt: skip
        comps["delayed"] = delayed
    if variant.dust == "CF00":
        comps["dust"] = {"type": "CF00", "Av": float(v["av"]), "n": float(v["dust_n"]),
                         "eta": ETA_BIRTH_CLOUD}  # fmt: skip
    elif variant.dust == "Salim":
        comps["dust"] = {"type": "Salim", "Av": float(v["av"]), "eta": ETA_BIRTH_CLOUD,
                         "delta": float(rng.uniform(-0.8, 0.2)), "B": 1.0}  # fmt: skip
    else:
        comps["dust"] = {"type": variant.dust, "Av": float(v["av"]), "eta": ETA_BIRTH_CLOUD}
    log_u = float(v["log_u"]) if variant.log_u is None else float(rng.uniform(*variant.log_u))
    comps["nebular"] = {"logU": log_u}
    return comps


class _BagpipesFluxes:
    """Noise-free fluxes (nJy) of a variant from bagpipes, one model reused per variant."""

    def __init__(self, variant: Variant, bands: list[str]) -> None:
        import bagpipes

        from lor.sps.bandpasses import load_bandpasses, write_filter_files

        self.variant = variant
        self._tmp = tempfile.TemporaryDirectory()
        self.filt_list = [
            str(p) for p in write_filter_files(load_bandpasses(bands), Path(self._tmp.name))
        ]
        self._bagpipes = bagpipes
        self._galaxy = None

    def __call__(self, theta: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        ages = np.asarray(self._bagpipes.utils.cosmo.age(theta[:, 0]).to("Gyr").value)
        out = np.empty((len(theta), len(self.filt_list)))
        for i, p in enumerate(theta):
            comps = _bagpipes_components(self.variant, p, float(ages[i]), rng)
            if self._galaxy is None:
                self._galaxy = self._bagpipes.model_galaxy(
                    comps, filt_list=self.filt_list, phot_units="mujy"
                )
            else:
                self._galaxy.update(comps)
            out[i] = self._galaxy.photometry * 1e3  # uJy -> nJy
        return out


def simulate_variant(
    variant: Variant,
    n: int,
    emulator,  # type: ignore[no-untyped-def]
    prior,  # type: ignore[no-untyped-def]  # the estimator's prior unless the variant names one
    progress: Callable[[int], None] | None = None,
) -> SimulatedCatalog:
    """``n`` objects of ``variant`` passing ``i < 25.3`` at LSST 10-year depth."""
    from lor.inference.prior_registry import PRIOR_FAMILIES, prior_from_record

    if variant.prior:
        record = dict(variant.prior)
        key = (record["family"], record["family_version"])
        record.setdefault("hyperparameters", dict(PRIOR_FAMILIES[key].defaults))
        prior = prior_from_record(record)
    bands = list(emulator.band_names)
    data_model = DataModel(bands=bands)
    sel = bands.index(prior.selection["band"])
    cut = float(prior.selection["mag_max"])
    rng = np.random.default_rng(variant.seed)
    if variant.model == "bagpipes":
        fluxes: Callable[[np.ndarray, np.random.Generator], np.ndarray] = _BagpipesFluxes(
            variant, bands
        )
    else:
        from lor.sps.model import SPSModel

        model = SPSModel(bands=bands)
        fluxes = lambda theta, _rng: model.fluxes_njy(theta)  # noqa: E731
    parts: list[SimulatedCatalog] = []
    have = 0
    while have < n:
        theta = prior.sample(max(4 * (n - have), 2000), seed=int(rng.integers(2**31 - 1)))
        emu_mag = observed_mag(emulator.fluxes_njy(theta)[:, sel])
        theta = theta[emu_mag < cut + PRESELECT_MARGIN_MAG][: int(1.25 * (n - have)) + 50]
        true_flux = fluxes(theta, rng)
        depth = None
        if variant.depth_offset_mag != (0.0, 0.0):
            depth = rng.uniform(*variant.depth_offset_mag, true_flux.shape)
        flux, err = data_model.observe(
            true_flux, rng, 10.0, noise_scale=np.full(len(bands), variant.noise_scale),
            error_scatter=variant.error_scatter_dex, depth_offset=depth,
            floor_mag=np.full(len(bands), variant.floor_mag) if variant.floor_mag else None,
        )  # fmt: skip
        keep = observed_mag(flux[:, sel]) < cut
        parts.append(SimulatedCatalog(theta[keep], flux[keep], err[keep], true_flux[keep],
                                      np.full(int(keep.sum()), 10.0)))  # fmt: skip
        have += int(keep.sum())
        if progress is not None:
            progress(int(keep.sum()))
    return SimulatedCatalog(
        *(np.concatenate([getattr(p, f) for p in parts])[:n]
          for f in ("theta", "flux", "flux_err", "true_flux", "years"))
    )  # fmt: skip


def cached_variant(
    variant: Variant, n: int, emulator, prior, cache_dir: Path, progress=None
) -> SimulatedCatalog:  # type: ignore[no-untyped-def]
    """:func:`simulate_variant`, kept as ``.npz`` under ``cache_dir`` by recipe and size:
    bagpipes takes minutes per variant, and the catalog is a function of the recipe."""
    path = Path(cache_dir) / f"{variant.name}-{variant.seed}-{n}.npz"
    fields = ("theta", "flux", "flux_err", "true_flux", "years")
    if path.exists():
        with np.load(path) as data:
            return SimulatedCatalog(*(data[f] for f in fields))
    cat = simulate_variant(variant, n, emulator, prior, progress)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **{f: getattr(cat, f) for f in fields})
    return cat
