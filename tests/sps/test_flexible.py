"""The SPS departures of lor.sps.flexible and the misfit search of lor bench sps-flexibility."""

from __future__ import annotations

import numpy as np
import pytest

from lor.bench.sps_flexibility import SHAPE_NAMES, fit_misfit
from lor.sps.flexible import FlexibleSPSModel, SPSExtensions
from lor.sps.model import SPSModel
from lor.sps.parameters import PARAM_NAMES


@pytest.fixture(scope="module")
def sps_model() -> SPSModel:
    return SPSModel()


@pytest.fixture(scope="module")
def flexible(sps_model: SPSModel) -> FlexibleSPSModel:
    return FlexibleSPSModel(sps_model)


def _params(n: int, z: float, **values: float) -> np.ndarray:
    base = {"redshift": z, "log_mstar": 10.0, "log_zmet": -0.3, "log_tau": 0.3,
            "age_frac": 0.5, "av": 0.5, "dust_n": 0.7, "log_u": -2.5}  # fmt: skip
    base |= values
    return np.tile([base[k] for k in PARAM_NAMES], (n, 1))


def test_switched_off_departures_are_the_model(sps_model, flexible) -> None:  # type: ignore[no-untyped-def]
    p = _params(3, 0.8)
    off = SPSExtensions(
        burst_frac=np.zeros(3), log_burst_age_yr=np.full(3, 8.0),
        log_line_scale=np.zeros(3), bump_amplitude=np.zeros(3),
    )  # fmt: skip
    np.testing.assert_array_equal(flexible.fluxes_njy(p, off), sps_model.fluxes_njy(p))
    np.testing.assert_array_equal(flexible.fluxes_njy(p, SPSExtensions()), sps_model.fluxes_njy(p))


def test_each_departure_acts_where_its_physics_says(sps_model, flexible) -> None:  # type: ignore[no-untyped-def]
    bands = [name[-1] for name in sps_model.band_names]  # lsst2023-g -> g
    p = _params(1, 1.0)
    base = sps_model.fluxes_njy(p)[0]
    # A 2175 A bump at z = 1 sits at 4350 A observed: g dims, y does not.
    bump = flexible.fluxes_njy(p, SPSExtensions(bump_amplitude=np.array([2.0])))[0]
    dmag = -2.5 * np.log10(bump / base)
    assert dmag[bands.index("g")] > 0.1
    assert abs(dmag[bands.index("y")]) < 0.01
    # Lines only add light.
    lines = flexible.fluxes_njy(p, SPSExtensions(log_line_scale=np.array([0.5])))[0]
    assert np.all(lines >= base) and np.any(lines > 1.01 * base)
    # A young burst in an old galaxy makes it bluer (u - i decreases).
    old = _params(1, 0.5, age_frac=0.9, log_tau=-1.0)
    burst = SPSExtensions(burst_frac=np.array([0.05]), log_burst_age_yr=np.array([7.5]))
    f0, f1 = sps_model.fluxes_njy(old)[0], flexible.fluxes_njy(old, burst)[0]
    u, i = bands.index("u"), bands.index("i")
    assert -2.5 * np.log10((f1[u] / f1[i]) / (f0[u] / f0[i])) < -0.5


def test_misfit_search_finds_an_injected_burst(flexible) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(5)
    n = 12
    p = _params(n, 0.6, age_frac=0.8, log_tau=-0.5)
    p[:, 0] = rng.uniform(0.3, 1.5, n)
    ext = SPSExtensions(burst_frac=np.full(n, 0.1), log_burst_age_yr=np.full(n, 7.6))
    flux = flexible.fluxes_njy(p, ext)
    sigma = 0.01 * flux  # S/N 100 in every band
    truth = p[:, [PARAM_NAMES.index(k) for k in SHAPE_NAMES]]
    base_x, base_chi2 = fit_misfit(flexible, p[:, 0], flux, sigma, (), seed=1, start=truth)
    _, burst_chi2 = fit_misfit(flexible, p[:, 0], flux, sigma, ("burst",), seed=2, start=base_x)
    # Never worse (the search starts from the base fit), and the burst is found: measured
    # median chi2 falls by more than 10x here; 3x leaves room for the search's randomness.
    assert np.all(burst_chi2 <= base_chi2 + 1e-9)
    assert np.median(burst_chi2) < np.median(base_chi2) / 3.0
