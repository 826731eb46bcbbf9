"""``lor calibrate``: fit a run's prior hyperparameters (to its stored posteriors) and its
tracts' zeropoint offsets and noise scalings (to its objects' photometry, under the fitted
prior), and store them as a new prior version and a new calibration version (parents: the
run's), ready for ``lor reprocess``."""

from __future__ import annotations

from typing import Any

import numpy as np
from sqlalchemy import Engine, text

from lor.db.calibration_store import create_calibration_version, terms_by_tract
from lor.db.model_store import register_prior_version
from lor.errors import ConfigError
from lor.hierarchy.calibrate import HyperparameterFit, fit_hyperparameters
from lor.hierarchy.survey import DEVIATION_PRIOR_MAG, SurveyCalibration, fit_survey
from lor.hierarchy.zeropoints import PopulationDensity
from lor.inference.data_model import DataModel
from lor.inference.flags import Flag
from lor.inference.model_error import ModelError
from lor.inference.prior import PopulationPrior
from lor.pipeline.amortized_processor import load_prior, load_run_models
from lor.pipeline.runs import get_run
from lor.version import code_version

METHOD = "hierarchical-importance-sampling"
ZEROPOINT_METHOD = "survey-population-density-marginal-likelihood"
CALIBRATION_EXCLUDES = Flag.BAD_INPUT | Flag.MISSING_BANDS | Flag.NO_POSTERIOR | Flag.INPUT_OOD
"""Objects the zeropoint fit leaves out: incomplete photometry, or photometry outside the
population the model was trained on (stars, AGN and artefacts in real catalogs), which no
offset should chase. POOR_FIT is kept: a miscalibrated band is what makes bright galaxies
fit poorly, so leaving them out would hide the very offsets being fitted."""


def stored_params(engine: Engine, run_id: int, tracts: list[int] | None = None) -> np.ndarray:
    """The run's stored posterior parameters (rows with params), optionally of some tracts."""
    sql = "SELECT params FROM lor.run_posteriors(:r) WHERE params IS NOT NULL"
    args: dict[str, Any] = {"r": run_id}
    if tracts:
        sql += " AND tract_id = ANY(:t)"
        args["t"] = list(tracts)
    with engine.connect() as conn:
        rows = conn.execute(text(sql), args).scalars().all()
    return np.asarray(rows, np.float32).reshape(len(rows), -1)


def calibrate_run(
    engine: Engine,
    run: int | str,
    free: list[str],
    name: str | None = None,
    tracts: list[int] | None = None,
    n_samples: int = 64,
    seed: int = 0,
) -> tuple[int, HyperparameterFit]:
    """Fit ``free`` hyperparameters to ``run``'s posteriors; store and return the prior version."""
    from lor.inference.amortized import PhotometryPosteriors

    found = get_run(engine, run)
    with engine.connect() as conn:
        estimator, emulator = load_run_models(conn, found)
        reference = load_prior(conn, found.prior_version_id)
    params = stored_params(engine, found.id, tracts)
    if not len(params):
        raise ValueError(f"run {found.name} has no stored posteriors to calibrate on")
    fit = fit_hyperparameters(
        PhotometryPosteriors(estimator, emulator), params, free, reference, n_samples, seed=seed
    )
    record = fit.prior(reference).as_record()
    provenance = fit.as_provenance() | {
        "fitted_on_run": found.id, "tracts": tracts or "all", "code_version": code_version(),
    }  # fmt: skip
    with engine.begin() as conn:
        prior_id = register_prior_version(
            conn, name or f"{found.name}-calibrated-prior", record, METHOD, provenance,
            parent_id=found.prior_version_id,
        )  # fmt: skip
    return prior_id, fit


def run_photometry(
    engine: Engine, run_id: int, bands: list[str], tracts: list[int] | None = None
) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """``{tract: (flux, flux_err)}`` (N, B) nJy of the run's objects usable for calibration:
    every band measured, Galactic extinction undone, not flagged as the model's outliers
    (:data:`CALIBRATION_EXCLUDES`)."""
    sql = (
        "SELECT p.tract_id, o.flux, o.flux_err, coalesce(o.ebv, 'NaN') "
        "FROM lor.run_posteriors(:r) p JOIN lor.objects o "
        "ON o.tract_id = p.tract_id AND o.object_id = p.object_id "
        "WHERE p.ood_flags & :excluded = 0 AND o.missing_mask = 0"
    )
    args: dict[str, Any] = {"r": run_id, "excluded": int(CALIBRATION_EXCLUDES)}
    if tracts:
        sql += " AND p.tract_id = ANY(:t)"
        args["t"] = list(tracts)
    with engine.connect() as conn:
        rows = conn.execute(text(sql), args).all()
    if not rows:
        return {}
    tract = np.array([r[0] for r in rows])
    flux = np.array([r[1] for r in rows], np.float64)
    err = np.array([r[2] for r in rows], np.float64)
    ebv = np.array([r[3] for r in rows], np.float64)
    flux, err = DataModel(bands=bands).deredden(flux, err, ebv)
    return {int(t): (flux[tract == t], err[tract == t]) for t in np.unique(tract)}


def calibrate_zeropoints(
    engine: Engine,
    run: int | str,
    prior: PopulationPrior,
    name: str | None = None,
    tracts: list[int] | None = None,
    reference_band: str | None = None,
    density_objects: int = 200_000,
    density_components: int = 96,
    min_objects: int = 500,
    seed: int = 0,
    deviation_prior_mag: float = DEVIATION_PRIOR_MAG,
) -> tuple[int, SurveyCalibration]:
    """Fit the survey's SED offsets and model-error floors and each tract's zeropoint
    deviations and noise scalings under ``prior`` (:func:`lor.hierarchy.survey.fit_survey`);
    store and return the calibration version (parent: the run's) and the fit.

    The reference band (default: the prior's selection band) keeps the offset of the run's
    calibration version (0 without one): galaxies measure colours, not the gray offset.
    Tracts with fewer than ``min_objects`` usable objects are left out of the fit (their
    deviations would be noise) and listed in the provenance; they get the survey terms.
    """
    found = get_run(engine, run)
    with engine.connect() as conn:
        _, emulator = load_run_models(conn, found)
        bands = list(emulator.band_names)
        parent = (
            terms_by_tract(conn, found.calibration_version_id, bands)
            if found.calibration_version_id is not None else {}
        )  # fmt: skip
    reference_band = reference_band or str(prior.selection["band"])
    if reference_band not in bands:  # before minutes of simulation, not after
        raise ConfigError(f"reference band {reference_band!r} is not one of the bands {bands}")
    photometry = run_photometry(engine, found.id, bands, tracts)
    usable = {t: v for t, v in photometry.items() if len(v[0]) >= min_objects}
    if not usable:
        raise ConfigError(
            f"run {found.name} has no tract with {min_objects} or more usable objects to calibrate"
        )
    density = PopulationDensity.simulate(
        emulator, prior, n_objects=density_objects, n_components=density_components, seed=seed
    )
    ref = bands.index(reference_band)
    fit = fit_survey(
        density, usable, bands, ModelError.for_emulator(emulator).emulator_mag, reference_band,
        {t: float(parent[t][0][ref]) for t in usable if t in parent},
        deviation_prior_mag=deviation_prior_mag,
    )  # fmt: skip
    provenance = {
        "fitted_on_run": found.id, "prior": prior.as_record(), "reference_band": reference_band,
        "density": density.details, "code_version": code_version(),
        "deviation_prior_mag": deviation_prior_mag, "at_bound": fit.at_bound,
        "converged": fit.converged, **fit.details,
        "tracts": {str(f.tract_id): {"n_objects": f.n_objects, **f.details} for f in fit.tracts},
        "skipped_tracts": {str(t): len(v[0]) for t, v in photometry.items() if t not in usable},
    }  # fmt: skip
    with engine.begin() as conn:
        version = create_calibration_version(
            conn, name or f"{found.name}-calibration",
            {f.tract_id: f.as_terms() for f in fit.tracts}, ZEROPOINT_METHOD, provenance,
            parent_id=found.calibration_version_id, survey_terms=fit.survey_terms(),
        )  # fmt: skip
    return version, fit
