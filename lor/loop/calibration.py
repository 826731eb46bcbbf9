"""``lor calibrate``: fit a run's prior hyperparameters (to its stored posteriors) and its
tracts' zeropoint offsets and noise scalings (to its objects' photometry, under the fitted
prior), and store them as a new prior version and a new calibration version (parents: the
run's), ready for ``lor reprocess``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import Engine

from lor.config import get_settings
from lor.db.registry import Registry
from lor.db.run_store import Run
from lor.errors import ConfigError
from lor.hierarchy.calibrate import (
    HyperparameterFit,
    check_free_hyperparameters,
    fit_hyperparameters,
    flexible_reference,
)
from lor.hierarchy.survey import DEVIATION_PRIOR_MAG, SurveyCalibration, fit_survey
from lor.hierarchy.zeropoints import cached_density
from lor.inference.amortized import PhotometryPosteriors
from lor.inference.data_model import DataModel
from lor.inference.flags import Flag
from lor.inference.model_error import ModelError
from lor.inference.prior import PopulationPrior
from lor.runs.lifecycle import get_run
from lor.version import code_version

METHOD = "hierarchical-importance-sampling"
ZEROPOINT_METHOD = "survey-population-density-marginal-likelihood"
CALIBRATION_EXCLUDES = Flag.BAD_INPUT | Flag.MISSING_BANDS | Flag.NO_POSTERIOR | Flag.INPUT_OOD
"""Objects the zeropoint fit leaves out: incomplete photometry, or photometry outside the
population the model was trained on (stars, AGN and artefacts in real catalogs), which no
offset should chase. POOR_FIT is kept: a miscalibrated band is what makes bright galaxies
fit poorly, so leaving them out would hide the very offsets being fitted."""


def calibrate_run(
    engine: Engine,
    run: int | str,
    free: list[str],
    name: str | None = None,
    tracts: list[int] | None = None,
    n_samples: int = 64,
    seed: int = 0,
    survey: SurveyCalibration | None = None,
) -> tuple[int, HyperparameterFit]:
    """Fit ``free`` hyperparameters to ``run``'s posteriors; store and return the prior version.

    With ``survey`` the posteriors are not the stored ones but the run's calibration
    photometry inferred afresh under that survey calibration (:func:`recalibrated_params`):
    posteriors of photometry whose SED misfit is still in it pull the hyperparameters
    towards whatever population hides the misfit (issue #12: ``smf_phi_evolution`` -0.28
    for a truth of 0 on a double power-law SFH catalog).
    """
    found = get_run(engine, run)
    registry = Registry(engine)
    with engine.connect() as conn:  # every check before the models load
        free, reference = flexible_reference(
            free, registry.priors.load(conn, found.prior_version_id)
        )
        check_free_hyperparameters(free, reference)
        stored = registry.posteriors.params(conn, found.id, tracts)
        if not len(stored):
            raise ConfigError(f"run {found.name} has no stored posteriors to calibrate on")
        estimator, emulator = registry.models.run_models(conn, found)
    if survey is None:
        posteriors, params, source = PhotometryPosteriors(estimator, emulator), stored, "stored"
    else:
        photometry = run_photometry(engine, found.id, list(emulator.band_names), tracts)
        posteriors = PhotometryPosteriors(
            estimator, emulator,
            model_error=ModelError.for_emulator(emulator, survey.floor_mag),
        )  # fmt: skip
        params = recalibrated_params(posteriors, photometry, survey)
        source = "recomputed under the first-pass survey calibration"
    fit = fit_hyperparameters(posteriors, params, free, reference, n_samples, seed=seed)
    record = fit.prior(reference).as_record()
    provenance = fit.as_provenance() | {
        "fitted_on_run": found.id, "tracts": tracts or "all", "code_version": code_version(),
        "posteriors": source,
    }  # fmt: skip
    with engine.begin() as conn:
        prior_id = registry.priors.register(
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
    with engine.connect() as conn:
        rows = Registry(engine).posteriors.photometry(conn, run_id, CALIBRATION_EXCLUDES, tracts)
    if not rows:
        return {}
    tract = np.array([r[0] for r in rows])
    flux = np.array([r[1] for r in rows], np.float64)
    err = np.array([r[2] for r in rows], np.float64)
    ebv = np.array([r[3] for r in rows], np.float64)
    flux, err = DataModel(bands=bands).deredden(flux, err, ebv)
    return {int(t): (flux[tract == t], err[tract == t]) for t in np.unique(tract)}


def recalibrated_params(
    posteriors: PhotometryPosteriors,
    photometry: dict[int, tuple[np.ndarray, np.ndarray]],
    survey: SurveyCalibration,
) -> np.ndarray:
    """Stored-form posteriors ``(N, P)`` of ``photometry`` (:func:`run_photometry`: dereddened,
    every band measured) under ``survey``'s tract zeropoints, noise scalings and floors (the
    floors through ``posteriors``' model error); tracts the fit left out are skipped."""
    terms = {f.tract_id: f for f in survey.tracts}
    out = []
    for tract, (flux, err) in sorted(photometry.items()):
        if tract not in terms:
            continue
        data = posteriors.prepare(
            flux, err,
            zeropoint_offset=np.broadcast_to(terms[tract].zeropoint_offset, flux.shape),
            noise_scale=np.broadcast_to(terms[tract].noise_scale, flux.shape),
        )  # fmt: skip
        rows = np.flatnonzero(data.usable_rows)
        if len(rows):
            out.append(posteriors.estimator.posterior_params(data.features(rows)))
    if not out:
        raise ConfigError("no calibrated tract has photometry to infer posteriors from")
    return np.concatenate(out).astype(np.float32)


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
    """Fit the survey calibration under ``prior`` (:func:`fit_survey_calibration`); store and
    return the calibration version (parent: the run's) and the fit."""
    found = get_run(engine, run)
    fit, provenance = fit_survey_calibration(
        engine, found, prior, tracts, reference_band, density_objects, density_components,
        min_objects, seed, deviation_prior_mag,
    )  # fmt: skip
    with engine.begin() as conn:
        version = Registry(engine).calibrations.create(
            conn, name or f"{found.name}-calibration",
            {f.tract_id: f.as_terms() for f in fit.tracts}, ZEROPOINT_METHOD, provenance,
            parent_id=found.calibration_version_id, survey_terms=fit.survey_terms(),
        )  # fmt: skip
    return version, fit


def fit_survey_calibration(
    engine: Engine,
    found: Run,
    prior: PopulationPrior,
    tracts: list[int] | None = None,
    reference_band: str | None = None,
    density_objects: int = 200_000,
    density_components: int = 96,
    min_objects: int = 500,
    seed: int = 0,
    deviation_prior_mag: float = DEVIATION_PRIOR_MAG,
) -> tuple[SurveyCalibration, dict[str, Any]]:
    """Fit the survey's SED offsets and model-error floors and each tract's zeropoint
    deviations and noise scalings under ``prior`` (:func:`lor.hierarchy.survey.fit_survey`);
    return the fit and the provenance a stored version carries.

    The reference band (default: the prior's selection band) keeps the offset of the run's
    calibration version (0 without one): galaxies measure colours, not the gray offset.
    Tracts with fewer than ``min_objects`` usable objects are left out of the fit (their
    deviations would be noise) and listed in the provenance; they get the survey terms.
    """
    registry = Registry(engine)
    with engine.connect() as conn:
        _, emulator = registry.models.run_models(conn, found)
        bands = list(emulator.band_names)
        parent = registry.calibrations.terms(conn, found.calibration_version_id, bands) or {}
    reference_band = reference_band or str(prior.selection["band"])
    if reference_band not in bands:  # before minutes of simulation, not after
        raise ConfigError(f"reference band {reference_band!r} is not one of the bands {bands}")
    photometry = run_photometry(engine, found.id, bands, tracts)
    usable = {t: v for t, v in photometry.items() if len(v[0]) >= min_objects}
    if not usable:
        raise ConfigError(
            f"run {found.name} has no tract with {min_objects} or more usable objects to calibrate"
        )
    density = cached_density(
        emulator, prior, get_settings().home / "cache" / "densities",
        n_objects=density_objects, n_components=density_components, seed=seed,
    )  # fmt: skip
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
    return fit, provenance


@dataclass
class Calibration:
    """What :func:`calibrate` stored: a prior version and/or a calibration version, and the
    fits behind them."""

    prior_version_id: int | None = None
    hyperparameters: HyperparameterFit | None = None
    calibration_version_id: int | None = None
    survey: SurveyCalibration | None = None

    @property
    def at_bound(self) -> list[str]:
        """Fitted values that ended on a search bound: the model cannot describe them, or they
        absorb misfit (recorded on the stored versions too)."""
        fits = (self.hyperparameters, self.survey)
        return [name for fit in fits if fit is not None for name in fit.at_bound]

    def as_dict(self) -> dict[str, Any]:
        """The fits as JSON-ready values (what ``lor calibrate`` prints)."""
        out: dict[str, Any] = {}
        if self.hyperparameters is not None:
            fit = self.hyperparameters
            out |= {"prior_version_id": self.prior_version_id,
                    "hyperparameters": fit.hyperparameters, **fit.as_provenance()}  # fmt: skip
        if self.survey is not None:
            fits = self.survey
            out["calibration_version_id"] = self.calibration_version_id
            out["survey"] = {"bands": fits.bands, "sed_offset": fits.sed_offset.tolist(),
                             "sed_offset_err": fits.sed_offset_err.tolist(),
                             "error_floor": fits.floor_mag.tolist(),
                             "error_floor_err": fits.floor_err.tolist()}  # fmt: skip
            out["tracts"] = {f.tract_id: {"zeropoint_offset": f.zeropoint_offset.tolist(),
                                          "zeropoint_err": f.zeropoint_err.tolist(),
                                          "noise_scale": f.noise_scale.tolist(),
                                          "noise_scale_err": f.noise_scale_err.tolist(),
                                          "n_objects": f.n_objects} for f in fits.tracts}  # fmt: skip
            out["calibration_at_bound"] = fits.at_bound
        return out


def calibrate(
    engine: Engine,
    run: int | str,
    free: Sequence[str] = (),
    zeropoints: bool = False,
    name: str | None = None,
    tracts: list[int] | None = None,
    n_samples: int = 64,
    reference_band: str | None = None,
    density_objects: int = 200_000,
    density_components: int = 96,
    min_objects: int = 500,
) -> Calibration:
    """``lor calibrate``: fit ``free`` hyperparameters (:func:`calibrate_run`) and/or, with
    ``zeropoints``, the survey and tract calibration (:func:`calibrate_zeropoints`); every
    input is checked before any model loads.

    With both, the SED terms come first: a survey calibration under the run's prior, the
    hyperparameters on posteriors recomputed under it, then the stored survey calibration
    refitted under the fitted prior. Hyperparameters fitted on the Step 1 posteriors absorb
    SED misfit (measured on the misspecification suite: ``smf_phi_evolution`` -0.28 and
    -0.09 on two catalogs whose population is the prior's own).
    """
    if not free and not zeropoints:
        raise ConfigError("nothing to fit: give free hyperparameters and/or zeropoints")
    found = get_run(engine, run)
    prior = _stored_prior(engine, found)
    if free:
        free, prior = flexible_reference(free, prior)
        check_free_hyperparameters(free, prior)
    result = Calibration()
    if free:
        first_pass = None
        if zeropoints:
            first_pass, _ = fit_survey_calibration(
                engine, found, prior, tracts, reference_band, density_objects,
                density_components, min_objects,
            )  # fmt: skip
        result.prior_version_id, result.hyperparameters = calibrate_run(
            engine, found.id, list(free), name, tracts, n_samples, survey=first_pass
        )
        prior = result.hyperparameters.prior(prior)
    if zeropoints:
        result.calibration_version_id, result.survey = calibrate_zeropoints(
            engine, found.id, prior, name, tracts, reference_band, density_objects,
            density_components, min_objects,
        )  # fmt: skip
    return result


def _stored_prior(engine: Engine, run: Run) -> PopulationPrior:
    with engine.connect() as conn:
        return Registry(engine).priors.load(conn, run.prior_version_id)
