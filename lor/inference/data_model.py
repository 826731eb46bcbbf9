"""The data model (ingredient A): from true fluxes to what a survey catalog reports.

* Depth: each band's coadded 5-sigma point-source depth from its band set
  (:mod:`lor.bands`; LSST: Ivezić et al. 2019, Table 1), after ``years`` of survey
  ``m5(years) = m5 + 1.25 log10(years / m5_years)`` (their Eq. 6); bands of another survey
  with a fixed final depth (``m5_years`` None, e.g. Euclid's) keep it; configurable per band.
* Errors: the LSST photometric error model (Ivezić et al. 2019, Eq. 5), each band's gamma
  from its band set:
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
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from lor.bands import LSST_BANDS, BandSet, shipped_band_sets
from lor.errors import ConfigError
from lor.units import abmag_to_njy


def shipped_band_definitions() -> dict[str, tuple[float, float, float | None]]:
    """Short band name -> (m5, gamma, m5_years) over every shipped band set (one short name
    is one band everywhere: the band-set contract test checks that they agree)."""
    out: dict[str, tuple[float, float, float | None]] = {}
    for band_set in shipped_band_sets():
        for b in band_set.bands:
            out.setdefault(b.name, (b.m5, b.gamma, b.m5_years))
    return out


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
    """Noise, calibration and extinction for a list of bands.

    Depths and error model come from ``band_set`` when given, else from the shipped band
    sets' definition of each short band name; ``m5``/``gamma``/``m5_years`` override per band.
    """

    bands: Sequence[str] = LSST_BANDS
    m5: dict[str, float] | None = None
    gamma: dict[str, float] | None = None
    m5_years: dict[str, float | None] | None = None
    band_set: BandSet | None = None

    def __post_init__(self) -> None:
        if self.band_set is not None:
            known = {b.name: (b.m5, b.gamma, b.m5_years) for b in self.band_set.bands}
        else:
            known = shipped_band_definitions()
        m5 = {k: v[0] for k, v in known.items()} | (self.m5 or {})
        gamma = {k: v[1] for k, v in known.items()} | (self.gamma or {})
        years = {k: v[2] for k, v in known.items()} | (self.m5_years or {})
        missing = [b for b in self.bands if b not in m5 or b not in gamma or b not in years]
        if missing:
            raise ConfigError(
                f"no depth/error model for bands {missing}; give m5, gamma and m5_years or a "
                "band set that defines them"
            )
        self._m5 = np.array([m5[b] for b in self.bands], np.float64)
        self._gamma = np.array([gamma[b] for b in self.bands], np.float64)
        ref = np.array([np.nan if years[b] is None else years[b] for b in self.bands])
        self._fixed = np.isnan(ref)
        self._m5_years = np.where(self._fixed, 1.0, ref)

    def depth(self, years: float | np.ndarray) -> np.ndarray:
        """5-sigma depths (..., B) after ``years`` of survey (fixed-depth bands unchanged)."""
        years = np.asarray(years, np.float64)
        if np.any(years <= 0):
            raise ConfigError("survey years must be positive")
        growth = 1.25 * np.log10(years[..., None] / self._m5_years)
        return self._m5 + np.where(self._fixed, 0.0, growth)

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
