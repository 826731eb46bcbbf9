"""Zeropoint offsets and noise scalings from the galaxy population: recovery on a small
simulated survey with injected offsets, and `lor calibrate --zeropoints` storing a
calibration version that `lor reprocess` picks up."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sqlalchemy import Engine, select

from lor.errors import ConfigError
from lor.hierarchy.calibrate import VALIDATION_SHIFT
from lor.hierarchy.zeropoints import PopulationDensity, fit_tract
from lor.inference.prior import INTERIM_HYPERPARAMETERS, PopulationPrior

BANDS = ["u", "g", "r", "i", "z", "y"]
TRUTH = PopulationPrior(INTERIM_HYPERPARAMETERS | VALIDATION_SHIFT)


@pytest.fixture(scope="module")
def emulator():  # type: ignore[no-untyped-def]
    from lor.emulators.registry import load_shipped_emulator

    return load_shipped_emulator()


@pytest.fixture(scope="module")
def density(emulator) -> PopulationDensity:  # type: ignore[no-untyped-def]
    """A small population density (the bench and `lor calibrate` use 200k objects, 96
    components): enough for offsets of a few hundredths at these sample sizes."""
    return PopulationDensity.simulate(
        emulator, TRUTH, n_objects=40_000, n_components=32, seed=3, n_null=6000
    )


def test_injected_offsets_are_recovered_within_their_errors(emulator, density) -> None:  # type: ignore[no-untyped-def]
    """Two tracts of 3,000 objects with offsets up to 0.03 mag and noise 0-20% above the
    reported errors: every fitted offset lands within 3.5 sigma of the truth, the errors
    are tight enough for that to mean something, and the reference band keeps its value."""
    from lor.inference.simulate import simulate_catalog

    rng = np.random.default_rng(7)
    for tract in (1, 2):
        zp_true, s_true = rng.uniform(-0.03, 0.03, 6), rng.uniform(1.0, 1.2, 6)
        cat = simulate_catalog(3000, emulator, TRUTH, seed=40 + tract,
                               zeropoint_offset=zp_true, noise_scale=s_true)  # fmt: skip
        fit = fit_tract(density, tract, BANDS, cat.flux, cat.flux_err, "i", float(zp_true[3]))
        assert fit.converged and fit.n_objects == 3000
        assert fit.zeropoint_offset[3] == zp_true[3] and fit.zeropoint_err[3] == 0.0
        free = [0, 1, 2, 4, 5]
        pulls = (fit.zeropoint_offset - zp_true)[free] / fit.zeropoint_err[free]
        # measured |pull| <= 1.3 over both tracts' ten offsets, errors 0.0017-0.0089 mag:
        # 3.5 sigma is a statistical bound (not a margin on these draws), 0.012 mag ~35% above
        assert np.all(np.abs(pulls) < 3.5), (fit.zeropoint_offset, zp_true, fit.zeropoint_err)
        assert np.all(fit.zeropoint_err[free] < 0.012)
        # the data moved the offsets: not left at zero where the truth is far from it
        far = np.abs(zp_true[free]) > 4 * fit.zeropoint_err[free]
        assert np.all(np.abs(fit.zeropoint_offset[free][far]) > 0.5 * np.abs(zp_true[free][far]))
        scale_pulls = (fit.noise_scale - s_true) / fit.noise_scale_err
        assert np.all(np.abs(scale_pulls) < 4), (fit.noise_scale, s_true, fit.noise_scale_err)


def test_unusable_rows_are_left_out_and_named(emulator, density) -> None:  # type: ignore[no-untyped-def]
    from lor.inference.simulate import simulate_catalog

    cat = simulate_catalog(800, emulator, TRUTH, seed=5)
    flux, err = cat.flux.copy(), cat.flux_err.copy()
    flux[:10, 0] = np.nan
    err[10:20, 2] = -1.0
    fit = fit_tract(density, 9, BANDS, flux, err, fit_noise=False)
    assert fit.n_objects == 780 and fit.details["objects_dropped"] == 20
    assert np.all(fit.noise_scale == 1.0) and np.all(fit.noise_scale_err == 0.0)
    with pytest.raises(ConfigError, match="reference band"):
        fit_tract(density, 9, BANDS, flux, err, reference_band="w")
    with pytest.raises(ConfigError, match="at least 60"):
        fit_tract(density, 9, BANDS, flux[:30], err[:30])


def test_calibrate_zeropoints_command_stores_a_calibration_version(
    engine: Engine, example_run
) -> None:  # type: ignore[no-untyped-def]
    from click.testing import CliRunner

    from lor.cli.main import cli
    from lor.db.calibration_store import survey_terms, terms_by_tract
    from lor.db.models import CalibrationVersion, PriorVersion
    from lor.loop.reprocess import create_reprocess_run

    run, _ = example_run
    free = "smf_phi_evolution"  # the default of the shipped (published-relations) prior
    args = ["calibrate", "base", "--free", free, "--zeropoints", "--name", "zp-cal",
            "--min-objects", "100", "--density-objects", "20000", "--density-components", "16"]  # fmt: skip
    out = CliRunner().invoke(cli, args)
    assert out.exit_code == 0, out.output
    answer = json.loads(out.output.strip().splitlines()[-1])
    with engine.connect() as conn:
        stored = conn.execute(
            select(CalibrationVersion).where(CalibrationVersion.name == "zp-cal")
        ).one()
        terms = terms_by_tract(conn, stored.id, BANDS)
        prior = conn.execute(select(PriorVersion).where(PriorVersion.name == "zp-cal")).one()
    # SED terms first: the hyperparameter was fitted on posteriors recomputed under a
    # first-pass survey calibration, and the stored calibration under the fitted prior
    assert prior.id == answer["prior_version_id"]
    assert prior.provenance["posteriors"] == "recomputed under the first-pass survey calibration"
    assert stored.provenance["prior"]["hyperparameters"][free] == pytest.approx(
        prior.hyperparameters[free]
    )
    assert stored.id == answer["calibration_version_id"]
    assert stored.method == "survey-population-density-marginal-likelihood"
    assert stored.provenance["fitted_on_run"] == run.id
    assert stored.provenance["reference_band"] == "i"
    assert len(terms) == 4  # the example catalog's four tracts
    # The example catalog has no offsets: measured |zp| up to 0.035 mag (u and y, errors
    # 0.008-0.016 mag) on its four tracts, from the model's misfit. 0.06 leaves ~1.5 sd of
    # the u-band error above that; a fit that wandered off would not stay under it.
    for tract, (zp, scale) in terms.items():
        assert zp[3] == 0.0 and np.all(np.abs(zp) < 0.06) and np.all(scale > 0), zp
        assert answer["tracts"][str(tract)]["n_objects"] >= 100
    with engine.connect() as conn:
        survey = survey_terms(conn, stored.id, BANDS)
    assert survey is not None and survey[0][3] == 0.0 and np.all(survey[1] >= 0)
    assert answer["survey"]["error_floor"] == pytest.approx(survey[1].tolist(), abs=1e-6)
    assert "at_bound" in stored.provenance
    queued = create_reprocess_run(engine, run.id, calibration_version="zp-cal")
    assert sorted(queued.run.config["reprocess"]["affected_tracts"]) == sorted(terms)


def test_survey_fit_recovers_an_injected_model_error_floor(emulator, density) -> None:  # type: ignore[no-untyped-def]
    """Two tracts of 4,000 objects whose fluxes scatter by an unreported floor of 0-0.08 mag
    and share survey-wide band offsets: the joint fit recovers each floor within 4 sigma and
    0.01 mag, and the survey offsets within 0.025 mag (issue #12)."""
    from lor.hierarchy.survey import fit_survey
    from lor.inference.simulate import simulate_catalog

    floor = np.array([0.08, 0.04, 0.0, 0.02, 0.05, 0.06])
    sed = np.array([0.04, -0.03, 0.02, 0.0, -0.02, 0.03])
    photometry = {}
    for tract in (1, 2):
        cat = simulate_catalog(4000, emulator, TRUTH, seed=40 + tract, zeropoint_offset=sed,
                               hidden_floor_mag=floor)  # fmt: skip
        photometry[tract] = (cat.flux, cat.flux_err)
    fit = fit_survey(density, photometry, BANDS, np.zeros(6), "i")
    err = np.maximum(fit.floor_err, 1e-3)
    assert np.all(np.abs(fit.floor_mag - floor) < np.minimum(4 * err, 0.01) + 0.003), (
        fit.floor_mag, fit.floor_err)  # fmt: skip
    # measured max |offset - truth| 0.0039, 0.0119 and 0.0194 mag (u) on three draws of these
    # surveys (the v1 prior's draws depended on test order until its seeds became stateless;
    # this draw is now fixed at 0.0194): 0.025 is ~30% above the worst seen
    assert np.all(np.abs(fit.sed_offset - sed) < 0.025), fit.sed_offset
    assert fit.sed_offset[3] == 0.0 and fit.at_bound == []
    terms = fit.survey_terms()
    assert terms["i"][1] is None and terms["u"][2] == pytest.approx(fit.floor_mag[0])


def test_survey_fit_reports_an_offset_on_its_bound(emulator, density) -> None:  # type: ignore[no-untyped-def]
    """A u band 0.5 mag off (beyond the +-0.3 mag a calibration may move) ends on the bound,
    and the fit says so instead of using it silently."""
    from lor.hierarchy.survey import fit_survey
    from lor.inference.simulate import simulate_catalog

    sed = np.array([0.5, 0.0, 0.0, 0.0, 0.0, 0.0])
    cat = simulate_catalog(2000, emulator, TRUTH, seed=50, zeropoint_offset=sed)
    fit = fit_survey(density, {1: (cat.flux, cat.flux_err)}, BANDS, np.zeros(6), "i")
    assert "sed_offset_u" in fit.at_bound


def test_recalibrated_params_are_the_processing_path_under_the_same_terms(emulator) -> None:  # type: ignore[no-untyped-def]
    """Step 2's posteriors under a first-pass calibration are what a run processed under that
    calibration would store: same zeropoints, noise scalings and floors, same network."""
    from lor.hierarchy.survey import SurveyCalibration
    from lor.hierarchy.zeropoints import TractCalibration
    from lor.inference.amortized import PhotometryPosteriors
    from lor.inference.model_error import ModelError
    from lor.inference.registry import load_shipped_estimator
    from lor.inference.simulate import simulate_catalog
    from lor.loop.calibration import recalibrated_params

    cat = simulate_catalog(300, emulator, TRUTH, seed=11)
    floor = np.array([0.05, 0.03, 0.0, 0.01, 0.02, 0.04])
    posteriors = PhotometryPosteriors(
        load_shipped_estimator(), emulator, model_error=ModelError.for_emulator(emulator, floor)
    )
    zp = np.array([0.1, -0.05, 0.02, 0.0, 0.03, -0.08])
    scale = np.array([1.3, 1.0, 0.9, 1.0, 1.1, 1.2])
    tracts = [TractCalibration(t, BANDS, zp + 0.01 * t, np.zeros(6), scale, np.zeros(6),
                               np.zeros((0, 0)), "i", 150, True) for t in (1, 2)]  # fmt: skip
    survey = SurveyCalibration(BANDS, "i", zp, np.zeros(6), floor, np.zeros(6), tracts, 0.01,
                               [], True)  # fmt: skip
    halves = {1: (cat.flux[:150], cat.flux_err[:150]), 2: (cat.flux[150:], cat.flux_err[150:]),
              3: (cat.flux[:10], cat.flux_err[:10])}  # fmt: skip  # tract 3: not fitted, skipped
    got = recalibrated_params(posteriors, halves, survey)
    expected = [
        posteriors.infer(f, e, zeropoint_offset=np.broadcast_to(zp + 0.01 * t, f.shape),
                         noise_scale=np.broadcast_to(scale, f.shape)).params
        for t, (f, e) in ((1, halves[1]), (2, halves[2]))
    ]  # fmt: skip
    np.testing.assert_allclose(got, np.concatenate(expected), rtol=1e-5, atol=1e-6)
    unchanged = PhotometryPosteriors(load_shipped_estimator(), emulator)
    assert not np.allclose(got[:150], unchanged.infer(*halves[1]).params, atol=1e-3)


def test_population_density_cache_round_trips_and_refuses_damage(emulator, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Step 2's densities are kept by their inputs: the second call reads the first's mixture
    and null-tract bias exactly; a damaged file, or another prior, is recomputed, not used."""
    from lor.hierarchy.zeropoints import cached_density

    sizes = {"n_objects": 3000, "n_components": 4, "n_null": 1000}
    first = cached_density(emulator, TRUTH, tmp_path, **sizes)
    (entry,) = list(tmp_path.iterdir())
    again = cached_density(emulator, TRUTH, tmp_path, **sizes)
    for name in ("weights", "means", "covariances", "softening"):
        np.testing.assert_array_equal(getattr(again, name), getattr(first, name))
    assert again.bias is not None and first.bias is not None
    np.testing.assert_array_equal(again.bias.noise_scale, first.bias.noise_scale)
    assert again.details == first.details
    weights = entry / "weights.npz"
    weights.write_bytes(weights.read_bytes()[:-10] + b"0123456789")
    redone = cached_density(
        emulator, TRUTH, tmp_path, **sizes
    )  # recomputed: same inputs, same seed
    np.testing.assert_allclose(redone.means, first.means)
    cached_density(emulator, PopulationPrior(), tmp_path, **sizes)
    assert len(list(tmp_path.iterdir())) == 2
