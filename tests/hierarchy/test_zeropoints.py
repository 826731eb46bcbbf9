"""Zeropoint offsets and noise scalings from the galaxy population: recovery on a small
simulated survey with injected offsets, and `lor calibrate --zeropoints` storing a
calibration version that `lor reprocess` picks up."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sqlalchemy import Engine, select

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
    with pytest.raises(ValueError, match="reference band"):
        fit_tract(density, 9, BANDS, flux, err, reference_band="w")
    with pytest.raises(ValueError, match="at least 60"):
        fit_tract(density, 9, BANDS, flux[:30], err[:30])


def test_calibrate_zeropoints_command_stores_a_calibration_version(
    engine: Engine, example_run
) -> None:  # type: ignore[no-untyped-def]
    from click.testing import CliRunner

    from lor.cli.main import cli
    from lor.db.calibration_store import terms_by_tract
    from lor.db.models import CalibrationVersion
    from lor.pipeline.reprocess import create_reprocess_run

    run, _ = example_run
    args = ["calibrate", "base", "--zeropoints", "--name", "zp-cal", "--min-objects", "100",
            "--density-objects", "20000", "--density-components", "16"]  # fmt: skip
    out = CliRunner().invoke(cli, args)
    assert out.exit_code == 0, out.output
    answer = json.loads(out.output.strip().splitlines()[-1])
    with engine.connect() as conn:
        stored = conn.execute(
            select(CalibrationVersion).where(CalibrationVersion.name == "zp-cal")
        ).one()
        terms = terms_by_tract(conn, stored.id, BANDS)
    assert stored.id == answer["calibration_version_id"]
    assert stored.method == "population-density-marginal-likelihood"
    assert stored.provenance["fitted_on_run"] == run.id
    assert stored.provenance["reference_band"] == "i"
    assert len(terms) == 4  # the example catalog's four tracts
    for tract, (zp, scale) in terms.items():
        assert zp[3] == 0.0 and np.all(np.abs(zp) < 0.3) and np.all(scale > 0)
        assert answer["tracts"][str(tract)]["n_objects"] >= 100
    queued = create_reprocess_run(engine, run.id, calibration_version="zp-cal")
    assert sorted(queued.run.config["reprocess"]["affected_tracts"]) == sorted(terms)
