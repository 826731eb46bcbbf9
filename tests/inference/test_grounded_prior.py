"""The published-relations prior (family "grounded"): density, sampling, gradients, the
family registry, and its predictions against published deep-field figures."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from scipy.stats import kstest

from lor.errors import ConfigError
from lor.hierarchy.calibrate import HYPER_BOUNDS, hyperparameter_mixture
from lor.hierarchy.reweight import PriorRatio
from lor.inference.grounded_prior import GROUNDED_HYPERPARAMETERS, GroundedPrior
from lor.inference.prior import PopulationPrior
from lor.inference.prior_registry import estimator_prior, prior_from_record
from lor.sps.parameters import PARAM_NAMES

Z, M = PARAM_NAMES.index("redshift"), PARAM_NAMES.index("log_mstar")


@pytest.fixture(scope="module")
def prior() -> GroundedPrior:
    return GroundedPrior()


def _grid_theta(z: np.ndarray, m: np.ndarray) -> np.ndarray:
    zz, mm = np.meshgrid(z, m, indexing="ij")
    theta = np.tile(0.5 * (GroundedPrior().low + GroundedPrior().high), (zz.size, 1))
    theta[:, Z], theta[:, M] = zz.ravel(), mm.ravel()
    return theta


def test_redshift_mass_density_is_normalized(prior: GroundedPrior) -> None:
    z, m = np.linspace(0.01, 4.0, 900), np.linspace(7.0, 12.5, 300)
    logs = prior.factor_log_probs(_grid_theta(z, m), ("redshift", "log_mstar"))
    joint = np.exp((logs["redshift"] + logs["log_mstar"]).numpy()).reshape(len(z), len(m))
    assert np.trapezoid(np.trapezoid(joint, m, axis=1), z) == pytest.approx(1.0, abs=2e-3)
    # each p(M | z) integrates to one on its own
    cond = np.exp(logs["log_mstar"].numpy()).reshape(len(z), len(m))
    assert np.allclose(np.trapezoid(cond, m, axis=1), 1.0, atol=2e-3)


def test_every_factor_is_finite_on_samples_and_minus_inf_outside(prior: GroundedPrior) -> None:
    theta = prior.sample(2000, seed=3)
    assert np.all((theta >= prior.low) & (theta <= prior.high))
    for name, value in prior.factor_log_probs(theta).items():
        assert np.all(np.isfinite(value.numpy())), name
    outside = theta[:4].copy()
    outside[0, Z], outside[1, M], outside[2, PARAM_NAMES.index("av")] = 4.5, 6.0, 3.5
    assert np.all(np.isneginf(prior.log_prob(outside).numpy()[:3]))


def _pit(prior: GroundedPrior, theta: np.ndarray, col: int, factor: str) -> np.ndarray:
    """CDF of each row's ``col`` under ``factor`` given the row's other parameters."""
    lo, hi = prior.low[col], prior.high[col]
    grid = np.linspace(lo, hi, 801)
    rows = np.repeat(theta, len(grid), axis=0)
    rows[:, col] = np.tile(grid, len(theta))
    dens = np.exp(prior.factor_log_probs(rows, (factor,))[factor].numpy()).reshape(len(theta), -1)
    cdf = np.concatenate(
        [np.zeros((len(theta), 1)), np.cumsum(0.5 * (dens[:, 1:] + dens[:, :-1]), axis=1)], axis=1
    ) * (grid[1] - grid[0])
    cdf /= cdf[:, -1:]
    return np.array([np.interp(t, grid, c) for t, c in zip(theta[:, col], cdf, strict=True)])


@pytest.mark.parametrize(
    ("column", "factor"),
    [("redshift", "redshift"), ("log_mstar", "log_mstar"), ("log_zmet", "log_zmet"),
     ("av", "av"), ("log_tau", "sfh"), ("age_frac", "sfh")],
)  # fmt: skip
def test_samples_follow_the_density(prior: GroundedPrior, column: str, factor: str) -> None:
    """Probability integral transform of 3,000 draws under each (conditional) factor: uniform
    by KS (p > 0.01); mass given z tests the 2-D inverse-CDF table."""
    theta = prior.sample(3000, seed=11)
    pit = _pit(prior, theta, PARAM_NAMES.index(column), factor)
    assert kstest(pit, "uniform").pvalue > 0.01


def test_sampling_is_fast(prior: GroundedPrior) -> None:
    import time

    prior.sample_redshift_mass(10, np.random.default_rng(0))  # tables built once
    best = np.inf
    for i in range(3):
        start = time.perf_counter()
        prior.sample_redshift_mass(500_000, np.random.default_rng(i))
        best = min(best, time.perf_counter() - start)
    # lor bench prior measured 1.7M (z, M) draws/s on one core (load 3.4); the test asks for
    # 0.5M/s, best of three, so a loaded shared machine does not fail it
    assert best < 1.0


def test_gradients_in_every_hyperparameter_are_finite(prior: GroundedPrior) -> None:
    theta = tf.constant(prior.sample(500, seed=2))
    values = {h: tf.Variable(v, dtype=tf.float64) for h, v in GROUNDED_HYPERPARAMETERS.items()}
    with tf.GradientTape() as tape:
        total = tf.reduce_sum(prior.with_hyperparameters(values).log_prob(theta))
    grads = tape.gradient(total, list(values.values()))
    for name, grad in zip(values, grads, strict=True):
        assert grad is not None and np.isfinite(grad.numpy()), name
    moved = [name for name, grad in zip(values, grads, strict=True) if abs(grad.numpy()) > 0]
    assert set(moved) == set(values)


def test_every_hyperparameter_has_calibration_bounds_around_its_default() -> None:
    for name, value in GROUNDED_HYPERPARAMETERS.items():
        low, high = HYPER_BOUNDS[name]
        assert low < value < high, name


def test_record_round_trip_through_the_registry(prior: GroundedPrior) -> None:
    box = dict(prior.box) | {"redshift": (0.02, 3.5)}
    shifted = GroundedPrior(
        hyperparameters=GROUNDED_HYPERPARAMETERS | {"smf_mstar_shift": 0.1, "av_norm": 0.7},
        box=box,
        selection={"band": "i", "mag_max": 24.5},
    )
    for original in (shifted, PopulationPrior()):
        back = prior_from_record(original.as_record())
        assert type(back) is type(original)
        assert back.as_record() == original.as_record()
        theta = original.sample(50, seed=1)
        assert np.allclose(back.log_prob(theta).numpy(), original.log_prob(theta).numpy())
    assert isinstance(estimator_prior({"prior": shifted.as_record()}), GroundedPrior)
    with pytest.raises(ConfigError):
        prior_from_record(prior.as_record() | {"family_version": "99"})
    with pytest.raises(ConfigError):
        GroundedPrior(hyperparameters=GROUNDED_HYPERPARAMETERS | {"z0": 0.9})


def test_prior_version_row_loads_losslessly(engine) -> None:  # type: ignore[no-untyped-def]
    from lor.db.model_store import register_prior_version
    from lor.db.prior_store import PriorManager

    original = GroundedPrior(
        hyperparameters=GROUNDED_HYPERPARAMETERS | {"smf_phi_evolution": -0.2},
        box=dict(GroundedPrior().box) | {"log_mstar": (7.5, 12.0)},
        selection={"band": "i", "mag_max": 25.0},
    )
    with engine.begin() as conn:
        pid = register_prior_version(conn, "grounded-test", original.as_record(), "manual", {})
    with engine.connect() as conn:
        assert PriorManager(engine).load(conn, pid).as_record() == original.as_record()


def test_prior_ratio_and_mixtures_use_the_family_factors(prior: GroundedPrior) -> None:
    new = prior.with_hyperparameters(GROUNDED_HYPERPARAMETERS | {"av_norm": 1.5})
    ratio = PriorRatio(new, prior)
    assert ratio.factors == ("av",)
    assert [PARAM_NAMES[c] for c in ratio.columns] == ["log_mstar", "av"]
    theta = prior.sample(200, seed=4)
    full = (new.log_prob(theta) - prior.log_prob(theta)).numpy()
    assert np.allclose(ratio(theta), full, atol=1e-9)
    across = PriorRatio(prior, PopulationPrior())  # training prior of another family
    assert across.factors == tuple(prior.factors)
    assert np.allclose(
        across(theta), (prior.log_prob(theta) - PopulationPrior().log_prob(theta)).numpy()
    )
    mixture = hyperparameter_mixture(new, ["av_norm"], np.array([[0.01]]), n_draws=4)
    assert all(type(c) is GroundedPrior for c in mixture.components)


@pytest.fixture(scope="module")
def emulator():  # type: ignore[no-untyped-def]
    from lor.emulators.registry import load_shipped_emulator

    return load_shipped_emulator()


COUNTS_TOLERANCE = 0.20
"""Relative: measured +7% / +2% / -1% at i < 24 / 25 / 25.3 (200,000 draws)."""
MEDIAN_Z_TOLERANCE = 0.20
"""Measured: +0.11 from the Science Book's 0.83 at i < 25.3 (interim prior: +0.42)."""
COSMOS_BIN_TOLERANCE = 0.15
"""Measured: +0.06 (22 < i < 22.5) and +0.05 (24.5 < i < 25) (interim prior: +0.56, +0.39)."""


def test_predictions_match_published_deep_field_figures(emulator) -> None:  # type: ignore[no-untyped-def]
    from lor.inference.prior_checks import (
        compare_with_published,
        lsst_counts,
        predicted_figures,
        published_figures,
    )

    published = published_figures(25.3)
    predicted = predicted_figures(GroundedPrior(), emulator, n_draws=150_000, seed=1)
    for mag in ("24", "25", "25.3"):
        ratio = predicted["counts_per_arcmin2"][mag] / lsst_counts(float(mag))
        assert abs(ratio - 1.0) < COUNTS_TOLERANCE, (mag, ratio)
    assert abs(predicted["median_z"] - published["median_z"]) < MEDIAN_Z_TOLERANCE
    compared = compare_with_published(predicted)
    for key in ("median_z_22_22.5_minus_cosmos", "median_z_24.5_25_minus_cosmos"):
        assert abs(compared[key]) < COSMOS_BIN_TOLERANCE, (key, compared[key])
    # z ~ 3: about the colour-selected Lyman-break counts (interlopers and incompleteness of
    # colour selection allow 0.8-2x; measured 1.2x)
    assert 0.8 < compared["lbg_ratio"] < 2.0
    # the same checks tell the interim prior apart: they can fail
    interim = predicted_figures(PopulationPrior(), emulator, n_draws=30_000, seed=1)
    assert abs(interim["median_z"] - published["median_z"]) > MEDIAN_Z_TOLERANCE
    assert "counts_per_arcmin2" not in interim  # no absolute normalization to check


def test_simulated_catalogs_fill_despite_a_low_acceptance(emulator) -> None:  # type: ignore[no-untyped-def]
    """~6% of draws pass i < 25.3: simulate_catalog sizes its rounds by the acceptance so far."""
    from lor.inference.simulate import observed_mag, simulate_catalog

    cat = simulate_catalog(3000, emulator, GroundedPrior(), seed=3)
    assert len(cat) == 3000
    assert np.all(observed_mag(cat.flux[:, emulator.band_names.index("i")]) < 25.3)
    assert np.median(cat.theta[:, Z]) < 1.2  # the selected population, not the prior's
