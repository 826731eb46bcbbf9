"""Hierarchical inference of the population prior's hyperparameters from stored posteriors.

Each stored posterior ``q_i`` was made under a reference prior ``pi_ref`` (the interim prior,
or whatever prior the run pinned). Under hyperparameters ``alpha`` the marginal likelihood of
the survey, up to a constant, is (Hogg, Myers & Bovy 2010; Foreman-Mackey et al. 2014)

    sum_i log mean_j [pi_alpha(theta_ij) / pi_ref(theta_ij)]  -  N log P_sel(alpha),
    theta_ij ~ q_i,

where ``P_sel(alpha)`` is the fraction of the ``alpha`` population that passes the survey's
depth cut (``i < 25.3``): a Monte Carlo over interim-prior draws through the emulator and
the LSST error model, reweighted to ``alpha``. Only the prior factors that own a free
hyperparameter enter the ratio. The sum is maximized with L-BFGS-B on TensorFlow gradients;
uncertainties are the inverse Hessian (Laplace), with the draws' effective sample sizes
reported so a fit that strayed far from the reference prior shows itself.

Zeropoints and noise scales are not fitted here but from the photometry under the fitted
prior (:mod:`lor.hierarchy.survey`, :mod:`lor.hierarchy.zeropoints`): importance weights
between calibrations do not survive LSST signal-to-noise with amortized posterior draws
(see :mod:`lor.hierarchy.reweight`), and a gray zeropoint offset is exactly degenerate with
stellar mass, which enters the SPS model as a pure magnitude shift.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import tensorflow as tf
from scipy.optimize import minimize

from lor.errors import ConfigError
from lor.hierarchy.objective import TFObjective
from lor.inference.amortized import PhotometryPosteriors
from lor.inference.flexible_prior import KNOT_SETS, lift
from lor.inference.prior import PopulationPrior, PriorMixture
from lor.units import abmag_to_njy

HYPER_BOUNDS: dict[str, tuple[float, float]] = {
    "z0": (0.2, 3.0), "alpha": (0.2, 5.0), "beta": (0.5, 4.0),
    "mass_mean": (7.5, 11.5), "mass_evolution": (-1.5, 1.5), "mass_sigma": (0.2, 2.5),
    "mzr_zero": (-1.5, 0.5), "mzr_slope": (-0.5, 1.0), "mzr_sigma": (0.05, 1.5),
    "tau_mean": (-1.0, 1.3), "tau_sigma": (0.1, 2.0), "age_a": (0.3, 10.0),
    "age_b": (0.3, 10.0), "av_scale": (0.05, 3.0), "dust_n_mean": (0.0, 2.0),
    "dust_n_sigma": (0.05, 2.0), "logu_mean": (-4.0, -1.0), "logu_sigma": (0.05, 2.0),
    # family "grounded" (lor.inference.grounded_prior): shifts around published relations
    "smf_mstar_shift": (-0.5, 0.5), "smf_alpha_shift": (-0.5, 0.5),
    "smf_phi_evolution": (-1.0, 1.0), "mzr_offset": (-1.0, 0.5),
    "mzr_sigma_scale": (0.2, 3.0), "av_norm": (0.1, 5.0), "av_scatter": (0.02, 1.5),
    "quench_logit_shift": (-4.0, 4.0),
    "q_tau_mean": (-1.0, 0.5), "q_tau_sigma": (0.05, 1.0), "q_age_a": (0.5, 20.0),
    "q_age_b": (0.3, 10.0),
    # family "grounded-flexible" (lor.inference.flexible_prior): ln weights at its knots
    **{n: (-k.bound, k.bound) for k in KNOT_SETS.values() for n in k.names},
}  # fmt: skip
"""Search bounds of each hyperparameter (within the training box and physically sensible)."""

BOUND_TOLERANCE = 1e-3
"""A fitted hyperparameter closer than this fraction of its range to a bound is on it."""

VALIDATION_SHIFT: dict[str, float] = {"z0": 0.72, "mass_mean": 9.85, "av_scale": 0.42}
"""The true population of the validation catalogs (tests, ``lor bench reprocess``): these
hyperparameters differ from the interim prior's 0.9, 9.6 and 0.6."""

VALIDATION_SHIFTS: dict[str, dict[str, float]] = {
    "population": VALIDATION_SHIFT,
    "grounded": {"smf_phi_evolution": -0.25},
}
"""Per prior family: a validation population's hyperparameters, away from the defaults by
several times what 2,000 objects measure, inside the search bounds."""


def validation_shift(prior: PopulationPrior) -> dict[str, float]:
    """The validation population's hyperparameters for ``prior``'s family."""
    return VALIDATION_SHIFTS[prior.family]


@dataclass
class HyperparameterFit:
    """What :func:`fit_hyperparameters` found."""

    hyperparameters: dict[str, float]  # the full set, the free ones fitted
    free: list[str]
    errors: dict[str, float]  # 1-sigma (Laplace) of the free ones
    covariance: np.ndarray  # (k, k)
    n_objects: int
    median_ess: float  # of the importance weights at the optimum, out of n_samples
    frac_ess_below_10: float
    details: dict[str, Any] = field(default_factory=dict)
    at_bound: list[str] = field(default_factory=list)
    """Free hyperparameters that ended on a search bound (:data:`HYPER_BOUNDS`): the data
    pushed them out of the physical range, so the prior family cannot describe them (or
    they absorb model misfit); reported on the prior version and by the CLI, never silently."""

    def prior(self, base: PopulationPrior) -> PopulationPrior:
        return base.with_hyperparameters(self.hyperparameters)

    def as_provenance(self) -> dict[str, Any]:
        return {
            "free": self.free, "errors": self.errors, "covariance": self.covariance.tolist(),
            "n_objects": self.n_objects, "median_ess": self.median_ess,
            "frac_ess_below_10": self.frac_ess_below_10, "at_bound": self.at_bound,
            **self.details,
        }  # fmt: skip


def hyperparameter_mixture(
    prior: PopulationPrior,
    free: list[str],
    covariance: np.ndarray,
    n_draws: int = 16,
    seed: int = 0,
) -> PriorMixture:
    """``prior`` averaged over ``n_draws`` of its ``free`` hyperparameters from the fit's
    Gaussian (Laplace) uncertainty, kept inside :data:`HYPER_BOUNDS`; antithetic pairs keep
    the mixture's mean at the best fit."""
    if n_draws < 2:
        raise ConfigError("marginalizing over hyperparameters needs at least 2 draws")
    centre = np.array([float(prior.hyperparameters[h]) for h in free])
    half = np.random.default_rng(seed).multivariate_normal(
        np.zeros(len(free)), np.asarray(covariance, float), (n_draws + 1) // 2
    )
    draws = centre + np.concatenate([half, -half])[:n_draws]
    low, high = (np.array([HYPER_BOUNDS[h][i] for h in free]) for i in (0, 1))
    draws = np.clip(draws, low, high)
    return PriorMixture([
        prior.with_hyperparameters(prior.hyperparameters | dict(zip(free, map(float, row), strict=True)))
        for row in draws
    ])  # fmt: skip


class _Objective(TFObjective):
    """Negative log marginal likelihood of the free hyperparameters, with its gradient."""

    def __init__(
        self,
        reference: PopulationPrior,
        free: list[str],
        theta: np.ndarray,
        selection: dict[str, np.ndarray],
    ) -> None:
        self.reference, self.free = reference, free
        self.factors = tuple(
            f for f, (_, hyper) in reference.factors.items() if set(hyper) & set(free)
        )
        n, s, d = theta.shape
        self.shape = (n, s)
        self.theta = tf.constant(theta.reshape(n * s, d))
        self.log_ref = tf.reshape(self._log_prob(self.theta, None), [n, s])
        self.sel_theta = tf.constant(selection["theta"])
        self.log_passing = tf.constant(selection["log_passing"])
        self.sel_log_ref = self._log_prob(self.sel_theta, None)
        super().__init__()

    def _log_prob(self, theta: tf.Tensor, values: tf.Tensor | None) -> tf.Tensor:
        hyper = dict(self.reference.hyperparameters)
        if values is not None:
            hyper.update({name: values[i] for i, name in enumerate(self.free)})
        return self.reference.with_hyperparameters(hyper).factors_log_prob(theta, self.factors)

    def log_weights(self, values: tf.Tensor) -> tf.Tensor:
        """log pi_alpha / pi_ref of every draw, ``(N, S)``."""
        return tf.reshape(self._log_prob(self.theta, values), self.shape) - self.log_ref

    def nll(self, values: tf.Tensor) -> tf.Tensor:
        n, s = self.shape
        per_object = tf.reduce_logsumexp(self.log_weights(values), axis=1) - np.log(s)
        shift = self._log_prob(self.sel_theta, values) - self.sel_log_ref
        log_p_sel = tf.reduce_logsumexp(self.log_passing + shift) - np.log(
            float(self.sel_theta.shape[0])
        )
        hyperprior = self.reference.log_hyperprior(
            {name: values[i] for i, name in enumerate(self.free)}
        )
        return -tf.reduce_sum(per_object) + n * log_p_sel - hyperprior


def selection_sample(
    posteriors: PhotometryPosteriors, reference: PopulationPrior, n: int, seed: int
) -> dict[str, np.ndarray]:
    """Reference-prior draws and the log probability that each passes the depth cut on its
    observed selection-band flux (Gaussian noise of the LSST 10-year error model)."""
    from scipy.special import log_ndtr

    band = posteriors.bands.index(reference.selection["band"])
    theta = reference.sample(n, seed)
    flux = posteriors.emulator.fluxes_njy(theta)
    err = posteriors.data_model.flux_error(flux)[:, band]
    limit = abmag_to_njy(float(reference.selection["mag_max"]))
    return {"theta": theta, "log_passing": log_ndtr((flux[:, band] - limit) / err)}


def flexible_reference(
    free: Sequence[str], reference: PopulationPrior
) -> tuple[list[str], PopulationPrior]:
    """``free`` with each knot set's prefix (``nz``: the n(z) knots, ``mf``: the mass
    function's; :mod:`lor.inference.flexible_prior`) expanded to its knots, and ``reference``
    lifted to the flexible family (same density) when a knot is free and it has none."""
    names: list[str] = []
    for name in free:
        names.extend(KNOT_SETS[name].names if name in KNOT_SETS else (name,))
    knots = {n for k in KNOT_SETS.values() for n in k.names}
    if set(names) & knots and not knots <= set(reference.hyperparameters):
        reference = lift(reference)
    return list(dict.fromkeys(names)), reference


def check_free_hyperparameters(free: Sequence[str], reference: PopulationPrior) -> None:
    """Refuse an empty or unknown choice of hyperparameters to fit (:class:`ConfigError`):
    callers check before loading models and simulating, not after."""
    known = sorted(set(HYPER_BOUNDS) & set(reference.hyperparameters))
    unknown = [h for h in free if h not in known]
    if unknown or not free:
        raise ConfigError(
            f"choose free hyperparameters from {known}; got {list(free)} (unknown: {unknown})"
        )


def fit_hyperparameters(
    posteriors: PhotometryPosteriors,
    params: np.ndarray,
    free: list[str],
    reference: PopulationPrior | None = None,
    n_samples: int = 64,
    n_selection: int = 500_000,
    seed: int = 0,
) -> HyperparameterFit:
    """Fit the ``free`` hyperparameters to stored posteriors ``params`` (N, P) made under
    ``reference`` (default: the interim prior); see the module docstring."""
    reference = reference or PopulationPrior()
    check_free_hyperparameters(free, reference)
    params = np.asarray(params, np.float32)
    params = params[np.all(np.isfinite(params), axis=1)]
    theta = posteriors.rep.sample(params, n_samples, seed)
    objective = _Objective(
        reference, free, theta, selection_sample(posteriors, reference, n_selection, seed + 1)
    )
    start = np.array([float(reference.hyperparameters[h]) for h in free])
    result = minimize(objective, start, jac=True, method="L-BFGS-B",
                      bounds=[HYPER_BOUNDS[h] for h in free])  # fmt: skip
    covariance = np.linalg.inv(objective.hessian(result.x))
    log_w = objective.log_weights(tf.constant(result.x, tf.float64)).numpy()
    w = np.exp(log_w - log_w.max(axis=1, keepdims=True))
    ess = w.sum(axis=1) ** 2 / (w**2).sum(axis=1)
    hyper = dict(reference.hyperparameters) | {h: float(v) for h, v in zip(free, result.x, strict=True)}  # fmt: skip
    errors = np.sqrt(np.clip(np.diag(covariance), 0.0, None))
    at_bound = [
        h for h, v in zip(free, result.x, strict=True)
        if min(v - HYPER_BOUNDS[h][0], HYPER_BOUNDS[h][1] - v)
        < BOUND_TOLERANCE * (HYPER_BOUNDS[h][1] - HYPER_BOUNDS[h][0])
    ]  # fmt: skip
    return HyperparameterFit(
        hyperparameters=hyper,
        free=list(free),
        errors={h: float(e) for h, e in zip(free, errors, strict=True)},
        covariance=covariance,
        n_objects=len(params),
        median_ess=float(np.median(ess)),
        frac_ess_below_10=float(np.mean(ess < 10)),
        details={"n_samples": n_samples, "n_selection": n_selection, "optimizer": {
            "converged": bool(result.success), "iterations": int(result.nit),
            "nll": float(result.fun)}},
        at_bound=at_bound,
    )  # fmt: skip
