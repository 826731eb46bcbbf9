"""Turn raw catalog columns into lor's stored photometry: nJy fluxes, errors, masks, rejects.

Conventions (documented in README):

* Flux catalogs (default, nJy; any astropy flux-density unit in the file's column metadata is
  converted): NaN flux or error = band missing. Negative fluxes are data (forced photometry).
* Magnitude catalogs (AB): ``mag = 99`` is a non-detection; if its error column holds a value
  in (0, 50) that value is the 1-sigma limiting magnitude, stored as flux 0 ± limit flux.
  ``mag = -99``, NaN, or an error of 99/-99 = band missing (not observed).
* A row is rejected (kept in ``ingest_rejects`` with the reason) for: a missing or duplicate
  id, non-finite or out-of-range position, a negative/zero/infinite error, an infinite flux,
  an invalid tract, or no usable band at all.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lor.errors import IngestError
from lor.units import abmag_to_njy

MAG_SENTINEL_NONDETECTION = 99.0
MAG_SENTINEL_MISSING = -99.0
FLOAT32_MAX = float(np.finfo(np.float32).max)
#: Below this many finite values the unit check tests every value, not the median.
SMALL_SAMPLE = 20


@dataclass
class Photometry:
    """Per-row photometry in band order, plus row-level rejection reasons."""

    flux: np.ndarray  # (N, B) float32 nJy
    flux_err: np.ndarray  # (N, B) float32 nJy
    missing_mask: np.ndarray  # (N,) int16
    nondetection_mask: np.ndarray  # (N,) int16
    reasons: RowReasons


def _bits(mask: np.ndarray) -> np.ndarray:
    weights = (1 << np.arange(mask.shape[1])).astype(np.int32)
    return (mask.astype(np.int32) @ weights).astype(np.int16)


class RowReasons:
    """The first reason each row is unusable, as small integer codes (0 = usable)."""

    def __init__(self, n: int) -> None:
        self.codes = np.zeros(n, np.int16)
        self.texts = [""]

    def add(self, bad: np.ndarray, text: str) -> None:
        new = bad & (self.codes == 0)
        if new.any():
            if text not in self.texts:
                self.texts.append(text)
            self.codes[new] = self.texts.index(text)

    @property
    def usable(self) -> np.ndarray:
        return self.codes == 0

    def text(self, row: int) -> str:
        return self.texts[self.codes[row]]


def flux_unit_scale(unit: str | None, column: str) -> float:
    """Factor converting a column's declared unit to nJy (1 when undeclared)."""
    if not unit:
        return 1.0
    import astropy.units as u

    try:
        parsed = u.Unit(unit)
    except ValueError as exc:
        raise IngestError(f"column {column!r} has an unreadable unit {unit!r}") from exc
    if parsed.physical_type == "spectral flux density":
        return float(parsed.to(u.nJy))
    if parsed in (u.mag, u.ABmag) or "mag" in str(parsed):
        raise IngestError(
            f"column {column!r} is in magnitudes ({unit}) but --units njy was given: pass --units abmag"
        )
    raise IngestError(f"column {column!r} has unit {unit!r}, which is not a flux density")


def check_plausible_fluxes(flux: np.ndarray, err: np.ndarray, units: str) -> None:
    """Catch the commonest unit mix-up (magnitudes declared as fluxes and vice versa).

    Looks at the first rows only: a sample decides it and the check stays off the hot path.
    A small sample (a file of a few rows) is judged on every value rather than skipped: a
    single row of magnitudes went in as fluxes of ~18 nJy.
    """
    flux, err = flux[:20_000], err[:20_000]
    f, e = flux[np.isfinite(flux)], err[np.isfinite(err)]
    if f.size == 0 or e.size == 0:
        return
    if f.size < SMALL_SAMPLE or e.size < SMALL_SAMPLE:
        looks_like_mags = bool(np.all((f > 10) & (f < 35)) and np.all(e < 1.5))
    else:
        looks_like_mags = 10 < np.median(f) < 35 and np.percentile(e, 90) < 1.5 and f.min() > 0
    if units == "njy" and looks_like_mags:
        raise IngestError(
            "flux columns look like AB magnitudes (values ~%.1f with errors < 1.5): pass --units abmag"
            % np.median(f)
        )
    m = f[(f != MAG_SENTINEL_NONDETECTION) & (f != MAG_SENTINEL_MISSING)]
    ok_mag = (m > 0) & (m < 50)
    if units == "abmag" and m.size and ok_mag.mean() < 0.5:
        raise IngestError(
            "magnitude columns hold values outside 0-50 (median %.3g): are they fluxes? "
            "pass --units njy" % np.median(m)
        )


def photometry_from_fluxes(flux: np.ndarray, err: np.ndarray, bands: list[str]) -> Photometry:
    reasons = RowReasons(flux.shape[0])
    for b, band in enumerate(bands):
        reasons.add(np.isinf(flux[:, b]), f"band {band}: infinite flux")
        # Stored as float32: a larger value would be stored as Infinity.
        reasons.add(
            np.abs(flux[:, b]) > FLOAT32_MAX, f"band {band}: infinite flux (beyond float32)"
        )
        e = err[:, b]
        reasons.add(np.isinf(e), f"band {band}: infinite flux error")
        reasons.add(e > FLOAT32_MAX, f"band {band}: infinite flux error (beyond float32)")
        reasons.add(np.isfinite(e) & (e <= 0), f"band {band}: non-positive flux error")
    missing = ~(np.isfinite(flux) & np.isfinite(err))
    unstorable = missing | (np.abs(flux) > FLOAT32_MAX) | (err > FLOAT32_MAX)  # rejected above
    flux32 = np.where(unstorable, np.nan, flux).astype(np.float32)
    err32 = np.where(unstorable, np.nan, err).astype(np.float32)
    nondet = np.zeros(flux.shape[0], np.int16)
    reasons.add(missing.all(axis=1), "no usable band")
    return Photometry(flux32, err32, _bits(missing), nondet, reasons)


def photometry_from_mags(mag: np.ndarray, magerr: np.ndarray, bands: list[str]) -> Photometry:
    reasons = RowReasons(mag.shape[0])
    nondet = mag == MAG_SENTINEL_NONDETECTION
    sentinel_err = np.isin(magerr, (MAG_SENTINEL_NONDETECTION, MAG_SENTINEL_MISSING))
    has_limit = nondet & np.isfinite(magerr) & (magerr > 0) & (magerr < 50)
    nondet_limit = nondet & has_limit
    missing = (
        ~np.isfinite(mag)
        | (mag == MAG_SENTINEL_MISSING)
        | (nondet & ~has_limit)
        | (~nondet & (~np.isfinite(magerr) | sentinel_err))
    )
    measured = ~missing & ~nondet_limit
    for b, band in enumerate(bands):
        bad_err = measured[:, b] & (magerr[:, b] <= 0)
        reasons.add(bad_err, f"band {band}: non-positive magnitude error")
        implausible = measured[:, b] & ((mag[:, b] < -10) | (mag[:, b] > 60))
        reasons.add(implausible, f"band {band}: magnitude {band} outside -10..60")
    with np.errstate(over="ignore", invalid="ignore"):
        f = abmag_to_njy(np.where(measured, mag, 30.0))
        flux = np.where(measured, f, np.where(nondet_limit, 0.0, np.nan))
        err = np.where(
            measured,
            f * np.log(10.0) / 2.5 * magerr,
            np.where(nondet_limit, abmag_to_njy(np.where(nondet_limit, magerr, 30.0)), np.nan),
        )
    reasons.add(missing.all(axis=1), "no usable band")
    return Photometry(
        flux.astype(np.float32),
        err.astype(np.float32),
        _bits(missing),
        _bits(nondet_limit),
        reasons,
    )
