"""The population prior (normalization, structure) and the data model (LSST error model)."""

from __future__ import annotations

import numpy as np
import pytest

from lor.errors import ConfigError
from lor.inference.data_model import DataModel, extinction_coefficients
from lor.inference.prior import INTERIM_HYPERPARAMETERS, PopulationPrior
from lor.sps.parameters import box_arrays, default_training_box
from lor.units import abmag_to_njy


@pytest.fixture(scope="module")
def prior() -> PopulationPrior:
    return PopulationPrior()


def test_samples_lie_in_the_box_with_finite_density(prior: PopulationPrior) -> None:
    theta = prior.sample(20_000, seed=1)
    lo, hi = box_arrays(default_training_box())
    assert np.all(theta >= lo) and np.all(theta <= hi)
    assert np.isfinite(prior.log_prob(theta).numpy()).all()
    outside = theta[:3].copy()
    outside[0, 0] = 4.5
    outside[1, 5] = -0.1
    lp = prior.log_prob(outside).numpy()
    assert lp[0] == -np.inf and lp[1] == -np.inf and np.isfinite(lp[2])


def test_joint_density_is_normalized(prior: PopulationPrior) -> None:
    """E_uniform[p(theta)] * box volume = 1 (Monte Carlo, 400k draws: ~1.5% error)."""
    lo, hi = box_arrays(default_training_box())
    rng = np.random.default_rng(2)
    theta = rng.uniform(lo, hi, (400_000, len(lo)))
    integral = np.exp(prior.log_prob(theta).numpy()).mean() * np.prod(hi - lo)
    assert integral == pytest.approx(1.0, abs=0.05)


def test_samples_follow_the_density(prior: PopulationPrior) -> None:
    """Redshift samples against the analytic marginal (KS), and the mass-redshift trend."""
    theta = prior.sample(20_000, seed=3)
    z = np.sort(theta[:, 0])
    grid = np.linspace(0.01, 4.0, 4001)
    h = prior.hyperparameters
    pdf = grid ** h["alpha"] * np.exp(-((grid / h["z0"]) ** h["beta"]))
    cdf = np.cumsum(pdf)
    cdf /= cdf[-1]
    ks = np.max(np.abs(np.interp(z, grid, cdf) - np.arange(1, len(z) + 1) / len(z)))
    assert ks < 0.015
    low_z, high_z = theta[:, 0] < 0.5, theta[:, 0] > 2.0
    trend = theta[high_z, 1].mean() - theta[low_z, 1].mean()
    expected = h["mass_evolution"] * (
        np.log1p(theta[high_z, 0]).mean() - np.log1p(theta[low_z, 0]).mean()
    )
    assert trend == pytest.approx(expected, abs=0.05)


def test_hyperparameters_are_checked() -> None:
    bad = dict(INTERIM_HYPERPARAMETERS)
    del bad["z0"]
    with pytest.raises(ConfigError, match="z0"):
        PopulationPrior(hyperparameters=bad)
    with pytest.raises(ConfigError, match="nonsense"):
        PopulationPrior(hyperparameters=INTERIM_HYPERPARAMETERS | {"nonsense": 1.0})


def test_lsst_error_model() -> None:
    dm = DataModel()
    m5 = dm.depth(10.0)
    flux_at_m5 = abmag_to_njy(m5)
    snr = flux_at_m5 / dm.flux_error(flux_at_m5[None, :])[0]
    # Ivezic et al. 2019 Eq. 5 at m = m5: sigma_m = 0.2 mag -> S/N = 2.5 / (ln 10 * 0.2)
    np.testing.assert_allclose(snr, 2.5 / (np.log(10) * 0.2), rtol=1e-9)
    np.testing.assert_allclose(dm.depth(1.0), m5 - 1.25)
    bright = abmag_to_njy(20.0) * np.ones((1, 6))
    sigma_m = 2.5 / np.log(10) * dm.flux_error(bright)[0] / bright[0]
    assert np.all(sigma_m < 0.01)  # bright sources: well below 1%
    with pytest.raises(ConfigError):
        DataModel(bands=("u", "Ks"))


def test_observe_noise_zeropoints_and_extinction() -> None:
    dm = DataModel()
    rng = np.random.default_rng(4)
    true = np.full((50_000, 6), 500.0)
    zp = np.array([0.03, -0.02, 0.0, 0.01, 0.0, -0.03])
    obs, err = dm.observe(true, rng, 10.0, zeropoint_offset=zp, noise_scale=1.2)
    pulls = (obs - true * 10 ** (-0.4 * zp)) / err
    np.testing.assert_allclose(pulls.std(axis=0), 1.2, rtol=0.02)
    np.testing.assert_allclose(pulls.mean(axis=0), 0.0, atol=0.03)
    r = extinction_coefficients(tuple("ugrizy"))
    # LSST R_b for a G23 / F99-like Milky Way law: u ~4.7, g ~3.7, r ~2.7, i ~2.0, z ~1.6, y ~1.3
    np.testing.assert_allclose(r, [4.7, 3.66, 2.66, 2.0, 1.6, 1.29], atol=0.15)
    ebv = np.full(3, 0.1)
    reddened, rerr = dm.observe(true[:3], np.random.default_rng(5), 10.0, ebv=ebv)
    back, _ = dm.deredden(true[:3] * 10 ** (-0.4 * 0.1 * r), rerr, ebv)
    np.testing.assert_allclose(back, true[:3], rtol=1e-10)
