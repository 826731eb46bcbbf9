"""The population prior's factor densities in closed form, in NumPy (float64).

:class:`lor.inference.prior.PopulationPrior` builds TFP distribution objects, which is what
hierarchical fits need (gradients in the hyperparameters). Reweighting stored posteriors to
a new prior only evaluates the densities of a few factors at fixed hyperparameters, at
millions of points: there the distribution objects, graph tracing and XLA compiles of the
TF path cost more than the arithmetic (the prior ratio was 22% of a prior-change reprocess,
and its compiles the reprocess processor's whole load time). The same formulas in NumPy
agree with the TFP densities to ~1e-12 (``tests/inference/test_prior_density.py``).

Only the ``population`` family v1 (and mixtures of it) has a closed form here;
:func:`supports` says whether a prior does, and callers keep the TF path for the others.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.special import betainc, betaln, log_ndtr, logsumexp

from lor.inference.prior import _Z_GRID, FAMILY, FAMILY_VERSION, PopulationPrior, PriorMixture
from lor.sps.parameters import PARAM_NAMES

_HALF_LOG_2PI = 0.5 * np.log(2.0 * np.pi)
_COL = {name: i for i, name in enumerate(PARAM_NAMES)}


def supports(prior: Any) -> bool:
    """Whether :func:`factors_log_prob` has this prior's densities: the population family
    v1 with numeric hyperparameters, or a mixture of such priors."""
    if isinstance(prior, PriorMixture):
        return all(supports(c) for c in prior.components)
    if type(prior) is not PopulationPrior:  # a subclass family has factors of its own
        return False
    if (prior.family, prior.family_version) != (FAMILY, FAMILY_VERSION):
        return False
    return all(isinstance(v, (int, float, np.floating)) for v in prior.hyperparameters.values())


def factors_log_prob(
    prior: PopulationPrior | PriorMixture, theta: np.ndarray, factors: tuple[str, ...]
) -> np.ndarray:
    """Sum of the log densities of ``factors`` at ``theta`` ``(..., D)``; -inf outside the box
    of a factor's own parameter (as :meth:`PopulationPrior.factors_log_prob`)."""
    theta = np.asarray(theta, np.float64)
    if isinstance(prior, PriorMixture):
        terms = np.stack([factors_log_prob(c, theta, factors) for c in prior.components])
        return logsumexp(terms, axis=0) - np.log(len(prior.components))
    total = np.zeros(theta.shape[:-1])
    for name in factors:
        total += _FACTORS[name](prior, theta)
    return total


def _h(prior: PopulationPrior, name: str) -> float:
    return float(prior.hyperparameters[name])


def _bounds(prior: PopulationPrior, name: str) -> tuple[float, float]:
    i = _COL[name]
    return float(prior.low[i]), float(prior.high[i])


def _log_ndtr_diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``log(Phi(b) - Phi(a))`` for ``a < b``, stable in both tails (reflected when a > 0)."""
    flip = a > 0
    lo, hi = np.where(flip, -b, a), np.where(flip, -a, b)
    upper = log_ndtr(hi)
    return upper + np.log1p(-np.exp(log_ndtr(lo) - upper))


def _trunc_normal(
    x: np.ndarray, loc: np.ndarray | float, scale: float, bounds: tuple[float, float]
) -> np.ndarray:
    lo, hi = bounds
    z = (x - loc) / scale
    norm = _log_ndtr_diff((lo - loc) / scale, (hi - loc) / scale)
    out = -0.5 * z * z - _HALF_LOG_2PI - np.log(scale) - norm
    return np.where((x >= lo) & (x <= hi), out, -np.inf)


def _redshift(prior: PopulationPrior, theta: np.ndarray) -> np.ndarray:
    lo, hi = _bounds(prior, "redshift")
    alpha, z0, beta = _h(prior, "alpha"), _h(prior, "z0"), _h(prior, "beta")
    grid = np.linspace(lo, hi, _Z_GRID)
    log_norm = logsumexp(alpha * np.log(grid) - (grid / z0) ** beta) + np.log(
        (hi - lo) / (_Z_GRID - 1)
    )
    z = theta[..., _COL["redshift"]]
    inside = (z >= lo) & (z <= hi)
    safe = np.where(inside, z, 0.5 * (lo + hi))
    out = alpha * np.log(safe) - (safe / z0) ** beta - log_norm
    return np.where(inside, out, -np.inf)


def _log_mstar(prior: PopulationPrior, theta: np.ndarray) -> np.ndarray:
    z = theta[..., _COL["redshift"]]
    loc = _h(prior, "mass_mean") + _h(prior, "mass_evolution") * np.log1p(z)
    return _trunc_normal(
        theta[..., _COL["log_mstar"]], loc, _h(prior, "mass_sigma"), _bounds(prior, "log_mstar")
    )


def _log_zmet(prior: PopulationPrior, theta: np.ndarray) -> np.ndarray:
    loc = _h(prior, "mzr_zero") + _h(prior, "mzr_slope") * (theta[..., _COL["log_mstar"]] - 10.0)
    return _trunc_normal(
        theta[..., _COL["log_zmet"]], loc, _h(prior, "mzr_sigma"), _bounds(prior, "log_zmet")
    )


def _normal_factor(param: str, mean: str, sigma: str):  # type: ignore[no-untyped-def]
    def log_prob(prior: PopulationPrior, theta: np.ndarray) -> np.ndarray:
        return _trunc_normal(
            theta[..., _COL[param]], _h(prior, mean), _h(prior, sigma), _bounds(prior, param)
        )

    return log_prob


def _age_frac(prior: PopulationPrior, theta: np.ndarray) -> np.ndarray:
    a, b = _h(prior, "age_a"), _h(prior, "age_b")
    lo, hi = _bounds(prior, "age_frac")
    x = theta[..., _COL["age_frac"]]
    inside = (x >= lo) & (x <= hi)
    safe = np.where(inside, x, 0.5 * (lo + hi))
    mass = betainc(a, b, hi) - betainc(a, b, lo)
    with np.errstate(divide="ignore"):  # at x = 0 or 1 the density is 0 or inf, as in TFP
        out = (a - 1.0) * np.log(safe) + (b - 1.0) * np.log1p(-safe)
    out = out - betaln(a, b) - np.log(mass)
    return np.where(inside, out, -np.inf)


def _av(prior: PopulationPrior, theta: np.ndarray) -> np.ndarray:
    rate = 1.0 / _h(prior, "av_scale")
    lo, hi = _bounds(prior, "av")
    x = theta[..., _COL["av"]]
    inside = (x >= lo) & (x <= hi)
    mass = np.exp(-rate * lo) - np.exp(-rate * hi)
    return np.where(inside, np.log(rate) - rate * x - np.log(mass), -np.inf)


_FACTORS = {
    "redshift": _redshift,
    "log_mstar": _log_mstar,
    "log_zmet": _log_zmet,
    "log_tau": _normal_factor("log_tau", "tau_mean", "tau_sigma"),
    "age_frac": _age_frac,
    "av": _av,
    "dust_n": _normal_factor("dust_n", "dust_n_mean", "dust_n_sigma"),
    "log_u": _normal_factor("log_u", "logu_mean", "logu_sigma"),
}
