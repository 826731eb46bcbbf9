"""Survey-wide model error apart from per-tract calibration, fitted jointly in data space.

On a real catalog, band offsets that are the same in every tract are not calibration: they
are the SED model's error (the role of EAZY's template error function or LePhare's
systematic offsets). Fitted tract by tract they look like zeropoints, reach their bounds and
make results worse (issue #12, measured on an external catalog). So one fit over all tracts
at once separates, per band (the reference band's offset excepted, see
:mod:`lor.hierarchy.zeropoints`):

* ``sed_offset``: one survey-wide offset (SED-model error), free;
* ``floor``: one survey-wide fractional model-error floor (mag), the data-model
  hyperparameter every likelihood carries (:mod:`lor.inference.model_error`), free in
  ``[0, FLOOR_MAX]``; the emulator's own measured error is added to it, not fitted;
* per tract, a zeropoint *deviation* around the survey offset with a Gaussian prior of
  width ``deviation_prior_mag`` (LSST's photometric calibration goal: 5-10 mmag in
  repeatability and uniformity across the sky, Ivezić et al. 2019, Table 1 / Sect. 3.3);
* per tract and band, a noise scaling.

The likelihood of each tract is the population density convolved with each object's noise,
as in :func:`lor.hierarchy.zeropoints.fit_tract`; the sum over tracts plus the deviations'
prior is minimized by L-BFGS-B on TensorFlow gradients, with Laplace errors.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import tensorflow as tf
from scipy.optimize import minimize

from lor.errors import ConfigError
from lor.hierarchy.objective import TFObjective
from lor.hierarchy.zeropoints import (
    LOG_SCALE_BOUNDS,
    ZP_BOUNDS,
    PopulationDensity,
    TractCalibration,
    _TractObjective,
)

FLOOR_MAX = 0.3
"""Largest model-error floor fitted (mag): beyond it the model does not describe the band."""
DEVIATION_PRIOR_MAG = 0.01
"""Width of the per-tract zeropoint deviations' prior (LSST's calibration goal, mag)."""
BOUND_TOLERANCE = 1e-3
"""A fitted value this close (relative to its range) to a bound is reported as on it."""


@dataclass
class SurveyCalibration:
    """The joint fit: survey-wide offsets and floors, and each tract's total terms."""

    bands: list[str]
    reference_band: str
    sed_offset: np.ndarray  # (B,) mag, 0 for the reference band
    sed_offset_err: np.ndarray
    floor_mag: np.ndarray  # (B,) fitted floor, mag (the emulator's error comes on top)
    floor_err: np.ndarray
    tracts: list[TractCalibration]  # zeropoint = reference/sed offset + deviation
    deviation_prior_mag: float
    at_bound: list[str]
    converged: bool
    details: dict[str, Any] = field(default_factory=dict)

    def survey_terms(self) -> dict[str, tuple[float, float | None, float, float]]:
        """``{band: (sed_offset, sed_offset_err, floor, floor_err)}`` as a version stores."""
        return {
            b: (float(self.sed_offset[i]),
                None if b == self.reference_band else float(self.sed_offset_err[i]),
                float(self.floor_mag[i]), float(self.floor_err[i]))
            for i, b in enumerate(self.bands)
        }  # fmt: skip


class _SurveyObjective(TFObjective):
    """``-log L`` of all tracts in (sed offsets, floors, deviations, log noise scalings)."""

    def __init__(
        self,
        tracts: list[_TractObjective],
        n_bands: int,
        free: list[int],
        deviation_prior_mag: float,
    ) -> None:
        self.tracts = tracts
        self.n_bands, self.free = n_bands, free
        self.tau = deviation_prior_mag
        super().__init__()

    def split(self, params: Any) -> tuple[Any, Any, Any, Any]:
        """(sed offsets (k,), floors (B,), deviations (T, k), log scalings (T, B))."""
        k, b, t = len(self.free), self.n_bands, len(self.tracts)
        sed, floor = params[:k], params[k : k + b]
        dev = params[k + b : k + b + t * k]
        log_scale = params[k + b + t * k :]
        if isinstance(params, tf.Tensor):
            return sed, floor, tf.reshape(dev, (t, k)), tf.reshape(log_scale, (t, b))
        return sed, floor, np.reshape(dev, (t, k)), np.reshape(log_scale, (t, b))

    def nll(self, params: tf.Tensor) -> tf.Tensor:
        sed, floor, dev, log_scale = self.split(params)
        total = 0.5 * tf.reduce_sum((dev / self.tau) ** 2)
        for i, tract in enumerate(self.tracts):
            zp = tract.offsets(sed + dev[i])
            total -= tf.reduce_sum(tract.per_object(zp, log_scale[i], floor))
        return total


def fit_survey(
    density: PopulationDensity,
    photometry: dict[int, tuple[np.ndarray, np.ndarray]],
    bands: list[str],
    emulator_error_mag: np.ndarray,
    reference_band: str = "i",
    reference_zp: dict[int, float] | None = None,
    deviation_prior_mag: float = DEVIATION_PRIOR_MAG,
    start_floor_mag: float = 0.02,
    fit_noise: bool = True,
) -> SurveyCalibration:
    """Fit survey-wide offsets and floors and per-tract deviations and noise scalings.

    ``photometry[tract] = (flux, err)`` (N, B) nJy, dereddened, every band measured;
    ``reference_zp[tract]`` is the offset the reference band keeps (default 0).
    """
    if reference_band not in bands:
        raise ConfigError(f"reference band {reference_band!r} is not one of the bands {bands}")
    b = len(bands)
    ref = bands.index(reference_band)
    free = [k for k in range(b) if k != ref]
    reference_zp = reference_zp or {}
    tract_ids, objectives, counts = [], [], []
    for tract, (flux, err) in sorted(photometry.items()):
        flux, err = np.asarray(flux, np.float64), np.asarray(err, np.float64)
        ok = np.all(np.isfinite(flux) & np.isfinite(err) & (err > 0), axis=1)
        if ok.sum() < 10 * b:
            raise ConfigError(
                f"tract {tract}: {int(ok.sum())} objects with every band measured; a "
                f"calibration needs at least {10 * b}"
            )
        objectives.append(
            _TractObjective(
                density, flux[ok], err[ok], float(reference_zp.get(tract, 0.0)), free,
                model_error_mag=np.asarray(emulator_error_mag, np.float64),
                start_floor_mag=np.full(b, start_floor_mag),
            )
        )  # fmt: skip
        tract_ids.append(int(tract))
        counts.append(int(ok.sum()))
    if not objectives:
        raise ConfigError("no tract to calibrate")
    t, k = len(objectives), len(free)
    objective = _SurveyObjective(objectives, b, free, deviation_prior_mag)
    start = np.concatenate(
        [np.zeros(k), np.full(b, start_floor_mag), np.zeros(t * k), np.zeros(t * b)]
    )
    scale_bounds = LOG_SCALE_BOUNDS if fit_noise else (0.0, 0.0)
    bounds = ([ZP_BOUNDS] * k + [(0.0, FLOOR_MAX)] * b + [ZP_BOUNDS] * (t * k)
              + [scale_bounds] * (t * b))  # fmt: skip
    result = minimize(objective, start, jac=True, method="L-BFGS-B", bounds=bounds,
                      options={"maxiter": 2000})  # fmt: skip
    x = result.x
    # Laplace errors in the coordinates off their bounds (a floor fitted to 0 has no error).
    lo = np.array([bd[0] for bd in bounds])
    hi = np.array([bd[1] for bd in bounds])
    span = np.where(hi > lo, hi - lo, 1.0)
    on_low = (x - lo) / span < BOUND_TOLERANCE
    on_high = (hi - x) / span < BOUND_TOLERANCE
    fitted = [i for i in range(x.size) if hi[i] > lo[i] and not (on_low[i] or on_high[i])]
    errors = np.zeros(x.size)
    cov = np.zeros((x.size, x.size))
    if fitted:
        sub = np.linalg.pinv(objective.hessian(x, fitted))
        cov[np.ix_(fitted, fitted)] = sub
        errors[fitted] = np.sqrt(np.clip(np.diag(sub), 0.0, None))
    sed, floor, dev, log_scale = objective.split(x)
    e_sed, e_floor, e_dev, e_log_scale = objective.split(errors)
    names = ([f"sed_offset_{bands[i]}" for i in free] + [f"floor_{bd}" for bd in bands]
             + [f"deviation_{tr}_{bands[i]}" for tr in tract_ids for i in free]
             + [f"noise_scale_{tr}_{bd}" for tr in tract_ids for bd in bands])  # fmt: skip
    # A floor of 0 is a physical limit (no model error beyond the emulator's), not a box edge.
    floor_slice = slice(k, k + b)
    at_bound = [
        names[i] for i in range(x.size)
        if hi[i] > lo[i] and (on_high[i] or (on_low[i] and not floor_slice.start <= i < floor_slice.stop))
    ]  # fmt: skip
    full_sed, full_sed_err = np.zeros(b), np.zeros(b)
    full_sed[free], full_sed_err[free] = sed, e_sed
    bias = density.bias
    fits = []
    for j, tract in enumerate(tract_ids):
        zp = np.full(b, float(reference_zp.get(tract, 0.0)))
        zp[free] += sed + dev[j]
        zp_err = np.zeros(b)
        zp_err[free] = np.hypot(e_sed, e_dev[j])
        scale = np.exp(log_scale[j])
        scale_err = scale * e_log_scale[j]
        if bias is not None and bias.reference_band == reference_band:
            zp[free] -= bias.zeropoint_offset[free]
            zp_err[free] = np.hypot(zp_err[free], bias.zeropoint_err[free])
        if bias is not None and fit_noise:
            scale = scale / bias.noise_scale
            scale_err = scale * np.hypot(e_log_scale[j], bias.noise_scale_err / bias.noise_scale)
        fits.append(TractCalibration(
            tract_id=tract, bands=list(bands), zeropoint_offset=zp, zeropoint_err=zp_err,
            noise_scale=scale, noise_scale_err=scale_err, covariance=np.zeros((0, 0)),
            reference_band=reference_band, n_objects=counts[j], converged=bool(result.success),
            details={"deviation": dev[j].tolist(), "deviation_err": e_dev[j].tolist()},
        ))  # fmt: skip
    if bias is not None and bias.reference_band == reference_band:
        full_sed[free] -= bias.zeropoint_offset[free]
    return SurveyCalibration(
        bands=list(bands), reference_band=reference_band, sed_offset=full_sed,
        sed_offset_err=full_sed_err, floor_mag=np.asarray(floor), floor_err=np.asarray(e_floor),
        tracts=fits, deviation_prior_mag=deviation_prior_mag, at_bound=at_bound,
        converged=bool(result.success),
        details={"iterations": int(result.nit), "nll": float(result.fun),
                 "n_parameters": int(x.size), "emulator_error_mag": list(map(float, emulator_error_mag))},
    )  # fmt: skip
