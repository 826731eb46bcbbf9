"""The flexible prior family (``grounded-flexible``): the published-relations prior when its
knots are zero; a normalized, correctly sampled n(z) and mass function when they are not;
a hyperprior that penalizes rough weights. (Its generic contracts: test_prior_families.py.)"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from lor.errors import ConfigError
from lor.inference.flexible_prior import MASS_KNOTS, REDSHIFT_KNOTS, FlexiblePrior, lift
from lor.inference.grounded_prior import GroundedPrior
from lor.inference.prior import PopulationPrior

Z_KNOTS = {name: 0.8 * np.sin(k / 2.0) for k, name in enumerate(REDSHIFT_KNOTS.names)}
M_KNOTS = {name: 0.6 * np.cos(k) for k, name in enumerate(MASS_KNOTS.names)}


def _weighted(knots: dict[str, float]) -> FlexiblePrior:
    base = lift(GroundedPrior())
    return base.with_hyperparameters(base.hyperparameters | knots)


def test_zero_knots_are_the_grounded_prior() -> None:
    grounded = GroundedPrior()
    theta = grounded.sample(3000, seed=1)
    lifted = lift(grounded)
    assert np.array_equal(lifted.log_prob(theta).numpy(), grounded.log_prob(theta).numpy())
    assert np.array_equal(lifted.sample(500, seed=2), grounded.sample(500, seed=2))
    assert lifted.changed_factors(grounded) == ()
    assert _weighted(Z_KNOTS).changed_factors(grounded) == ("redshift",)
    assert _weighted(M_KNOTS).changed_factors(grounded) == ("redshift", "log_mstar")
    assert lift(lifted) is lifted


def test_only_the_grounded_family_lifts() -> None:
    with pytest.raises(ConfigError, match="grounded"):
        lift(PopulationPrior())


def _pulls(
    draws: np.ndarray, grid: np.ndarray, density: np.ndarray, edges: np.ndarray
) -> np.ndarray:
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (density[1:] + density[:-1]) * np.diff(grid))])
    expected = len(draws) * np.diff(np.interp(edges, grid, cdf))
    counts, _ = np.histogram(draws, edges)
    return (counts - expected) / np.sqrt(expected + 1.0)


def test_weighted_redshift_density_is_normalized_and_sampled() -> None:
    prior = _weighted(Z_KNOTS | M_KNOTS)
    z = np.linspace(0.01, 4.0, 8001)
    theta = np.tile(prior.sample(1, seed=0), (len(z), 1))
    theta[:, 0] = z
    density = np.exp(prior.factors_log_prob(theta, ("redshift",)).numpy())
    assert abs(np.trapezoid(density, z) - 1.0) < 1e-3
    draws = prior.sample(200_000, seed=3)[:, 0]
    edges = np.linspace(0.01, 4.0, 41)
    assert np.max(np.abs(_pulls(draws, z, density, edges))) < 5
    # and the weights moved it: the grounded prior's draws are far from this density
    plain = GroundedPrior().sample(200_000, seed=3)[:, 0]
    assert np.max(np.abs(_pulls(plain, z, density, edges))) > 20


def test_weighted_mass_function_is_normalized_and_sampled_at_each_redshift() -> None:
    prior = _weighted(M_KNOTS)
    draws = prior.sample(400_000, seed=4)
    mass = np.linspace(7.0, 12.5, 4001)
    for z_lo, z_hi in ((0.4, 0.5), (1.5, 1.7)):
        sel = draws[(draws[:, 0] > z_lo) & (draws[:, 0] < z_hi)]
        theta = np.tile(sel[:1], (len(mass), 1))
        theta[:, 0] = 0.5 * (z_lo + z_hi)
        theta[:, 1] = mass
        density = np.exp(prior.factors_log_prob(theta, ("log_mstar",)).numpy())
        assert abs(np.trapezoid(density, mass) - 1.0) < 1e-3
        assert np.max(np.abs(_pulls(sel[:, 1], mass, density, np.linspace(7.0, 12.5, 23)))) < 5


def test_hyperprior_penalizes_roughness_not_only_size() -> None:
    prior = lift(GroundedPrior())
    names = REDSHIFT_KNOTS.names
    smooth = dict.fromkeys(names, 0.5)
    rough = {n: 0.5 * (-1) ** k for k, n in enumerate(names)}
    zero = {n: tf.constant(0.0, tf.float64) for n in names + MASS_KNOTS.names}
    assert float(prior.log_hyperprior(zero)) == 0.0
    assert float(prior.log_hyperprior(smooth)) > float(prior.log_hyperprior(rough))
    assert float(prior.log_hyperprior({"smf_phi_evolution": 0.3})) == 0.0  # not a knot
    assert float(GroundedPrior().log_hyperprior(rough)) == 0.0  # no hyperprior there
