"""Contract tests over every prior family in the registry: what reweighting, calibration and
training rely on, checked the same way for each family."""

from __future__ import annotations

import numpy as np
import pytest

from lor.hierarchy.calibrate import HYPER_BOUNDS
from lor.inference.prior import PopulationPrior
from lor.inference.prior_registry import PRIOR_FAMILIES, prior_from_record
from lor.sps.parameters import PARAM_NAMES

FAMILIES = sorted(PRIOR_FAMILIES)


@pytest.fixture(params=FAMILIES, ids=["-".join(k) for k in FAMILIES])
def prior(request: pytest.FixtureRequest) -> PopulationPrior:
    return PRIOR_FAMILIES[request.param]()


def test_joint_density_integrates_to_one(prior: PopulationPrior) -> None:
    """Monte Carlo over the box: mean density x box volume = 1 within 5 standard errors."""
    rng = np.random.default_rng(0)
    theta = prior.low + (prior.high - prior.low) * rng.uniform(size=(200_000, len(PARAM_NAMES)))
    values = np.exp(prior.log_prob(theta).numpy()) * np.prod(prior.high - prior.low)
    error = values.std() / np.sqrt(len(values))
    assert abs(values.mean() - 1.0) < 5 * error + 0.01


def test_draws_are_reproducible(prior: PopulationPrior) -> None:
    assert np.array_equal(prior.sample(1000, seed=5), prior.sample(1000, seed=5))


def test_draws_lie_inside_the_box_with_finite_density(prior: PopulationPrior) -> None:
    theta = prior.sample(1000, seed=5)
    assert np.all((theta >= prior.low) & (theta <= prior.high))
    assert np.all(np.isfinite(prior.log_prob(theta).numpy()))
    for col in range(len(PARAM_NAMES)):  # every parameter outside its range: zero density
        outside = theta[:2].copy()
        outside[:, col] = prior.high[col] + 1.0
        assert np.all(np.isneginf(prior.log_prob(outside).numpy())), PARAM_NAMES[col]


def test_factors_add_up_and_cover_every_parameter(prior: PopulationPrior) -> None:
    theta = prior.sample(300, seed=6)
    factors = prior.factor_log_probs(theta)
    assert set(factors) == set(prior.factors)
    total = np.sum([v.numpy() for v in factors.values()], axis=0)
    assert np.allclose(total, prior.log_prob(theta).numpy())
    read = {p for params, _ in prior.factors.values() for p in params}
    assert read == set(PARAM_NAMES)
    owned = [h for _, hyper in prior.factors.values() for h in hyper]
    assert set(owned) == set(prior.defaults)


def test_a_hyperparameter_changes_only_the_factors_that_own_it(prior: PopulationPrior) -> None:
    """What :class:`PriorRatio` relies on: the ratio after changing one hyperparameter is the
    ratio of the factors that list it, which read only their listed parameters."""
    theta = prior.sample(400, seed=7)
    base = prior.log_prob(theta).numpy()
    for name, value in prior.defaults.items():
        low, high = HYPER_BOUNDS[name]
        moved = prior.with_hyperparameters(
            prior.hyperparameters | {name: value + 0.05 * (high - low)}
        )
        changed = moved.changed_factors(prior)
        assert changed and all(name in prior.factors[f][1] for f in changed), name
        full = moved.log_prob(theta).numpy() - base
        part = (
            moved.factors_log_prob(theta, changed) - prior.factors_log_prob(theta, changed)
        ).numpy()
        assert np.allclose(full, part, atol=1e-9), name
        read = sorted({p for f in changed for p in prior.factors[f][0]}, key=PARAM_NAMES.index)
        other = [i for i, p in enumerate(PARAM_NAMES) if p not in read]
        shuffled = theta.copy()
        shuffled[:, other] = theta[::-1][:, other]  # parameters the factors do not read
        again = (
            moved.factors_log_prob(shuffled, changed) - prior.factors_log_prob(shuffled, changed)
        ).numpy()
        assert np.allclose(again, part, atol=1e-9), name


def test_record_round_trip_and_same_family_rebuild(prior: PopulationPrior) -> None:
    record = prior.as_record()
    assert (record["family"], record["family_version"]) in PRIOR_FAMILIES
    back = prior_from_record(record)
    assert type(back) is type(prior) and back.as_record() == record
    assert not back.changed_factors(prior)
    assert type(prior.with_hyperparameters(prior.hyperparameters)) is type(prior)
