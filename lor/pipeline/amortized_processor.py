"""The processor for runs whose estimator is an amortized network (family ``npe_mlp``).

Built once per worker process from the run's pinned versions: the estimator and emulator
artifacts are loaded from their recorded locations only after their sha256 verifies, and the
calibration version's per-tract terms are read once. Objects of a tract the calibration does
not cover are processed uncalibrated and flagged. With ``mcmc_fallback: true`` in the run
config, objects flagged out of distribution, at a prior edge or poorly fit are redone by MCMC
under the run's prior and stored with method ``mcmc`` and the FALLBACK flag.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lor.db.calibration_store import terms_by_tract
from lor.db.engine import make_engine
from lor.db.model_store import model_version
from lor.db.run_store import Run
from lor.emulators.registry import load_emulator
from lor.inference.amortized import PhotometryPosteriors
from lor.inference.flags import Flag
from lor.inference.registry import load_estimator
from lor.pipeline.processing import NoProcessorError, ObjectBatch, PosteriorBatch


class AmortizedProcessor:
    def __init__(
        self,
        engine_posteriors: PhotometryPosteriors,
        calibration: dict[int, tuple[np.ndarray, np.ndarray]] | None,
    ) -> None:
        self.posteriors = engine_posteriors
        self.calibration = calibration
        self.rep = engine_posteriors.rep

    def process(self, batch: ObjectBatch) -> PosteriorBatch:
        n, b = batch.flux.shape
        zp = scale = None
        extra = np.zeros(n, np.int32)
        if self.calibration is not None:
            zp, scale = np.zeros((n, b)), np.ones((n, b))
            for tract in np.unique(batch.tract_id):
                rows = batch.tract_id == tract
                if int(tract) in self.calibration:
                    zp[rows], scale[rows] = self.calibration[int(tract)]
                else:
                    extra[rows] |= Flag.UNCALIBRATED_TRACT
        result = self.posteriors.infer(
            batch.flux, batch.flux_err, batch.missing_mask, batch.ebv, zp, scale, seed=int(n)
        )
        return PosteriorBatch(
            params=result.params,
            summaries=result.summaries,
            ood_flags=(result.flags | extra).astype(np.int32),
            method=result.method,
            representation_name=self.rep.name,
            representation_version=self.rep.version,
        )


def amortized_processor(run: Run) -> AmortizedProcessor:
    """Processor factory registered for the ``npe_mlp`` estimator family."""
    engine = make_engine()
    try:
        with engine.connect() as conn:
            est_row = model_version(conn, run.estimator_version_id)  # type: ignore[arg-type]
            estimator = load_estimator(Path(est_row.artifact_uri), est_row.artifact_sha256)
            if run.emulator_version_id is None:
                raise NoProcessorError(
                    f"run {run.name} pins no emulator: the OOD fit check needs one"
                )
            emu_row = model_version(conn, run.emulator_version_id)
            emulator = load_emulator(Path(emu_row.artifact_uri), emu_row.artifact_sha256)
            prior = _fallback_prior(conn, run) if run.config.get("mcmc_fallback") else None
            calibration = (
                terms_by_tract(conn, run.calibration_version_id, estimator.band_names)
                if run.calibration_version_id is not None
                else None
            )
    finally:
        engine.dispose()
    posteriors = PhotometryPosteriors(estimator, emulator, fallback_prior=prior)
    posteriors.warm_up()
    return AmortizedProcessor(posteriors, calibration)


def _fallback_prior(conn, run: Run):  # type: ignore[no-untyped-def]
    """The run's pinned prior (interim if none) for MCMC on flagged objects."""
    from sqlalchemy import select

    from lor.db.models import PriorVersion
    from lor.inference.prior import PopulationPrior

    if run.prior_version_id is None:
        return PopulationPrior()
    hyper = conn.execute(
        select(PriorVersion.hyperparameters).where(PriorVersion.id == run.prior_version_id)
    ).scalar_one()
    return PopulationPrior(hyperparameters={k: float(v) for k, v in hyper.items()})
