"""The data model (ingredient A): from true fluxes to what a survey catalog reports.

* Depth: LSST coadded 5-sigma point-source depths after ``years`` of survey,
  ``m5(years) = m5(10 yr) + 1.25 log10(years / 10)`` (Ivezić et al. 2019, Table 1 and
  Eq. 6); configurable per band.
* Errors: the LSST photometric error model (Ivezić et al. 2019, Eq. 5):
  ``sigma_m**2 = (0.04 - gamma) x + gamma x**2`` with ``x = 10**(0.4 (m - m5))``, turned into
  a Gaussian flux error ``sigma_f = f ln(10) / 2.5 * sigma_m`` evaluated at the *true* flux
  (so non-detections get the sky-limited error; S/N = 5.4 at m5 in this model).
* Calibration: per-tract, per-band zeropoint offsets ``dzp`` (mag; the catalog's fluxes are
  ``f_true * 10**(-0.4 dzp)``) and noise scalings ``s`` (the reported error is ``sigma``
  while the true scatter is ``s * sigma``), from a calibration version.
* Galactic extinction: ``A_b = R_b E(B-V)`` with ``R_b`` the Gordon et al. (2023) Milky Way
  law (``dust_extinction.parameter_averages.G23``, R_V = 3.1) averaged over each bandpass.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from lor.errors import ConfigError
from lor.units import abmag_to_njy

#: LSST 10-year coadded 5-sigma depths (AB) and the gamma of the error model, Ivezić+2019.
LSST_M5_10YR = {"u": 25.6, "g": 26.9, "r": 26.9, "i": 26.4, "z": 25.6, "y": 24.8}
LSST_GAMMA = {"u": 0.038, "g": 0.039, "r": 0.039, "i": 0.039, "z": 0.039, "y": 0.039}


@lru_cache(maxsize=8)
def extinction_coefficients(bands: tuple[str, ...], r_v: float = 3.1) -> np.ndarray:
    """``R_b = A_b / E(B-V)`` for each band: the G23 law weighted by the photon-counting bandpass."""
    import astropy.units as u
    from dust_extinction.parameter_averages import G23

    from lor.sps.bandpasses import load_bandpasses

    law = G23(Rv=r_v)
    out = []
    for band in load_bandpasses(list(bands)):
        lam = np.asarray(band.wavelength, np.float64)
        resp = np.asarray(band.response, np.float64)
        ok = (lam > 1e4 / 10.0) & (lam < 1e4 / 0.31)  # G23 validity: 0.0912-32 micron
        a_over_av = law(lam[ok] * u.AA)
        weight = resp[ok] * lam[ok]  # photon counting
        out.append(r_v * np.trapezoid(a_over_av * weight, lam[ok]) / np.trapezoid(weight, lam[ok]))
    return np.array(out)


@dataclass
class DataModel:
    """Noise, calibration and extinction for one band set."""

    bands: Sequence[str] = ("u", "g", "r", "i", "z", "y")
    m5_10yr: dict[str, float] = field(default_factory=lambda: dict(LSST_M5_10YR))
    gamma: dict[str, float] = field(default_factory=lambda: dict(LSST_GAMMA))

    def __post_init__(self) -> None:
        missing = [b for b in self.bands if b not in self.m5_10yr or b not in self.gamma]
        if missing:
            raise ConfigError(f"no depth/error model for bands {missing}; give m5_10yr and gamma")
        self._m5 = np.array([self.m5_10yr[b] for b in self.bands])
        self._gamma = np.array([self.gamma[b] for b in self.bands])

    def depth(self, years: float | np.ndarray) -> np.ndarray:
        """5-sigma depths (..., B) after ``years`` of survey."""
        years = np.asarray(years, np.float64)
        if np.any(years <= 0):
            raise ConfigError("survey years must be positive")
        return self._m5 + 1.25 * np.log10(years[..., None] / 10.0)

    def flux_error(
        self,
        flux_njy: np.ndarray,
        years: float | np.ndarray = 10.0,
        depth_offset: np.ndarray | None = None,
    ) -> np.ndarray:
        """1-sigma flux errors (nJy) at the true fluxes (N, B) for a depth of ``years``,
        each band's depth shifted by ``depth_offset`` (mag, (N, B); positive is deeper)."""
        m5 = self.depth(np.broadcast_to(np.asarray(years, np.float64), flux_njy.shape[:-1]))
        if depth_offset is not None:
            m5 = m5 + depth_offset
        f5 = abmag_to_njy(m5)
        # Eq. 5 in flux units: sigma_f**2 = k**2 ((0.04 - gamma) f5 f + gamma f5**2), k = ln10/2.5;
        # a source at or below the sky level keeps the sky-limited k sqrt(gamma) f5.
        k = np.log(10.0) / 2.5
        return k * np.sqrt(
            (0.04 - self._gamma) * f5 * np.maximum(flux_njy, 0.0) + self._gamma * f5**2
        )

    def observe(
        self,
        flux_njy: np.ndarray,
        rng: np.random.Generator,
        years: float | np.ndarray = 10.0,
        zeropoint_offset: np.ndarray | None = None,
        noise_scale: np.ndarray | None = None,
        ebv: np.ndarray | None = None,
        error_scatter: float = 0.0,
        depth_offset: np.ndarray | None = None,
        floor_mag: np.ndarray | None = None,
        hidden_floor_mag: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Simulate catalog fluxes and reported errors (nJy) from true fluxes (N, B).

        ``error_scatter`` adds lognormal scatter (dex) to the reported errors, as real
        catalogs' per-object errors scatter around the depth model; ``depth_offset`` (mag,
        (N, B)) moves each band's depth on its own. ``floor_mag`` ((N, B) or (B,)) is a
        fractional error floor: the flux scatters by ``floor`` magnitudes more and the
        reported error carries it in quadrature at the observed flux -- a catalog's own
        error floor, and the way model error enters (:mod:`lor.inference.model_error`).
        ``hidden_floor_mag`` scatters the flux the same way without reporting it: the
        model error a catalog's errors do not know of (what Step 2 fits).
        """
        flux = np.asarray(flux_njy, np.float64)
        if ebv is not None:
            flux = flux * 10.0 ** (
                -0.4 * np.asarray(ebv)[:, None] * extinction_coefficients(tuple(self.bands))
            )
        sigma = self.flux_error(flux, years, depth_offset)
        if error_scatter:
            sigma = sigma * 10.0 ** (error_scatter * rng.standard_normal(sigma.shape))
        if zeropoint_offset is not None:
            flux = flux * 10.0 ** (-0.4 * np.asarray(zeropoint_offset))
        scale = 1.0 if noise_scale is None else np.asarray(noise_scale)
        observed = flux + scale * sigma * rng.standard_normal(flux.shape)
        if floor_mag is not None:
            frac = np.asarray(floor_mag, np.float64) * np.log(10.0) / 2.5
            observed = observed + flux * frac * rng.standard_normal(flux.shape)
            sigma = np.sqrt(sigma**2 + (np.abs(observed) * frac) ** 2)
        if hidden_floor_mag is not None:
            frac = np.asarray(hidden_floor_mag, np.float64) * np.log(10.0) / 2.5
            observed = observed + flux * frac * rng.standard_normal(flux.shape)
        return observed, sigma

    def deredden(
        self, flux: np.ndarray, flux_err: np.ndarray, ebv: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Undo Galactic extinction (NaN E(B-V) means none known: left as is)."""
        ebv = np.nan_to_num(np.asarray(ebv, np.float64), nan=0.0)
        factor = 10.0 ** (0.4 * ebv[:, None] * extinction_coefficients(tuple(self.bands)))
        return flux * factor, flux_err * factor
