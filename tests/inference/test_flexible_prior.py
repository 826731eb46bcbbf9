"""The flexible-n(z) prior family (``grounded-nz``): the published-relations prior when its
knots are zero, a normalized and correctly sampled n(z) when they are not, and a hyperprior
that penalizes rough weights. (Its generic contracts run in test_prior_families.py.)"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from lor.errors import ConfigError
from lor.inference.flexible_prior import NZ_NAMES, RedshiftWeightedPrior, lift
from lor.inference.grounded_prior import GroundedPrior
from lor.inference.prior import PopulationPrior

KNOTS = {name: 0.8 * np.sin(k / 2.0) for k, name in enumerate(NZ_NAMES)}


def _weighted() -> RedshiftWeightedPrior:
    base = lift(GroundedPrior())
    return base.with_hyperparameters(base.hyperparameters | KNOTS)


def test_zero_knots_are_the_grounded_prior() -> None:
    grounded = GroundedPrior()
    theta = grounded.sample(3000, seed=1)
    lifted = lift(grounded)
    assert np.array_equal(lifted.log_prob(theta).numpy(), grounded.log_prob(theta).numpy())
    assert lifted.changed_factors(grounded) == ()
    assert _weighted().changed_factors(grounded) == ("redshift",)
    assert lift(lifted) is lifted


def test_only_the_grounded_family_lifts() -> None:
    with pytest.raises(ConfigError, match="grounded"):
        lift(PopulationPrior())


def test_weighted_redshift_density_is_normalized_and_sampled() -> None:
    prior = _weighted()
    z = np.linspace(0.01, 4.0, 8001)
    theta = np.tile(prior.sample(1, seed=0), (len(z), 1))
    theta[:, 0] = z
    density = np.exp(prior.factors_log_prob(theta, ("redshift",)).numpy())
    assert abs(np.trapezoid(density, z) - 1.0) < 1e-3
    draws = prior.sample(200_000, seed=3)[:, 0]
    edges = np.linspace(0.01, 4.0, 41)
    counts, _ = np.histogram(draws, edges)
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (density[1:] + density[:-1]) * np.diff(z))])
    expected = len(draws) * np.diff(np.interp(edges, z, cdf))
    pulls = (counts - expected) / np.sqrt(expected + 1.0)
    assert np.max(np.abs(pulls)) < 5, pulls.round(1)
    # and the weights moved it: the grounded prior's histogram is far from these draws
    plain = np.histogram(GroundedPrior().sample(200_000, seed=3)[:, 0], edges)[0]
    assert np.max(np.abs(plain - expected) / np.sqrt(expected + 1.0)) > 20


def test_hyperprior_penalizes_roughness_not_only_size() -> None:
    prior = lift(GroundedPrior())
    smooth = {n: 0.5 for n in NZ_NAMES}
    rough = {n: 0.5 * (-1) ** k for k, n in enumerate(NZ_NAMES)}
    at = {n: tf.constant(0.0, tf.float64) for n in NZ_NAMES}
    assert float(prior.log_hyperprior(at)) == 0.0
    assert float(prior.log_hyperprior(smooth)) > float(prior.log_hyperprior(rough))
    assert float(GroundedPrior().log_hyperprior(rough)) == 0.0  # no hyperprior there
