"""Prior-only reprocess runs, set-based: ranges of the parent's posteriors, one transaction each.

When only the prior changed, each new posterior is a function of the parent posterior's
stored parameters (and flags) and the two priors: no photometry, no per-object queue. The
run's work is ranges of the parent run's object ids (:mod:`lor.db.prior_chunk_store`,
``prior_chunk_objects`` objects each, queued by
:func:`lor.loop.reprocess.create_reprocess_run`). A range is taken, read, updated and
written in ONE transaction: the range row stays locked (``FOR UPDATE SKIP LOCKED``) while it
is computed, the new rows go in by binary COPY and the range is marked done at commit.

Exactly once: a worker that dies (or raises) rolls back, leaving the range pending for the
next taker with nothing written; the posterior ids (uuid5 of run and object) would refuse a
second row anyway. Provenance is that of every reprocess row: run, method ``reweighted``,
``parent_posterior_id``, input hash, worker.

The processor updates a whole range at once with ``reweight_prior`` (see
:meth:`lor.loop.reprocess_processor.ReprocessProcessor.reweight_prior`); rows its
cubature rule could not update, and every row for a processor without that method, go
through its ordinary ``process`` with their photometry. While range *i* is computed, one
database thread stores range *i - 1* and reads range *i + 1*, each on its own connection.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import Connection, Engine, RootTransaction
from tqdm.auto import tqdm

from lor.db import prior_chunk_store as chunks
from lor.db import run_store as store
from lor.db.run_store import DEFAULT_RUN_CONFIG, Run
from lor.runs.processing import (
    BatchCounts,
    ObjectBatch,
    PosteriorBatch,
    PriorReweightingProcessor,
    Processor,
    rows_to_store,
)

log = logging.getLogger(__name__)

LANES = 1
"""Default ranges computed at once (run config ``prior_lanes``). On this project's shared
2-core machine (load 4-6) a second lane gained nothing (10.9k against 11.1k objects/s on
3e4 objects) and cost 27% more CPU per object; on a quiet many-core host it can use more
cores than one, since NumPy releases the GIL in its array loops."""


@dataclass
class _Held:
    """A range taken in an open transaction on its own connection."""

    conn: Connection
    txn: RootTransaction
    chunk: chunks.Chunk
    columns: dict[str, Any]

    def abandon(self) -> None:
        """Roll back: the range is pending again and nothing of it was written."""
        with contextlib.suppress(Exception):
            self.txn.rollback()
        with contextlib.suppress(Exception):
            self.conn.close()


def _take(engine: Engine, run: Run, photometry: bool) -> _Held | None:
    conn = engine.connect()
    txn = conn.begin()
    try:
        chunk = chunks.take_chunk(conn, run.id)
        if chunk is None:
            txn.rollback()
            conn.close()
            return None
        columns = chunks.load_parents(conn, int(run.parent_run_id or 0), chunk, photometry)
        return _Held(conn, txn, chunk, columns)
    except BaseException:
        txn.rollback()
        conn.close()
        raise


def _batch(columns: dict[str, Any]) -> ObjectBatch:
    return ObjectBatch(**columns)


def _compute(processor: Processor, held: _Held) -> PosteriorBatch:
    """The range's new posteriors: ``reweight_prior`` for all rows, ``process`` (with the
    photometry, read in the range's transaction) for the rows it leaves."""
    cols = held.columns
    n = len(cols["object_id"])
    if not isinstance(processor, PriorReweightingProcessor):
        result = processor.process(_batch(cols))
        result.check(n)
        return result
    result, redo = processor.reweight_prior(cols["parent_params"], cols["parent_ood_flags"])
    result.check(n)
    rows = np.flatnonzero(redo)
    if not len(rows):
        return result
    ids = cols["object_id"][rows]
    measured = chunks.load_objects(held.conn, held.chunk.tract_id, ids)
    sub = {k: (v[rows] if v is not None else None) for k, v in cols.items()} | measured
    again = processor.process(_batch(sub))
    again.check(len(rows))
    params = np.asarray(result.params).copy()
    params[rows] = again.params
    summaries = {k: np.asarray(v, np.float64).copy() for k, v in result.summaries.items()}
    for k, v in again.summaries.items():
        summaries.setdefault(k, np.full(n, np.nan))[rows] = v
    flags, method = np.asarray(result.ood_flags).copy(), np.asarray(result.method).copy()
    flags[rows], method[rows] = again.ood_flags, again.method
    return PosteriorBatch(params, summaries, flags, method, result.representation_name,
                          result.representation_version)  # fmt: skip


def _store(held: _Held, worker: str, result: PosteriorBatch) -> BatchCounts:
    """Write the range's rows, mark it done and commit; the counts."""
    cols = held.columns
    rows = rows_to_store(result, cols["tract_id"], cols["object_id"], cols["input_hash"],
                         cols["parent_posterior_id"])  # fmt: skip
    try:
        done = chunks.store_chunk(held.conn, held.chunk, worker, rows)
        held.txn.commit()
    except BaseException:
        held.abandon()
        raise
    held.conn.close()
    return BatchCounts(claimed=held.chunk.objects, done=done)


def _fail(engine: Engine, run: Run, held: _Held, exc: BaseException) -> BatchCounts:
    """Count a failed attempt on a range (``failed`` after max_attempts), in the range's own
    transaction, which wrote nothing yet, so no other worker can take the range in between;
    in a new one if that transaction broke."""
    error = f"{type(exc).__name__}: {exc}"
    max_attempts = int(run.config.get("max_attempts", DEFAULT_RUN_CONFIG["max_attempts"]))
    try:
        state = chunks.fail_chunk(held.conn, held.chunk, error, max_attempts)
        held.txn.commit()
        held.conn.close()
    except Exception:  # noqa: BLE001 - the transaction broke: record it outside
        held.abandon()
        with engine.begin() as conn:
            state = chunks.fail_chunk(conn, held.chunk, error, max_attempts)
    log.warning("run %s: range %s of tract %s raised (%s): %s", run.id, held.chunk.chunk,
                held.chunk.tract_id, state, error)  # fmt: skip
    n = held.chunk.objects
    return BatchCounts(claimed=n, retried=n if state == "pending" else 0,
                       failed=n if state == "failed" else 0)  # fmt: skip


def process_chunks(
    engine: Engine,
    run: Run,
    worker: str,
    processor: Processor,
    progress: bool = True,
    limit: int | None = None,
) -> BatchCounts:
    """Process a prior-only reprocess run's pending ranges (``limit``: at most that many) in
    ``prior_lanes`` threads (run config; default :data:`LANES`), each overlapping a range's
    computation with the previous one's store and the next one's read; marks the run
    complete when none is left. See the module docstring.
    """
    lanes = max(1, int(run.config.get("prior_lanes", LANES)))
    total = BatchCounts()
    with engine.connect() as conn:
        todo = store.pending_count(conn, run.id)
    bar = tqdm(total=todo, unit="obj", desc=f"run {run.id}", disable=not progress)
    lock = threading.Lock()
    taken, stop = [0], threading.Event()

    def take() -> _Held | None:
        with lock:
            if stop.is_set() or (limit is not None and taken[0] >= limit):
                return None
            taken[0] += 1
        return _take(engine, run, not isinstance(processor, PriorReweightingProcessor))

    def counted(counts: BatchCounts) -> None:
        with lock:
            total.__iadd__(counts)
            bar.update(counts.done + counts.failed)

    try:
        while True:  # again while this pass sent ranges back to pending: a lane may have
            retried = total.retried  # looked for work while the range it failed was locked
            with ThreadPoolExecutor(max_workers=lanes, thread_name_prefix="lor-lane") as pool:
                running = [pool.submit(_lane, engine, run, worker, processor, take, counted)
                           for _ in range(lanes)]  # fmt: skip
                try:
                    for future in running:
                        future.result()
                except BaseException:
                    stop.set()  # the other lanes finish the range in hand and stop
                    raise
            if total.retried == retried or limit is not None:
                break
    finally:
        bar.close()
    with engine.begin() as conn:
        store.finish_if_done(conn, run.id)
    return total


def _lane(
    engine: Engine,
    run: Run,
    worker: str,
    processor: Processor,
    take: Callable[[], _Held | None],
    counted: Callable[[BatchCounts], None],
) -> None:
    """One lane: take, compute and store ranges until ``take`` has none."""
    storing: Future[BatchCounts] | None = None
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="lor-db") as db:
        taking = db.submit(take)
        try:
            while (held := taking.result()) is not None:
                taking = db.submit(take)
                try:
                    result = _compute(processor, held)
                except Exception as exc:  # noqa: BLE001 - the range's error, recorded on it
                    counted(_fail(engine, run, held, exc))
                    continue
                except BaseException:  # interrupted: nothing of this range is written
                    held.abandon()
                    raise
                if storing is not None:
                    counted(storing.result())
                storing = db.submit(_store, held, worker, result)
            if storing is not None:
                counted(storing.result())
            storing = None
        except BaseException:
            with contextlib.suppress(Exception):
                pending = taking.result()
                if pending is not None:
                    pending.abandon()
            if storing is not None:
                with contextlib.suppress(Exception):
                    counted(storing.result())
            raise


def pending_ranges(engine: Engine, run: Run) -> int:
    """Ranges of a run still pending (one Celery task each)."""
    with engine.connect() as conn:
        return chunks.pending_chunks(conn, run.id)
