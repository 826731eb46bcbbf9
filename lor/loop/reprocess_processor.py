"""The processor of reprocess runs: reweight stored posteriors instead of inferring them again.

:func:`lor.runs.processing.load_processor` picks it for every run of kind ``reprocess``.
Built once per worker process: the run's estimator and emulator (sha256-verified, as for
inference), the parent run's prior (the *old* one; the interim prior when the parent pinned
none) and this run's (the *new* one), and the per-tract terms of the parent's and this run's
calibration versions. With ``mcmc_fallback: true`` in the run config (inherited from the
parent run), objects whose reweighting keeps too few effective samples are redone by MCMC
under the new prior. Each batch row carries the parent posterior it updates
(:attr:`ObjectBatch.parent_params`); :class:`lor.hierarchy.reweight.PosteriorReweighter`
importance-reweights it by new/old prior and new/old calibrated likelihood and refits it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sqlalchemy import Connection

from lor.db.calibration_store import CalibrationTerms
from lor.db.prior_store import PriorManager
from lor.db.registry import Registry
from lor.db.run_store import Run, get_run
from lor.errors import ConfigError, NoProcessorError
from lor.inference.amortized import PhotometryPosteriors
from lor.inference.flags import Flag
from lor.inference.prior import PopulationPrior, PriorMixture
from lor.inference.prior_registry import estimator_prior
from lor.runs.amortized_processor import calibration_arrays
from lor.runs.processing import ObjectBatch, PosteriorBatch
from lor.seeds import object_keys


class ReprocessProcessor:
    """Reweights each batch row's parent posterior from the old to the new prior and calibration."""

    def __init__(
        self,
        reweighter: Any,  # lor.hierarchy.reweight.PosteriorReweighter
        representation: Any,  # the estimator's posterior representation (name, version)
        old_terms: CalibrationTerms | None,
        new_terms: CalibrationTerms | None,
        old_sed: np.ndarray | None = None,
        new_sed: np.ndarray | None = None,
        run_id: int = 0,
    ) -> None:
        self.reweighter = reweighter
        self.run_id = run_id
        self.rep = representation
        self.old_terms = old_terms
        self.new_terms = new_terms
        self.old_sed, self.new_sed = old_sed, new_sed

    def process(self, batch: ObjectBatch) -> PosteriorBatch:
        if batch.parent_params is None:
            raise ValueError("a reprocess batch needs the parent posteriors it updates")
        n_bands = batch.flux.shape[1]
        old_zp, old_scale, _ = calibration_arrays(
            self.old_terms, batch.tract_id, n_bands, self.old_sed
        )
        new_zp, new_scale, covered = calibration_arrays(
            self.new_terms, batch.tract_id, n_bands, self.new_sed
        )
        result = self.reweighter.reweight(
            batch.parent_params, batch.flux, batch.flux_err, batch.missing_mask, batch.ebv,
            old_zp, old_scale, new_zp, new_scale,
            seed=object_keys(self.run_id, batch.object_id),
            parent_flags=batch.parent_ood_flags,
        )  # fmt: skip
        extra = np.zeros(len(batch), np.int32)
        if self.new_terms is not None:  # as inference flags it: the tract was used as is
            extra[~covered] |= Flag.UNCALIBRATED_TRACT
        return PosteriorBatch(
            params=result.params,
            summaries=result.summaries,
            ood_flags=(np.asarray(result.flags) | extra).astype(np.int32),
            method=result.method,
            representation_name=self.rep.name,
            representation_version=self.rep.version,
        )

    def reweight_prior(
        self, parent_params: np.ndarray, parent_ood_flags: np.ndarray
    ) -> tuple[PosteriorBatch, np.ndarray]:
        """The set-based path of a prior change (:mod:`lor.loop.prior_chunks`): new
        posteriors from the stored ones and their flags alone, and the rows (bool) that
        need :meth:`process` with their photometry (the cubature rule fell short)."""
        result, redo = self.reweighter.reweight_prior(parent_params, parent_ood_flags)
        return PosteriorBatch(
            params=result.params,
            summaries=result.summaries,
            ood_flags=result.flags,
            method=result.method,
            representation_name=self.rep.name,
            representation_version=self.rep.version,
        ), redo


def reprocess_processor(conn: Connection, run: Run) -> ReprocessProcessor:
    """Processor factory of reprocess runs (see the module docstring); reads through ``conn``."""
    from lor.hierarchy.reweight import PosteriorReweighter

    if run.parent_run_id is None:
        raise NoProcessorError(f"reprocess run {run.name} (id {run.id}) names no parent run")
    parent = get_run(conn, run.parent_run_id)
    registry = Registry(conn.engine)
    estimator, emulator = registry.models.run_models(conn, run)
    # Step 1 posteriors are under the estimator's training prior, whatever prior the run
    # pinned (it only steers the MCMC fallback); reprocessed ones under theirs.
    old_prior = (
        registry.priors.load(conn, parent.prior_version_id)
        if parent.kind == "reprocess"
        else estimator_prior(estimator.spec)
    )
    new_prior = registry.priors.load(conn, run.prior_version_id)
    draws = int(run.config.get("marginalize_hyperparameters") or 0)
    if draws:
        new_prior = marginal_prior(conn, run.prior_version_id, new_prior, draws)
    bands = list(estimator.band_names)
    old_terms = registry.calibrations.terms(conn, parent.calibration_version_id, bands)
    new_terms = registry.calibrations.terms(conn, run.calibration_version_id, bands)
    old_error, old_sed = registry.calibrations.model_error(
        conn, parent.calibration_version_id, emulator
    )
    new_error, new_sed = registry.calibrations.model_error(
        conn, run.calibration_version_id, emulator
    )
    fallback = new_prior if run.config.get("mcmc_fallback") else None  # low-ESS objects: MCMC
    posteriors = PhotometryPosteriors(
        estimator, emulator, fallback_prior=fallback, model_error=new_error
    )
    posteriors.warm_up()
    changed = not np.allclose(old_error.floor_mag, new_error.floor_mag)
    reweighter = PosteriorReweighter(
        posteriors, old_prior, new_prior, estimator_prior(estimator.spec), changed
    )
    reweighter.warm_up()
    return ReprocessProcessor(
        reweighter, posteriors.rep, old_terms, new_terms, old_sed, new_sed, run.id
    )


def marginal_prior(
    conn: Connection, prior_version_id: int | None, prior: PopulationPrior, draws: int
) -> PriorMixture:
    """The prior version averaged over ``draws`` of the hyperparameters its fit left uncertain
    (``lor calibrate`` stores them and their covariance in the version's provenance)."""
    from lor.hierarchy.calibrate import hyperparameter_mixture

    try:
        free, covariance = PriorManager(conn.engine).fitted_uncertainty(conn, prior_version_id)
    except ConfigError as exc:
        raise NoProcessorError(str(exc)) from exc
    return hyperparameter_mixture(prior, free, covariance, draws, seed=int(prior_version_id or 0))
