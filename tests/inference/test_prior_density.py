"""The closed-form NumPy prior densities agree with the TFP ones they replace in reweighting."""

from __future__ import annotations

import numpy as np
import pytest

from lor.inference import prior_density
from lor.inference.prior import FACTORS, INTERIM_HYPERPARAMETERS, PopulationPrior, PriorMixture

SHIFT = {"z0": 0.72, "mass_mean": 9.85, "av_scale": 0.42, "age_a": 2.1, "logu_sigma": 0.4}


def _points(prior: PopulationPrior) -> np.ndarray:
    """Prior draws, points outside and on the box edges."""
    theta = prior.sample(3000, seed=1)
    rng = np.random.default_rng(0)
    theta[:100] = prior.low + (prior.high - prior.low) * rng.uniform(-0.05, 1.05, (100, 8))
    theta[100:110], theta[110:120] = prior.low, prior.high
    return theta


@pytest.mark.parametrize("factor", list(FACTORS))
def test_each_factor_matches_tfp(factor: str) -> None:
    prior = PopulationPrior(INTERIM_HYPERPARAMETERS | SHIFT)
    theta = _points(prior)
    expected = prior.factors_log_prob(theta, (factor,)).numpy()
    got = prior_density.factors_log_prob(prior, theta, (factor,))
    finite = np.isfinite(expected)
    assert np.array_equal(finite, np.isfinite(got)) and (~finite).any()  # outside the box
    np.testing.assert_allclose(got[finite], expected[finite], rtol=0, atol=1e-10)


def test_mixture_and_batch_shapes() -> None:
    mixture = PriorMixture([PopulationPrior(INTERIM_HYPERPARAMETERS | SHIFT), PopulationPrior()])
    theta = _points(PopulationPrior())[:1200].reshape(4, 300, 8)
    factors = tuple(FACTORS)
    expected = mixture.factors_log_prob(theta.reshape(-1, 8), factors).numpy().reshape(4, 300)
    got = prior_density.factors_log_prob(mixture, theta, factors)
    finite = np.isfinite(expected)
    assert got.shape == (4, 300) and np.array_equal(finite, np.isfinite(got))
    np.testing.assert_allclose(got[finite], expected[finite], rtol=0, atol=1e-10)
    assert prior_density.supports(mixture)


def test_other_families_keep_the_tf_path() -> None:
    class Other(PopulationPrior):
        family = "other"

    assert not prior_density.supports(Other())
    assert not prior_density.supports(PopulationPrior({**INTERIM_HYPERPARAMETERS, "z0": None}))


GROUNDED_SHIFT = {"smf_phi_evolution": -0.25, "smf_mstar_shift": 0.1, "mzr_offset": 0.05,
                  "av_norm": 1.2, "logu_sigma": 0.4}  # fmt: skip


@pytest.mark.parametrize("factor", ["redshift", "log_mstar", "log_zmet", "av", "dust_n", "log_u"])
@pytest.mark.parametrize("flexible", [False, True], ids=["grounded", "grounded-flexible"])
def test_grounded_factors_match_tfp(factor: str, flexible: bool) -> None:
    from lor.inference.flexible_prior import MASS_KNOTS, REDSHIFT_KNOTS, lift
    from lor.inference.grounded_prior import GROUNDED_HYPERPARAMETERS, GroundedPrior

    prior = GroundedPrior(GROUNDED_HYPERPARAMETERS | GROUNDED_SHIFT)
    if flexible:  # knots on n(z) and on the mass function
        prior = lift(prior)
        names = REDSHIFT_KNOTS.names + MASS_KNOTS.names
        knots = {name: 0.5 * np.sin(k) for k, name in enumerate(names)}
        prior = prior.with_hyperparameters(prior.hyperparameters | knots)
    theta = _points(prior)
    expected = prior.factors_log_prob(theta, (factor,)).numpy()
    got = prior_density.factors_log_prob(prior, theta, (factor,))
    finite = np.isfinite(expected)
    assert np.array_equal(finite, np.isfinite(got)) and (~finite).any()  # outside the box
    np.testing.assert_allclose(got[finite], expected[finite], rtol=0, atol=1e-10)
    assert prior_density.supports(prior, (factor,))


def test_grounded_star_formation_history_keeps_the_tf_path() -> None:
    from lor.inference.grounded_prior import GroundedPrior

    assert not prior_density.supports(GroundedPrior())  # all factors: sfh among them
    assert not prior_density.supports(GroundedPrior(), ("redshift", "sfh"))
    assert prior_density.supports(GroundedPrior(), ("redshift", "log_mstar"))
