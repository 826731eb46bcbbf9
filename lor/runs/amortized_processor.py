"""The processor for runs whose estimator is an amortized network (family ``npe_mlp``).

Built once per worker process from the run's pinned versions: the estimator and emulator
artifacts are loaded from their recorded locations only after their sha256 verifies, and the
calibration version's per-tract terms are read once. Objects of a tract the calibration does
not cover are processed uncalibrated and flagged. With ``mcmc_fallback: true`` in the run
config, objects flagged out of distribution, at a prior edge or poorly fit are redone by MCMC
under the run's prior and stored with method ``mcmc`` and the FALLBACK flag.

Models, priors and calibration terms come from the database façade
(:class:`lor.db.registry.Registry`); :func:`calibration_arrays` is shared with the reprocess
processor (:mod:`lor.loop.reprocess_processor`).
"""

from __future__ import annotations

import numpy as np
from sqlalchemy import Connection

from lor.db.calibration_store import CalibrationTerms
from lor.db.registry import Registry
from lor.db.run_store import Run
from lor.inference.amortized import PhotometryPosteriors
from lor.inference.flags import Flag
from lor.runs.processing import ObjectBatch, PosteriorBatch
from lor.seeds import object_keys


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
    ``conn``; see :data:`lor.runs.processing.ProcessorFactory`)."""
    registry = Registry(conn.engine)
    estimator, emulator = registry.models.run_models(conn, run)
    prior = (
        registry.priors.load(conn, run.prior_version_id)
        if run.config.get("mcmc_fallback")
        else None
    )
    calibration = registry.calibrations.terms(
        conn, run.calibration_version_id, estimator.band_names
    )
    model_error, sed_offset = registry.calibrations.model_error(
        conn, run.calibration_version_id, emulator
    )
    posteriors = PhotometryPosteriors(
        estimator, emulator, fallback_prior=prior, model_error=model_error
    )
    posteriors.warm_up()
    return AmortizedProcessor(posteriors, calibration, sed_offset, run.id)


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
    zp, scale, covered = np.zeros((n, n_bands)), np.ones((n, n_bands)), np.zeros(n, bool)
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
