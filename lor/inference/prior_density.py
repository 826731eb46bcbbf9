"""The population prior's factor densities in closed form, in NumPy (float64).

:class:`lor.inference.prior.PopulationPrior` builds TFP distribution objects, which is what
hierarchical fits need (gradients in the hyperparameters). Reweighting stored posteriors to
a new prior only evaluates the densities of a few factors at fixed hyperparameters, at
millions of points: there the distribution objects, graph tracing and XLA compiles of the
TF path cost more than the arithmetic (the prior ratio was 22% of a prior-change reprocess,
and its compiles the reprocess processor's whole load time). The same formulas in NumPy
agree with the TFP densities to ~1e-12 (``tests/inference/test_prior_density.py``).

The ``population`` family v1 (and mixtures of it) has every factor here; the ``grounded``
family v1 (:mod:`lor.inference.grounded_prior`) and its flexible-n(z) extension
``grounded-flexible`` v1 (:mod:`lor.inference.flexible_prior`) every factor but the star-formation history
(its redshift and mass factors read N(z) tables computed once per hyperparameter set by the
TF code, then interpolated in NumPy). :func:`supports` says whether a prior has the factors
asked for, and callers keep the TF path for the others.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from scipy.special import betainc, betaln, log_ndtr, logsumexp

from lor.inference import flexible_prior as fp
from lor.inference import grounded_prior as gp
from lor.inference.prior import _Z_GRID, FAMILY, FAMILY_VERSION, PopulationPrior, PriorMixture
from lor.sps.parameters import PARAM_NAMES

_HALF_LOG_2PI = 0.5 * np.log(2.0 * np.pi)
_COL = {name: i for i, name in enumerate(PARAM_NAMES)}


def supports(prior: Any, factors: tuple[str, ...] | None = None) -> bool:
    """Whether :func:`factors_log_prob` has this prior's densities of ``factors`` (default:
    all of its factors): the population family v1, or the grounded family v1 without its
    ``sfh`` factor, with numeric hyperparameters; or a mixture of such priors."""
    if isinstance(prior, PriorMixture):
        return all(supports(c, factors) for c in prior.components)
    table = _family_factors(prior)
    if table is None:
        return False
    wanted = tuple(prior.factors) if factors is None else factors
    if not set(wanted) <= set(table):
        return False
    return all(isinstance(v, (int, float, np.floating)) for v in prior.hyperparameters.values())


def _family_factors(prior: Any) -> dict[str, Any] | None:
    """The closed-form factors of ``prior``'s family, None if it has none (a subclass
    family has factors of its own, so the exact class decides)."""
    if type(prior) is PopulationPrior and (prior.family, prior.family_version) == (
        FAMILY,
        FAMILY_VERSION,
    ):
        return _FACTORS
    if type(prior) is gp.GroundedPrior and (prior.family, prior.family_version) == (
        gp.FAMILY,
        gp.FAMILY_VERSION,
    ):
        return _GROUNDED_FACTORS
    if type(prior) is fp.FlexiblePrior:  # its weights: in the N(z) tables and the mass factor
        return _GROUNDED_FACTORS
    return None


def factors_log_prob(
    prior: PopulationPrior | PriorMixture, theta: np.ndarray, factors: tuple[str, ...]
) -> np.ndarray:
    """Sum of the log densities of ``factors`` at ``theta`` ``(..., D)``; -inf outside the box
    of a factor's own parameter (as :meth:`PopulationPrior.factors_log_prob`)."""
    theta = np.asarray(theta, np.float64)
    if isinstance(prior, PriorMixture):
        terms = np.stack([factors_log_prob(c, theta, factors) for c in prior.components])
        return logsumexp(terms, axis=0) - np.log(len(prior.components))
    table = _family_factors(prior)
    if table is None:
        raise ValueError(f"no closed-form densities for the {prior.family!r} prior family")
    total = np.zeros(theta.shape[:-1])
    for name in factors:
        total += table[name](prior, theta)
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


def _normal_factor(
    param: str, mean: str, sigma: str
) -> Callable[[PopulationPrior, np.ndarray], np.ndarray]:
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


# -- the grounded family v1 (lor.inference.grounded_prior) ------------------------------

_GROUNDED_TABLES: dict[tuple[float, ...], tuple[np.ndarray, np.ndarray, np.ndarray, float]] = {}


def _grounded_tables(prior: gp.GroundedPrior) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """The log-z grid, ln N(z), ln dV/dz N(z) and ln C of ``prior`` (its TF ``_tables``,
    computed once per stellar-mass-function hyperparameters and box)."""
    key = (
        type(prior).__name__,
        *prior._table_key(),  # noqa: SLF001 - the values the tables depend on
        *_bounds(prior, "redshift"),
        *_bounds(prior, "log_mstar"),
    )
    if key not in _GROUNDED_TABLES:
        log_n, log_dn, log_c = (t.numpy() for t in prior._tables())  # noqa: SLF001 - one formula
        z_lo, z_hi = _bounds(prior, "redshift")
        grid = np.linspace(np.log(z_lo), np.log(z_hi), gp._NZ)
        if len(_GROUNDED_TABLES) > 16:
            _GROUNDED_TABLES.clear()
        _GROUNDED_TABLES[key] = (grid, log_n, log_dn, float(log_c))
    return _GROUNDED_TABLES[key]


def _grounded_log_smf(prior: gp.GroundedPrior, log_mstar: np.ndarray, z: np.ndarray) -> np.ndarray:
    """:meth:`GroundedPrior.log_smf` in NumPy (Leja et al. 2020 double Schechter)."""
    ln10 = np.log(10.0)
    zc = np.clip(z, gp.LEJA20_ANCHOR_Z[0], gp.LEJA20_ANCHOR_Z[-1])
    tilt = _h(prior, "smf_phi_evolution") * (z - gp.SMF_PIVOT_Z)

    def at(name: str) -> np.ndarray:
        a, b, c = gp._COEF[name]
        return (a * zc + b) * zc + c

    dm = (log_mstar - gp.SURVIVING_MASS_OFFSET) - (at("logmstar") + _h(prior, "smf_mstar_shift"))
    alpha2 = gp.LEJA20_ALPHA2 + _h(prior, "smf_alpha_shift")
    one = (at("logphi1") + tilt + (gp.LEJA20_ALPHA1 + 1.0) * dm) * ln10
    two = (at("logphi2") + tilt + (alpha2 + 1.0) * dm) * ln10
    return np.log(ln10) - np.exp(dm * ln10) + np.logaddexp(one, two)


def _grounded_z(prior: gp.GroundedPrior, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lo, hi = _bounds(prior, "redshift")
    z = theta[..., _COL["redshift"]]
    inside = (z >= lo) & (z <= hi)
    return inside, np.where(inside, z, 0.5 * (lo + hi))


def _grounded_redshift(prior: gp.GroundedPrior, theta: np.ndarray) -> np.ndarray:
    grid, _, log_dn, log_c = _grounded_tables(prior)
    inside, z = _grounded_z(prior, theta)
    return np.where(inside, np.interp(np.log(z), grid, log_dn) - log_c, -np.inf)


def _grounded_log_mstar(prior: gp.GroundedPrior, theta: np.ndarray) -> np.ndarray:
    """ln Φ(M, z) / N(z); -inf outside the mass box (a redshift outside its box is read at
    the box centre, as the TF factor does: that factor is the redshift one's)."""
    grid, log_n, _, _ = _grounded_tables(prior)
    _, z = _grounded_z(prior, theta)
    lo, hi = _bounds(prior, "log_mstar")
    mass = theta[..., _COL["log_mstar"]]
    m_in = (mass >= lo) & (mass <= hi)
    safe = np.where(m_in, mass, 0.5 * (lo + hi))
    cond = (
        _grounded_log_smf(prior, safe, z)
        + prior.mass_log_weight_numpy(safe)
        - np.interp(np.log(z), grid, log_n)
    )
    return np.where(m_in, cond, -np.inf)


def _grounded_log_zmet(prior: gp.GroundedPrior, theta: np.ndarray) -> np.ndarray:
    """Gallazzi et al. (2005) mass-metallicity relation, Table 2 (as ``GroundedPrior._mzr``)."""
    m = theta[..., _COL["log_mstar"]] - gp.SURVIVING_MASS_OFFSET
    grid = gp.GALLAZZI05_LOGM0 + gp.GALLAZZI05_DLOGM * np.arange(len(gp.GALLAZZI05_P50))
    p50, p16, p84 = (np.interp(m, grid, t) for t in (gp.GALLAZZI05_P50, gp.GALLAZZI05_P16,
                                                     gp.GALLAZZI05_P84))  # fmt: skip
    loc = p50 + _h(prior, "mzr_offset")
    scale = (p84 - p16) * _h(prior, "mzr_sigma_scale")
    return _trunc_normal(theta[..., _COL["log_zmet"]], loc, scale, _bounds(prior, "log_zmet"))


def _grounded_av(prior: gp.GroundedPrior, theta: np.ndarray) -> np.ndarray:
    """A_V about Garn & Best (2010) Eq. 8's median relation (as ``GroundedPrior._av_scale``)."""
    mass = theta[..., _COL["log_mstar"]]
    x = np.clip(mass - gp.SURVIVING_MASS_OFFSET - 10.0, *gp.GARN_BEST10_X_RANGE)
    c0, c1, c2, c3 = gp.GARN_BEST10
    loc = _h(prior, "av_norm") * gp.AV_STAR_PER_A_HA * (((c3 * x + c2) * x + c1) * x + c0)
    return _trunc_normal(theta[..., _COL["av"]], loc, _h(prior, "av_scatter"), _bounds(prior, "av"))


_GROUNDED_FACTORS = {
    "redshift": _grounded_redshift,
    "log_mstar": _grounded_log_mstar,
    "log_zmet": _grounded_log_zmet,
    "av": _grounded_av,
    "dust_n": _normal_factor("dust_n", "dust_n_mean", "dust_n_sigma"),
    "log_u": _normal_factor("log_u", "logu_mean", "logu_sigma"),
}
"""Every factor of the grounded family but ``sfh`` (a mixture of truncated Beta histories
weighted by the quiescent fraction: left to the TF path)."""
