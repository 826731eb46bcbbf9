"""What is stored for an object does not depend on the batch it was processed in (issue #14).

Every random draw on the processing path is keyed by the run id and the object id
(:mod:`lor.seeds`), so processing the same run in batches of 500 and of 2,000 must store the
same posterior parameters, summaries, flags and methods. The two passes go to two runs over
the same objects, both computed by the processor of the first: its keys are that run's, so
the only difference between the passes is the batching.
"""

from __future__ import annotations

import uuid
from typing import Any

import numpy as np
from sqlalchemy import Engine, text

from lor.inference.flags import Flag
from lor.runs.processing import Processor, clear_processor_cache, process_run, run_processor

SIZES = (500, 2000)
#: Columns that record which run and worker wrote a row, not what was computed.
PROVENANCE = {"posterior_id", "run_id", "worker_host", "created_at"}


def _stored(engine: Engine, run_id: int) -> dict[uuid.UUID, dict[str, Any]]:
    """Every stored column of a run's posteriors but its provenance, by object."""
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT * FROM lor.posteriors WHERE run_id = :r"), {"r": run_id}
        ).mappings()
        return {r["object_id"]: {k: v for k, v in r.items() if k not in PROVENANCE} for r in rows}


def _process_in_batches(engine: Engine, runs: dict[int, int], processor: Processor) -> None:
    """Each run by ``processor`` (so with its keys), in batches of its size (work items) or
    in its ranges (a prior-only reprocess run)."""
    for size, run_id in runs.items():
        counts = process_run(engine, run_id, size=size, processor=processor, progress=False)
        assert counts.failed == 0 and counts.done > 0


def _assert_same_rows(
    a: dict[uuid.UUID, dict[str, Any]], b: dict[uuid.UUID, dict[str, Any]]
) -> None:
    assert a.keys() == b.keys() and len(a) > 0
    for oid, row in a.items():
        other = b[oid]
        assert row.keys() == other.keys()
        for column, value in row.items():
            if column == "params" and value is not None:
                np.testing.assert_array_equal(value, other[column], err_msg=f"{oid} {column}")
            else:
                assert value == other[column], (oid, column, value, other[column])


def test_batch_size_changes_nothing_stored(lor_env: str, engine: Engine) -> None:
    """The example catalog (1,999 objects) in four batches of 500 and in one of 2,000."""
    from lor.bench.pipeline import bench_priors
    from lor.catalog.example import EXAMPLE_CATALOG
    from lor.catalog.ingest import ingest_catalog
    from lor.reporting.demo import register_shipped_models
    from lor.runs.lifecycle import create_run

    clear_processor_cache()
    ids = register_shipped_models(engine)
    n = ingest_catalog(engine, EXAMPLE_CATALOG, "ex", progress=False).rows_new
    assert 3 * SIZES[0] < n <= SIZES[1]  # four batches against one
    # one copy of the interim prior per run: a run over objects another run of the same
    # model bundle covers would queue nothing
    priors = bench_priors(engine, tuple(map(str, SIZES)))
    runs = {size: create_run(engine, "ex", name=f"batch-{size}", emulator=ids["emulator"],
                             estimator=ids["estimator"], prior=priors[str(size)]).run.id
            for size in SIZES}  # fmt: skip
    _, processor = run_processor(engine, runs[SIZES[0]])
    _process_in_batches(engine, runs, processor)
    small, large = (_stored(engine, runs[size]) for size in SIZES)
    _assert_same_rows(small, large)
    flags = np.array([r["ood_flags"] for r in small.values()])
    assert np.any(flags & Flag.POOR_FIT)  # the flag the batch size used to move is in play
    clear_processor_cache()
    _reprocess_in_batches(engine, runs[SIZES[0]])


def _reprocess_in_batches(engine: Engine, parent: int) -> None:
    """A prior change of the parent run, through work items in batches of 500 and 2,000, and
    through ranges of 500 and 2,000 parent posteriors: the same rows each way."""
    from lor.db.model_store import register_prior_version
    from lor.inference.prior_registry import estimator_prior
    from lor.inference.registry import load_shipped_estimator
    from lor.loop.reprocess import PRIOR_CHUNKS, create_reprocess_run

    interim = estimator_prior(load_shipped_estimator().spec)
    change = {"z0": 0.7, "av_scale": 0.4} if interim.family == "population" else {
        "smf_phi_evolution": -0.1, "smf_mstar_shift": 0.05}  # fmt: skip
    record = interim.with_hyperparameters(interim.hyperparameters | change).as_record()
    plans = {"items": {size: {"batch_size": size, PRIOR_CHUNKS: 0} for size in SIZES},
             "ranges": {size: {PRIOR_CHUNKS: size} for size in SIZES}}  # fmt: skip
    processor = None
    for way, configs in plans.items():
        runs = {}
        for size, config in configs.items():
            with engine.begin() as conn:  # one copy per run: a duplicate change is refused
                prior = register_prior_version(conn, f"shift-{way}-{size}", record, "manual", {})
            runs[size] = create_reprocess_run(engine, parent, prior, config=config).run.id
            if processor is None:
                _, processor = run_processor(engine, runs[size])
        _process_in_batches(engine, runs, processor)
        _assert_same_rows(*(_stored(engine, runs[size]) for size in SIZES))
    clear_processor_cache()
