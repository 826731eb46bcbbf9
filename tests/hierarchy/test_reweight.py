"""Reweighting stored posteriors to a new prior: cubature against importance sampling + EM, and
against MCMC under the new prior on simulated objects."""

from __future__ import annotations

import numpy as np
import pytest

from lor.hierarchy.reweight import (
    CUBATURE_ESS_MIN,
    PosteriorReweighter,
    PriorRatio,
    cubature_rule,
    importance_refit,
    reweight_by_cubature,
)
from lor.inference.prior import INTERIM_HYPERPARAMETERS, PopulationPrior


@pytest.fixture(scope="module")
def engine():  # type: ignore[no-untyped-def]
    from lor.emulators.registry import load_shipped_emulator
    from lor.inference.amortized import PhotometryPosteriors
    from lor.inference.registry import load_shipped_estimator

    return PhotometryPosteriors(load_shipped_estimator(), load_shipped_emulator())


@pytest.fixture(scope="module")
def new_prior() -> PopulationPrior:
    return PopulationPrior(hyperparameters=INTERIM_HYPERPARAMETERS | {"z0": 0.6, "mass_mean": 10.0})


def test_cubature_rule_integrates_quadratics() -> None:
    points, weights = cubature_rule(3)
    assert np.isclose(weights.sum(), 1.0)
    assert np.allclose(weights @ points, 0.0)
    assert np.allclose((points * weights[:, None]).T @ points, np.eye(3))


def test_prior_ratio_uses_only_changed_factors(new_prior: PopulationPrior) -> None:
    ratio = PriorRatio(new_prior, PopulationPrior())
    assert ratio.factors == ("redshift", "log_mstar")
    theta = PopulationPrior().sample(200, seed=1)
    full = (new_prior.log_prob(theta) - PopulationPrior().log_prob(theta)).numpy()
    assert np.allclose(ratio(theta), full, atol=1e-9)
    assert PriorRatio(PopulationPrior(), PopulationPrior()).is_identity


def test_cubature_matches_importance_sampling(engine, new_prior) -> None:  # type: ignore[no-untyped-def]
    from lor.inference.simulate import simulate_catalog

    cat = simulate_catalog(300, engine.emulator, PopulationPrior(), seed=4)
    params = engine.infer(cat.flux, cat.flux_err).params
    ratio = PriorRatio(new_prior, PopulationPrior())
    fast, ess = reweight_by_cubature(engine.rep, params, ratio)
    slow, effective = importance_refit(engine.rep, params, ratio, seed=2, n_draws=1024)
    used = ess >= CUBATURE_ESS_MIN  # the others go to importance sampling in the reweighter
    assert used.mean() > 0.9 and np.median(effective) > 100
    z_fast = engine.rep.z_quantile(fast[used], 0.5)
    z_slow = engine.rep.z_quantile(slow[used], 0.5)
    z_old = engine.rep.z_quantile(params[used], 0.5)
    dz = np.abs(z_fast - z_slow) / (1 + z_slow)
    assert np.median(dz) < 0.003, np.median(dz)
    # The new prior (smaller z0) pulls redshifts down: the reweighting must show it.
    assert np.median(z_fast - z_old) < 0


def test_unchanged_prior_returns_the_same_posteriors(engine) -> None:  # type: ignore[no-untyped-def]
    from lor.inference.simulate import simulate_catalog

    cat = simulate_catalog(20, engine.emulator, PopulationPrior(), seed=5)
    params = engine.infer(cat.flux, cat.flux_err).params
    same, ess = reweight_by_cubature(
        engine.rep, params, PriorRatio(PopulationPrior(), PopulationPrior())
    )
    assert np.array_equal(same, params) and np.all(ess == 1)


def test_low_ess_objects_are_flagged_and_redone(engine) -> None:  # type: ignore[no-untyped-def]
    """A calibration change of 0.5 mag leaves no usable importance weights for bright objects:
    they are flagged LOW_ESS and redone by the estimator under the new calibration."""
    from lor.inference.flags import Flag
    from lor.inference.simulate import simulate_catalog

    cat = simulate_catalog(40, engine.emulator, PopulationPrior(), seed=6)
    params = engine.infer(cat.flux, cat.flux_err).params
    zeros, ones = np.zeros_like(cat.flux), np.ones_like(cat.flux)
    rw = PosteriorReweighter(engine, PopulationPrior(), PopulationPrior())
    out = rw.reweight(params, cat.flux, cat.flux_err, None, None, zeros, ones, zeros + 0.5, ones)
    low = (out.flags & Flag.LOW_ESS) != 0
    assert low.any()
    assert np.all(out.flags[low] & Flag.FALLBACK)
    assert np.all(np.isfinite(out.params))
    fresh = engine.infer(cat.flux, cat.flux_err, zeropoint_offset=zeros + 0.5).params
    z_new = engine.rep.z_quantile(out.params[low], 0.5)
    z_fresh = engine.rep.z_quantile(fresh[low], 0.5)
    assert np.allclose(z_new, z_fresh, atol=1e-6)


def test_predicted_shift_separates_small_and_large_calibration_changes(engine) -> None:  # type: ignore[no-untyped-def]
    from lor.hierarchy.reweight import IS_DRAWS, IS_EFFECTIVE_MIN, predicted_shift
    from lor.inference.simulate import simulate_catalog

    cat = simulate_catalog(50, engine.emulator, PopulationPrior(), seed=7)
    old = engine.prepare(cat.flux, cat.flux_err)
    rows = np.arange(50)
    tiny = predicted_shift(
        old,
        engine.prepare(cat.flux, cat.flux_err, zeropoint_offset=np.full_like(cat.flux, 1e-4)),
        rows,
    )
    large = predicted_shift(
        old,
        engine.prepare(cat.flux, cat.flux_err, zeropoint_offset=np.full_like(cat.flux, 0.3)),
        rows,
    )
    limit = np.log(IS_DRAWS / IS_EFFECTIVE_MIN)
    assert np.all(tiny < limit) and np.all(large > tiny) and np.median(large) > limit


def test_a_prior_change_carries_the_parents_data_checks(engine, new_prior) -> None:  # type: ignore[no-untyped-def]
    """Input-density and fit flags of cubature-updated objects come from the parent row (the
    data and likelihood did not change); the prior-edge check and the rest are this run's."""
    from lor.hierarchy.reweight import DATA_CHECKS
    from lor.inference.flags import Flag
    from lor.inference.simulate import simulate_catalog

    cat = simulate_catalog(60, engine.emulator, PopulationPrior(), seed=8)
    parent = engine.infer(cat.flux, cat.flux_err)
    zeros, ones = np.zeros_like(cat.flux), np.ones_like(cat.flux)
    rw = PosteriorReweighter(engine, PopulationPrior(), new_prior)
    args = (parent.params, cat.flux, cat.flux_err, None, None, zeros, ones, zeros, ones)
    fresh = rw.reweight(*args)
    marked = np.where(np.arange(60) % 3 == 0, int(DATA_CHECKS | Flag.LOW_ESS), 0)
    carried = rw.reweight(*args, parent_flags=marked)
    cubature = fresh.method == "reweighted"
    assert cubature.sum() > 50
    np.testing.assert_array_equal(
        carried.flags[cubature] & DATA_CHECKS, marked[cubature] & DATA_CHECKS
    )
    assert not np.any(carried.flags & Flag.LOW_ESS)  # the parent's own method is not carried
    keep = ~DATA_CHECKS
    np.testing.assert_array_equal(carried.flags & keep, fresh.flags & keep)
    for k, v in fresh.summaries.items():
        np.testing.assert_array_equal(carried.summaries[k], v)  # summaries are deterministic


def test_marginalizing_hyperparameters_averages_the_prior(engine) -> None:  # type: ignore[no-untyped-def]
    """A mixture over hyperparameter draws: its ratio is the mean of the draws' densities;
    reweighting to it reduces to the best fit as the fit's uncertainty shrinks, and moves
    redshifts by no more than the uncertainty allows."""
    from lor.hierarchy.calibrate import hyperparameter_mixture
    from lor.inference.simulate import simulate_catalog

    best = PopulationPrior(hyperparameters=INTERIM_HYPERPARAMETERS | {"z0": 0.7})
    mixture = hyperparameter_mixture(best, ["z0"], np.array([[0.05**2]]), n_draws=8, seed=1)
    z0s = sorted(c.hyperparameters["z0"] for c in mixture.components)
    assert np.isclose(np.mean(z0s), 0.7) and z0s[0] < 0.7 < z0s[-1]  # antithetic draws
    theta = PopulationPrior().sample(100, seed=2)
    logs = np.stack([c.log_prob(theta).numpy() for c in mixture.components])
    expected = np.log(np.mean(np.exp(logs - PopulationPrior().log_prob(theta).numpy()), axis=0))
    assert np.allclose(PriorRatio(mixture, PopulationPrior())(theta), expected, atol=1e-9)

    cat = simulate_catalog(300, engine.emulator, PopulationPrior(), seed=6)
    params = engine.infer(cat.flux, cat.flux_err).params

    def z50(prior) -> np.ndarray:  # type: ignore[no-untyped-def]
        out, _ = reweight_by_cubature(engine.rep, params, PriorRatio(prior, PopulationPrior()))
        return engine.rep.z_quantile(out, 0.5)

    fixed = z50(best)
    sharp = hyperparameter_mixture(best, ["z0"], np.array([[1e-10]]), n_draws=4, seed=1)
    assert np.allclose(z50(sharp), fixed, atol=1e-4)
    dz = np.abs(z50(mixture) - fixed) / (1 + fixed)
    assert 0 < np.max(dz) and np.median(dz) < 0.005
    with pytest.raises(ValueError, match="at least 2"):
        hyperparameter_mixture(best, ["z0"], np.array([[0.01]]), n_draws=1)


def test_reweighted_redshifts_agree_with_mcmc_under_the_new_prior(engine) -> None:  # type: ignore[no-untyped-def]
    """Direct inference as the reference: objects drawn from a population unlike the interim
    prior, their interim posteriors reweighted to that population's prior, against MCMC
    (emulator likelihood x the same prior) on the same objects."""
    from lor.hierarchy.calibrate import VALIDATION_SHIFT
    from lor.inference.simulate import simulate_catalog
    from lor.inference.validation import mcmc_reference

    truth = PopulationPrior(hyperparameters=INTERIM_HYPERPARAMETERS | VALIDATION_SHIFT)
    cat = simulate_catalog(60, engine.emulator, truth, seed=8)
    interim = engine.infer(cat.flux, cat.flux_err, seed=1)
    zeros, ones = np.zeros_like(cat.flux), np.ones_like(cat.flux)
    reweighted = PosteriorReweighter(engine, PopulationPrior(), truth).reweight(
        interim.params, cat.flux, cat.flux_err, None, None, zeros, ones, zeros, ones, seed=2
    )
    samples, _ = mcmc_reference(engine.emulator, truth, engine.rep, interim.params, cat.flux,
                                cat.flux_err, n_burn=600, n_steps=600, seed=3)  # fmt: skip
    z_mcmc = np.median(samples[:, :, 0], axis=1)
    dz = np.abs(reweighted.summaries["z_q50"] - z_mcmc) / (1 + z_mcmc)
    assert np.median(dz) < 0.007, np.median(dz)  # the bench: 0.0047 on 200 objects
    assert np.all(reweighted.method == "reweighted")
