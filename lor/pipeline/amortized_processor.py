"""The processor for runs whose estimator is an amortized network (family ``npe_mlp``).

Built once per worker process from the run's pinned versions: the estimator and emulator
artifacts are loaded from their recorded locations only after their sha256 verifies, and the
calibration version's per-tract terms are read once. Objects of a tract the calibration does
not cover are processed uncalibrated and flagged. With ``mcmc_fallback: true`` in the run
config, objects flagged out of distribution, at a prior edge or poorly fit are redone by MCMC
under the run's prior and stored with method ``mcmc`` and the FALLBACK flag.

The loading helpers (:func:`load_run_models`, :func:`load_prior`, :func:`calibration_arrays`)
are shared with the reprocess processor (:mod:`lor.pipeline.reprocess_processor`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import Connection, select

from lor.db.calibration_store import survey_terms, terms_by_tract
from lor.db.model_store import model_version
from lor.db.models import PriorVersion
from lor.db.run_store import Run
from lor.emulators.registry import load_emulator
from lor.errors import ConfigError
from lor.inference.amortized import PhotometryPosteriors
from lor.inference.flags import Flag
from lor.inference.model_error import DEFAULT_FLOOR_MAG, ModelError
from lor.inference.registry import load_estimator
from lor.pipeline.processing import NoProcessorError, ObjectBatch, PosteriorBatch
from lor.seeds import object_keys

if TYPE_CHECKING:
    from lor.inference.estimator import AmortizedEstimator
    from lor.inference.prior import PopulationPrior

#: ``{tract: (zeropoint offsets (B,), noise scales (B,))}`` of one calibration version.
CalibrationTerms = dict[int, tuple[np.ndarray, np.ndarray]]


class AmortizedProcessor:
    """Infers one run's posteriors. Every random draw of an object is keyed by the run id
    and the object's id (:func:`lor.seeds.object_keys`), so what is stored for an object
    does not depend on the batch it was processed in."""

    def __init__(
        self,
        engine_posteriors: PhotometryPosteriors,
        calibration: CalibrationTerms | None,
        sed_offset: np.ndarray | None = None,
        run_id: int = 0,
    ) -> None:
        self.posteriors = engine_posteriors
        self.calibration = calibration
        self.sed_offset = sed_offset
        self.run_id = run_id
        self.rep = engine_posteriors.rep

    def process(self, batch: ObjectBatch) -> PosteriorBatch:
        n, b = batch.flux.shape
        zp = scale = None
        extra = np.zeros(n, np.int32)
        if self.calibration is not None:
            zp, scale, covered = calibration_arrays(
                self.calibration, batch.tract_id, b, self.sed_offset
            )
            extra[~covered] |= Flag.UNCALIBRATED_TRACT
        keys = object_keys(self.run_id, batch.object_id)
        result = self.posteriors.infer(
            batch.flux, batch.flux_err, batch.missing_mask, batch.ebv, zp, scale, seed=keys
        )
        return PosteriorBatch(
            params=result.params,
            summaries=result.summaries,
            ood_flags=(result.flags | extra).astype(np.int32),
            method=result.method,
            representation_name=self.rep.name,
            representation_version=self.rep.version,
        )


def amortized_processor(conn: Connection, run: Run) -> AmortizedProcessor:
    """Processor factory registered for the ``npe_mlp`` estimator family (reads through
    ``conn``; see :data:`lor.pipeline.processing.ProcessorFactory`)."""
    estimator, emulator = load_run_models(conn, run)
    prior = load_prior(conn, run.prior_version_id) if run.config.get("mcmc_fallback") else None
    calibration = run_calibration(conn, run.calibration_version_id, estimator.band_names)
    model_error, sed_offset = run_model_error(conn, run.calibration_version_id, emulator)
    posteriors = PhotometryPosteriors(
        estimator, emulator, fallback_prior=prior, model_error=model_error
    )
    posteriors.warm_up()
    return AmortizedProcessor(posteriors, calibration, sed_offset, run.id)


def load_run_models(conn: Connection, run: Run) -> tuple[AmortizedEstimator, Any]:
    """The run's estimator and emulator, each loaded only after its artifact's sha256 verifies.

    Both are required: the estimator makes posteriors, the emulator checks their fit.
    """
    if run.estimator_version_id is None:
        raise NoProcessorError(f"run {run.name} (id {run.id}) pins no estimator version")
    est_row = model_version(conn, run.estimator_version_id)
    estimator = load_estimator(Path(est_row.artifact_uri), est_row.artifact_sha256)
    if run.emulator_version_id is None:
        raise NoProcessorError(f"run {run.name} pins no emulator: the OOD fit check needs one")
    emu_row = model_version(conn, run.emulator_version_id)
    emulator = load_emulator(Path(emu_row.artifact_uri), emu_row.artifact_sha256)
    return estimator, emulator


def load_prior(conn: Connection, prior_version_id: int | None) -> PopulationPrior:
    """The population prior of a stored version -- its family, version, hyperparameters,
    selection and box (kept in the provenance) -- or the interim prior when none is pinned."""
    from lor.inference.prior import PopulationPrior
    from lor.inference.prior_registry import prior_from_record

    if prior_version_id is None:
        return PopulationPrior()
    columns = (PriorVersion.family, PriorVersion.family_version, PriorVersion.hyperparameters,
               PriorVersion.selection, PriorVersion.provenance)  # fmt: skip
    row = conn.execute(select(*columns).where(PriorVersion.id == prior_version_id)).one()
    return prior_from_record({
        "family": row.family, "family_version": row.family_version,
        "hyperparameters": row.hyperparameters, "selection": row.selection,
        "box": (row.provenance or {}).get("box"),
    })  # fmt: skip


def fitted_uncertainty(
    conn: Connection, prior_version_id: int | None
) -> tuple[list[str], np.ndarray]:
    """The free hyperparameters of a prior version fitted by ``lor calibrate`` and their
    covariance, as its provenance records them; refused for versions made any other way."""
    provenance = (
        conn.execute(
            select(PriorVersion.provenance).where(PriorVersion.id == prior_version_id)
        ).scalar_one_or_none()
        or {}
    )
    if "free" not in provenance or "covariance" not in provenance:
        raise ConfigError(
            f"prior version {prior_version_id} carries no fitted uncertainty (free "
            "hyperparameters and covariance from `lor calibrate`) to marginalize over"
        )
    return list(provenance["free"]), np.asarray(provenance["covariance"], np.float64)


def run_calibration(
    conn: Connection, calibration_version_id: int | None, bands: list[str]
) -> CalibrationTerms | None:
    """A calibration version's terms in ``bands`` order, read once; None when none is pinned."""
    if calibration_version_id is None:
        return None
    return terms_by_tract(conn, calibration_version_id, bands)


def run_model_error(
    conn: Connection, calibration_version_id: int | None, emulator: Any
) -> tuple[ModelError, np.ndarray | None]:
    """The model error a run's likelihood carries -- the emulator's measured error plus the
    calibration version's fitted floors (the default floor without them) -- and the
    version's survey-wide SED offsets (None without them)."""
    bands = list(emulator.band_names)
    stored = None if calibration_version_id is None else survey_terms(
        conn, calibration_version_id, bands
    )  # fmt: skip
    if stored is None:
        return ModelError.for_emulator(emulator), None
    sed, floor = stored  # a band the version has no floor for keeps the default
    return ModelError.for_emulator(
        emulator, np.where(np.isfinite(floor), floor, DEFAULT_FLOOR_MAG)
    ), sed


def calibration_arrays(
    terms: CalibrationTerms | None,
    tract_id: np.ndarray,
    n_bands: int,
    sed_offset: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-row zeropoint offsets and noise scales (N, B), and whether each row's tract is covered.

    Rows of a tract without terms (or with no calibration at all) get scale 1 and the
    survey-wide SED offsets (0 without them): an uncalibrated tract still has the model's
    band offsets, which are not calibration.
    """
    n = len(tract_id)
    zp, scale, covered = (
        np.zeros((n, n_bands)),
        np.ones((n, n_bands)),
        np.zeros(n, bool),
    )
    if sed_offset is not None:
        zp[:] = sed_offset
    if not terms:
        return zp, scale, covered
    for tract in np.unique(tract_id):
        found = terms.get(int(tract))
        if found is not None:
            rows = tract_id == tract
            zp[rows], scale[rows] = found
            covered[rows] = True
    return zp, scale, covered
