"""Deterministic test processors (the real estimator is not needed to test the machinery).

``flux_processor`` is the processor factory the tests inject into worker processes
(:mod:`tests.workers.celery_app`) and ``lor process`` (:mod:`tests.workers.cli`); it sleeps
``LOR_TEST_PROCESSOR_DELAY_S`` seconds per batch, so a test can kill a worker mid-batch.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterable

import numpy as np
from sqlalchemy import Connection

from lor.db.run_store import Run
from lor.runs.processing import ObjectBatch, PosteriorBatch

#: OOD bit the test processor sets for an object with any NaN flux.
FLAG_MISSING = 1
N_PARAMS = 4


class FluxProcessor:
    """Params derived from the fluxes; objects with NaN fluxes flagged; all-NaN -> no posterior.

    ``poison`` object ids make the whole batch raise, as a crashing estimator would.
    """

    def __init__(self, delay_s: float = 0.0, poison: Iterable[uuid.UUID] = ()) -> None:
        self.delay_s = delay_s
        self.poison = frozenset(poison)
        self.calls = 0

    def process(self, batch: ObjectBatch) -> PosteriorBatch:
        self.calls += 1
        if self.delay_s:
            time.sleep(self.delay_s)
        hit = self.poison.intersection(batch.object_id)
        if hit:
            raise ValueError(f"cannot process object {sorted(map(str, hit))[0]}")
        flux = batch.flux.astype(np.float64)
        finite = np.isfinite(flux)
        any_nan, all_nan = ~finite.all(axis=1), ~finite.any(axis=1)
        fsum = np.where(finite, flux, 0.0).sum(axis=1)
        esum = np.where(finite, batch.flux_err, 0.0).sum(axis=1)
        params = np.stack(
            [fsum, esum, finite.sum(axis=1), batch.tract_id.astype(np.float64)], axis=1
        ).astype(np.float32)
        params[all_nan] = np.nan
        z = np.where(all_nan, np.nan, np.abs(fsum) / 1000.0)
        return PosteriorBatch(
            params=params,
            summaries={"z_q50": z, "z_mean": z, "log_mstar_mean": np.log10(1.0 + np.abs(fsum))},
            ood_flags=np.where(any_nan, FLAG_MISSING, 0).astype(np.int32),
            method=np.where(all_nan, "none", "amortized"),
            representation_name="test-flux",
            representation_version="1",
        )


def expected_params(flux: np.ndarray, flux_err: np.ndarray, tract_id: int) -> np.ndarray:
    """What :class:`FluxProcessor` stores for one object (for checks)."""
    finite = np.isfinite(flux)
    return np.array(
        [flux[finite].sum(), np.asarray(flux_err)[finite].sum(), finite.sum(), tract_id],
        np.float32,
    )


def flux_processor(conn: Connection, run: Run) -> FluxProcessor:
    """Processor factory (:data:`lor.runs.processing.ProcessorFactory`) for test processes."""
    return FluxProcessor(delay_s=float(os.environ.get("LOR_TEST_PROCESSOR_DELAY_S", "0")))
