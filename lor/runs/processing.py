"""Processing: claim a batch of work, turn objects into posteriors, store them with provenance.

The same :func:`process_batch` runs in-process (:func:`process_run`, ``lor process``, no
broker) and inside Celery tasks (``workers/``). Whatever computes the posteriors is a
:class:`Processor`: it gets an :class:`ObjectBatch` and returns a :class:`PosteriorBatch` in
the same order. :func:`load_processor` builds the one a run's pinned model versions call for
(for a reprocess run: the one that reweights its parent run's posteriors).

Fault handling, so one bad object or one lost worker never stalls a run:

- a batch whose processor raises is split in halves until the failing objects are isolated;
  the rest are stored, and each failing object goes back to pending with its error until it
  has been tried ``max_attempts`` times (run config), when it ends ``failed``;
- a worker that dies stops beating (:mod:`lor.runs.heartbeat`); :func:`requeue_expired`
  returns its claims seconds later (or when their lease ends, for a holder that never beat);
- a dropped database connection is retried (:func:`_retrying`); completion is idempotent.

Nothing here reads the environment: the engine and the processors come from the caller.
A :class:`Processors` cache builds each run's processor once per process with a
:data:`ProcessorFactory` (default :func:`load_processor`, the registry) and keeps the most
recently used few; tests pass their own factory (``Processors(factory)``) to
:func:`process_batch` / :func:`process_run`, or a ready processor.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import socket
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, fields
from typing import Any, Protocol, TypeVar, runtime_checkable

import numpy as np
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import InterfaceError, OperationalError
from tqdm.auto import tqdm

from lor.db import queue_store as queue
from lor.db import run_store as store
from lor.db import worker_store
from lor.db.copy_binary import UuidColumn
from lor.db.queue_store import PosteriorRows
from lor.db.run_store import Run
from lor.db.worker_store import Holder
from lor.errors import ConfigError, LorError, NoProcessorError
from lor.posteriors.base import SUMMARY_COLUMNS
from lor.runs.heartbeat import Heartbeat, describe_wait, is_dead, requeue_dead

log = logging.getLogger(__name__)

#: Estimator families that can process a run: family name -> "module:callable" (a
#: :data:`ProcessorFactory`). Imported only when a run needs it. The amortized estimator
#: registers here.
ESTIMATOR_PROCESSORS: Mapping[str, str] = {
    "npe_mlp": "lor.runs.amortized_processor:amortized_processor"
}
#: The processor of reprocess runs (whatever their estimator family): "module:callable".
REPROCESS_PROCESSOR = "lor.loop.reprocess_processor:reprocess_processor"
#: Database retries after a dropped connection, with exponential backoff from 0.1 s.
DB_RETRIES = 6
#: Run processors a process keeps (least recently used dropped first). Each holds its run's
#: models (a few MB of weights plus compiled functions, ~100 MB resident for the shipped
#: estimator and emulator); a worker serving open runs in turn keeps the ones it is using.
MAX_CACHED_PROCESSORS = 4

T = TypeVar("T")


class ProcessorOutputError(LorError):
    """A processor returned arrays of the wrong shape or with unknown names or methods."""


@dataclass(frozen=True)
class ObjectBatch:
    """What a processor gets: one row per work item, arrays in band-set order (nJy)."""

    tract_id: np.ndarray  # (N,) int32
    object_id: Sequence[uuid.UUID]  # a list, or a UuidColumn as claimed
    flux: np.ndarray  # (N, B) float32, NaN where missing
    flux_err: np.ndarray  # (N, B) float32
    missing_mask: np.ndarray  # (N,) int16, bit b: band b unusable
    nondetection_mask: np.ndarray  # (N,) int16, bit b: band b is an upper limit
    ebv: np.ndarray  # (N,) float32, NaN = unknown
    input_hash: Sequence[uuid.UUID]
    # Reprocess runs only: the parent run's posterior each row updates, its params and flags.
    parent_posterior_id: Sequence[uuid.UUID] | None = None
    parent_params: np.ndarray | None = None  # (N, P) float32
    parent_ood_flags: np.ndarray | None = None  # (N,) int32

    def __len__(self) -> int:
        return len(self.object_id)

    def take(self, idx: np.ndarray) -> ObjectBatch:
        """The rows ``idx`` (in that order)."""
        parts = {f.name: _rows(getattr(self, f.name), idx) for f in fields(self)}
        return ObjectBatch(**parts)  # type: ignore[arg-type]


def _rows(column: T, idx: np.ndarray) -> T:
    """Rows ``idx`` of a batch column (array, uuid column or list), or None."""
    if column is None or isinstance(column, (np.ndarray, UuidColumn)):
        return None if column is None else column[idx]  # type: ignore[return-value]
    return [column[i] for i in idx]  # type: ignore[attr-defined, return-value]


@dataclass(frozen=True)
class PosteriorBatch:
    """What a processor returns, in its batch's order.

    ``params`` rows that are all NaN are stored as NULL (no posterior, e.g. method 'none').
    ``summaries`` keys are posteriors columns (``z_q50``, ``log_mstar_mean``, ...); absent
    keys and NaN values are stored as NULL.
    """

    params: np.ndarray  # (N, P) float32
    summaries: dict[str, np.ndarray]  # each (N,)
    ood_flags: np.ndarray  # (N,) int32 bitmask
    method: np.ndarray  # (N,) str: 'amortized', 'mcmc', 'reweighted' or 'none'
    representation_name: str
    representation_version: str

    def check(self, n: int) -> None:
        """Raise :class:`ProcessorOutputError` unless this is a valid answer for ``n`` objects."""
        params = np.asarray(self.params)
        if params.ndim != 2 or params.shape[0] != n:
            raise ProcessorOutputError(f"params has shape {params.shape}, expected ({n}, P)")
        for name, arr in (("ood_flags", self.ood_flags), ("method", self.method)):
            if np.shape(arr) != (n,):
                raise ProcessorOutputError(f"{name} has shape {np.shape(arr)}, expected ({n},)")
        unknown = set(self.summaries) - set(SUMMARY_COLUMNS)
        if unknown:
            raise ProcessorOutputError(f"unknown summaries {sorted(unknown)}")
        for name, arr in self.summaries.items():
            if np.shape(arr) != (n,):
                raise ProcessorOutputError(f"summary {name} has shape {np.shape(arr)}")
        bad = set(map(str, self.method)) - set(queue.METHODS)
        if bad:
            raise ProcessorOutputError(f"unknown methods {sorted(bad)}; use {queue.METHODS}")
        if not self.representation_name or not self.representation_version:
            raise ProcessorOutputError("representation name and version are required")


@runtime_checkable
class Processor(Protocol):
    """Turns objects into posteriors; pure computation, no database access."""

    def process(self, batch: ObjectBatch) -> PosteriorBatch: ...


@runtime_checkable
class PriorReweightingProcessor(Processor, Protocol):
    """A processor that also updates stored posteriors after a change of prior alone, from
    their stored rows and flags without the photometry (:mod:`lor.loop.prior_chunks`)."""

    def reweight_prior(
        self, parent_params: np.ndarray, parent_ood_flags: np.ndarray
    ) -> tuple[PosteriorBatch, np.ndarray]:
        """New rows for every parent, and the rows (bool) that still need :meth:`process`
        with their photometry."""
        ...


ProcessorFactory = Callable[[Connection, Run], Processor]
"""Builds a run's processor, reading what it needs (models, priors, calibrations) through
the connection it is given; it never opens its own."""


@dataclass
class BatchCounts:
    """What processing did: items claimed, stored done, sent back to pending, failed."""

    claimed: int = 0
    done: int = 0
    retried: int = 0
    failed: int = 0

    def __iadd__(self, other: BatchCounts) -> BatchCounts:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))
        return self

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def default_worker() -> str:
    """This process's worker name, ``host:pid`` (claims and posteriors record it)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _import(path: str) -> ProcessorFactory:
    module, _, attr = path.partition(":")
    if not module or not attr:
        raise ConfigError(
            f"processor factory must look like 'package.module:callable', not {path!r}"
        )
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"cannot import processor factory {path!r}: {exc}") from exc


def limit_compute_threads() -> None:
    """Hold this process's numerical libraries to ``LOR_COMPUTE_THREADS`` threads (default 1).

    Per-batch work is many small matrix products: extra BLAS threads only spin, and on a
    2-core machine they took the core that PostgreSQL and the other worker needed (client CPU
    fell from 233 to 137 us per object with one BLAS thread). TensorFlow's pools can only be
    sized before its first operation; after that this logs and leaves them.
    """
    from threadpoolctl import threadpool_limits

    from lor.config import get_settings

    n = get_settings().compute_threads
    threadpool_limits(limits=n)
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(n)
        tf.config.threading.set_inter_op_parallelism_threads(n)
    except RuntimeError:
        if tf.config.threading.get_intra_op_parallelism_threads() != n:
            log.info("TensorFlow already initialised; its thread pools stay as they are")


def load_processor(conn: Connection, run: Run) -> Processor:
    """Build the processor a run's pinned versions call for, from the registry
    (:data:`ESTIMATOR_PROCESSORS`); the default :data:`ProcessorFactory`.

    A reprocess run reweights stored posteriors instead of inferring them, whatever its
    estimator family, so its kind decides before the family does.
    """
    if run.kind == "reprocess":
        return _import(REPROCESS_PROCESSOR)(conn, run)
    if run.estimator_version_id is None:
        raise NoProcessorError(
            f"no estimator registered for this run: run {run.name} (id {run.id}) pins no "
            f"estimator version; register one and create a run with --estimator"
        )
    path = ESTIMATOR_PROCESSORS.get(run.estimator_family or "")
    if path is None:
        raise NoProcessorError(
            f"no estimator registered for this run: estimator family "
            f"{run.estimator_family!r} (version id {run.estimator_version_id}) has no "
            f"processor; known families: {sorted(ESTIMATOR_PROCESSORS)}"
        )
    return _import(path)(conn, run)


class Processors:
    """A process's run processors: each built once with ``factory``, at most ``maxsize`` kept.

    Models load once per process, not per batch; the least recently used run's processor
    is dropped when a new run's would exceed ``maxsize``, so a long-lived worker serving
    run after run holds a bounded amount of memory. A forked child never reuses its
    parent's processors (TensorFlow is not fork-safe): the cache empties on a pid change.
    """

    def __init__(
        self, factory: ProcessorFactory = load_processor, maxsize: int = MAX_CACHED_PROCESSORS
    ) -> None:
        if maxsize < 1:
            raise ValueError(f"maxsize must be >= 1, not {maxsize}")
        self.factory, self.maxsize = factory, maxsize
        self._built: OrderedDict[int, tuple[Run, Processor]] = OrderedDict()
        self._pid = os.getpid()
        self._lock = threading.Lock()

    def get(self, engine: Engine, run_id: int) -> tuple[Run, Processor]:
        """The run and its processor, built on first use in this process."""
        with self._lock:
            if self._pid != os.getpid():
                self._built.clear()
                self._pid = os.getpid()
            if run_id in self._built:
                self._built.move_to_end(run_id)
                return self._built[run_id]
            limit_compute_threads()

            def build() -> tuple[Run, Processor]:
                with engine.connect() as conn:
                    run = store.get_run(conn, run_id)
                    return run, self.factory(conn, run)

            self._built[run_id] = built = _retrying(build, "processor load")
            while len(self._built) > self.maxsize:
                dropped, _ = self._built.popitem(last=False)
                log.info("run %s: processor dropped from the cache (least recently used)", dropped)
            return built

    def __len__(self) -> int:
        return len(self._built)

    def clear(self) -> None:
        with self._lock:
            self._built.clear()


_DEFAULT = Processors()
"""The registry's processors, for callers that pass none (the CLI, the benches)."""


def run_processor(engine: Engine, run_id: int) -> tuple[Run, Processor]:
    """The run and its registry-built processor (cached in this process)."""
    return _DEFAULT.get(engine, run_id)


def clear_processor_cache() -> None:
    """Drop the registry-built processors of this process."""
    _DEFAULT.clear()


def _get_run(engine: Engine, run_id: int) -> Run:
    with engine.connect() as conn:
        return store.get_run(conn, run_id)


def _retrying(fn: Callable[[], T], what: str = "database call") -> T:
    """Run ``fn`` (one whole transaction) again after a dropped connection or a deadlock.

    Safe because every transaction here is idempotent: a repeated claim at worst leaves items
    claimed until their lease expires, a repeated completion writes nothing twice.
    """
    for attempt in range(DB_RETRIES):
        try:
            return fn()
        except (OperationalError, InterfaceError) as exc:
            if attempt == DB_RETRIES - 1:
                raise
            delay = min(5.0, 0.1 * 2**attempt)
            log.warning("%s failed (%s); retrying in %.1f s", what, exc.orig or exc, delay)
            time.sleep(delay)
    raise AssertionError("unreachable")


def claim_objects(
    engine: Engine, run_id: int, worker: str, size: int, lease_s: float
) -> ObjectBatch | None:
    """Claim up to ``size`` pending items and load their objects (one transaction).

    Items of a reprocess run come with the parent posteriors they update.
    """
    with engine.begin() as conn:
        columns = queue.claim_batch(conn, run_id, worker, size, lease_s)
    return ObjectBatch(**columns) if len(columns["tract_id"]) else None


def _isolate(
    processor: Processor, batch: ObjectBatch, idx: np.ndarray
) -> tuple[list[tuple[np.ndarray, PosteriorBatch]], dict[int, str]]:
    """Process rows ``idx``; on an exception split them in halves until each error is isolated.

    Returns the (rows, result) pieces that worked and {row: error message} for the rest.
    """
    sub = batch if len(idx) == len(batch) else batch.take(idx)
    try:
        result = processor.process(sub)
        result.check(len(sub))
        return [(idx, result)], {}
    except Exception as exc:  # noqa: BLE001 - any processor failure is the item's error
        if len(idx) == 1:
            return [], {int(idx[0]): f"{type(exc).__name__}: {exc}"}
        half = len(idx) // 2
        ok_a, err_a = _isolate(processor, batch, idx[:half])
        ok_b, err_b = _isolate(processor, batch, idx[half:])
        return ok_a + ok_b, err_a | err_b


def posterior_rows(batch: ObjectBatch, idx: np.ndarray, result: PosteriorBatch) -> PosteriorRows:
    """The rows to store for ``batch`` rows ``idx``, which ``result`` answers in order.

    The parent posteriors come from the batch, not the processor: provenance is the queue's.
    """
    return rows_to_store(
        result, batch.tract_id[idx], _rows(batch.object_id, idx), _rows(batch.input_hash, idx),
        _rows(batch.parent_posterior_id, idx),
    )  # fmt: skip


def rows_to_store(
    result: PosteriorBatch,
    tract_id: np.ndarray,
    object_id: Any,
    input_hash: Any,
    parent_posterior_id: Any = None,
) -> PosteriorRows:
    """A processor's answer as the column arrays the store writes, beside the identity and
    provenance columns of the rows it answers (in order); one definition for the work-item
    loop and the set-based prior-change ranges."""
    return PosteriorRows(
        tract_id=tract_id,
        object_id=object_id,
        input_hash=input_hash,
        params=np.asarray(result.params, np.float32),
        ood_flags=np.asarray(result.ood_flags, np.int32),
        method=np.asarray(result.method),
        representation_name=result.representation_name,
        representation_version=result.representation_version,
        summaries={k: np.asarray(v, np.float32) for k, v in result.summaries.items()},
        parent_posterior_id=parent_posterior_id,
    )


@dataclass(frozen=True)
class _Limits:
    """A run's batching settings (run config, with the store's defaults)."""

    size: int
    lease_s: float
    max_attempts: int

    @classmethod
    def of(cls, run: Run, size: int | None = None) -> _Limits:
        def get(key: str) -> object:
            return run.config.get(key, store.DEFAULT_RUN_CONFIG[key])

        return cls(size or int(get("batch_size")), float(get("lease_s")), int(get("max_attempts")))  # type: ignore[arg-type]


@dataclass
class _Computed:
    """One claimed batch after processing: the pieces that worked and each failing row's error."""

    batch: ObjectBatch
    pieces: list[tuple[np.ndarray, PosteriorBatch]]
    errors: dict[int, str]


def _run_and_processor(
    engine: Engine, run_id: int, processor: Processor | None, processors: Processors | None
) -> tuple[Run, Processor]:
    if processor is None:
        return (_DEFAULT if processors is None else processors).get(engine, run_id)
    return _retrying(lambda: _get_run(engine, run_id)), processor


def _claim(engine: Engine, run_id: int, worker: str, limits: _Limits) -> ObjectBatch | None:
    return _retrying(
        lambda: claim_objects(engine, run_id, worker, limits.size, limits.lease_s), "claim"
    )


def _compute(
    engine: Engine, run_id: int, worker: str, processor: Processor, batch: ObjectBatch
) -> _Computed:
    """Process a claimed batch, isolating failing objects; an interruption hands it back."""
    try:
        pieces, errors = _isolate(processor, batch, np.arange(len(batch)))
    except BaseException:  # interrupted (Ctrl-C, shutdown): hand the claims back at once
        _retrying(lambda: _release(engine, run_id, worker, batch), "release")
        raise
    return _Computed(batch, pieces, errors)


def _store(
    engine: Engine, run_id: int, worker: str, computed: _Computed, limits: _Limits
) -> BatchCounts:
    """Store a computed batch: posteriors and done states, errors and retries, one transaction."""
    batch, errors = computed.batch, computed.errors
    bad = sorted(errors)

    def complete() -> tuple[int, int, int]:
        with engine.begin() as conn:
            done = sum(
                queue.complete_batch(conn, run_id, worker, posterior_rows(batch, idx, result))
                for idx, result in computed.pieces
            )
            retried, failed = queue.fail_items(
                conn,
                run_id,
                worker,
                batch.tract_id[bad].tolist(),
                [batch.object_id[i] for i in bad],
                [errors[i] for i in bad],
                limits.max_attempts,
            )
        return done, retried, failed

    counts = BatchCounts(claimed=len(batch))
    counts.done, counts.retried, counts.failed = _retrying(complete, "complete")
    if errors:
        log.warning("run %s: %d of %d objects raised: %s", run_id, len(errors), len(batch),
                    next(iter(errors.values())))  # fmt: skip
    return counts


def process_batch(
    engine: Engine,
    run_id: int,
    worker: str | None = None,
    size: int | None = None,
    processor: Processor | None = None,
    processors: Processors | None = None,
) -> BatchCounts:
    """Claim one batch of a run, process it and store the posteriors; returns the counts.

    ``size`` and the lease come from the run's config unless given. The run's processor
    comes from ``processors`` (default: the registry's, built once per process), unless
    ``processor`` is given.
    """
    worker = worker or default_worker()
    run, own = _run_and_processor(engine, run_id, processor, processors)
    if run.config.get("prior_chunk_objects"):  # one range of a prior-only reprocess run
        from lor.loop.prior_chunks import process_chunks

        return process_chunks(engine, run, worker, own, progress=False, limit=1)
    limits = _Limits.of(run, size)
    batch = _claim(engine, run_id, worker, limits)
    if batch is None:
        return BatchCounts()
    return _store(engine, run_id, worker, _compute(engine, run_id, worker, own, batch), limits)


def _release(engine: Engine, run_id: int, worker: str, batch: ObjectBatch) -> int:
    with engine.begin() as conn:
        return queue.release_claims(conn, run_id, worker, batch.tract_id.tolist(), batch.object_id)


def requeue_expired(engine: Engine, run_id: int | None = None) -> dict[int, int]:
    """Return the claims (of one run, or all) of dead holders and expired leases to pending.

    Dead: no heartbeat for ``LOR_DEAD_AFTER_S``, or a process of this host that is gone
    (:func:`lor.runs.heartbeat.requeue_dead`). {run id: items requeued}.
    """
    return _retrying(lambda: requeue_dead(engine, run_id), "requeue")


def claim_holders(engine: Engine, run_id: int) -> list[Holder]:
    """Who holds a run's claimed items now, with their last heartbeat."""

    def go() -> list[Holder]:
        with engine.connect() as conn:
            return worker_store.holders(conn, run_id)

    return _retrying(go, "holders")


def batches_needed(engine: Engine, run_id: int, size: int | None = None) -> int:
    """Batches that would cover a run's pending items now (after requeueing expired claims)."""
    requeue_expired(engine, run_id)

    def count() -> tuple[Run, int]:
        with engine.connect() as conn:
            return store.get_run(conn, run_id), store.pending_count(conn, run_id)

    run, pending = _retrying(count, "count")
    if run.config.get("prior_chunk_objects"):  # a prior-only reprocess run: one per range
        from lor.loop.prior_chunks import pending_ranges

        return _retrying(lambda: pending_ranges(engine, run), "count")
    size = size or int(run.config.get("batch_size", store.DEFAULT_RUN_CONFIG["batch_size"]))
    return -(-pending // size)


def runs_with_pending_work(engine: Engine) -> dict[int, int]:
    """{run id: pending items} of open runs with pending work."""

    def go() -> dict[int, int]:
        with engine.connect() as conn:
            return store.runs_with_pending_work(conn)

    return _retrying(go, "count")


def finish_if_done(engine: Engine, run_id: int | None = None) -> list[int]:
    """Mark open runs (one, or all) complete where nothing is pending or claimed; their ids."""

    def go() -> list[int]:
        with engine.begin() as conn:
            return store.finish_if_done(conn, run_id)

    return _retrying(go, "finish")


def process_run(
    engine: Engine,
    run_id: int,
    worker: str | None = None,
    size: int | None = None,
    processor: Processor | None = None,
    progress: bool = True,
    echo: Callable[[str], None] | None = None,
    processors: Processors | None = None,
) -> BatchCounts:
    """Process a run in this process until no pending work is left (the embedded default).

    Database work overlaps computation: while batch *i* is computed, one thread stores batch
    *i - 1* and claims batch *i + 1* (each its own transaction, exactly as
    :func:`process_batch` does them), so the database's time hides behind the network's on
    a multi-core machine. Expired claims (of a worker that died) are requeued and processed
    too. When the only unfinished items are claimed by other processes, it waits for them
    and says so through ``echo`` (default: the log), naming each holder and its heartbeat:
    a dead holder's items come back within ``LOR_DEAD_AFTER_S`` and are processed here; a
    live one's are done by it. The run is marked complete when nothing remains. This process
    beats (:class:`~lor.runs.heartbeat.Heartbeat`) while it runs. ``processor`` and
    ``processors`` as in :func:`process_batch`.
    """
    worker = worker or default_worker()
    run, own = _run_and_processor(engine, run_id, processor, processors)
    if run.config.get("prior_chunk_objects"):  # set-based: no work items, no claims to beat for
        from lor.loop.prior_chunks import process_chunks

        return process_chunks(engine, run, worker, own, progress)
    with Heartbeat(engine, worker, "process"):
        return _process_run(engine, run, worker, own, _Limits.of(run, size), progress, echo)


def _process_run(
    engine: Engine,
    run: Run,
    worker: str,
    own: Processor,
    limits: _Limits,
    progress: bool,
    echo: Callable[[str], None] | None,
) -> BatchCounts:
    """:func:`process_run` once the processor is loaded and this process beats."""
    from lor.config import get_settings

    run_id, say = run.id, echo or log.info
    dead_after, said = get_settings().dead_after_s, ""
    total = BatchCounts()
    requeue_expired(engine, run_id)  # a killed predecessor's claims first, not at the end
    with engine.connect() as conn:
        todo = store.pending_count(conn, run_id)
    bar = tqdm(total=todo, unit="obj", desc=f"run {run_id}", disable=not progress)
    held: list[ObjectBatch] = []  # claimed and not yet computed: handed back on an error

    def stored(future: Future[BatchCounts] | None) -> None:
        if future is not None:
            counts = future.result()
            total.__iadd__(counts)
            bar.update(counts.done + counts.failed)

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="lor-db") as db:
        try:
            claiming = db.submit(_claim, engine, run_id, worker, limits)
            storing: Future[BatchCounts] | None = None
            while True:
                batch = claiming.result()
                if batch is None:
                    stored(storing)
                    storing = None
                    requeued = sum(requeue_expired(engine, run_id).values())
                    others = [h for h in claim_holders(engine, run_id) if h.worker != worker]
                    if not requeued and not others:
                        break
                    if requeued:
                        bar.total += requeued
                    else:  # nothing pending: the rest is claimed by other processes
                        key = str([(h.worker, h.items, is_dead(h, dead_after)) for h in others])
                        if key != said:  # when who holds what changes, not every poll
                            say(describe_wait(others, dead_after))
                        said = key
                        time.sleep(min(1.0, dead_after / 4))
                    claiming = db.submit(_claim, engine, run_id, worker, limits)
                    continue
                held.append(batch)
                claiming = db.submit(_claim, engine, run_id, worker, limits)
                computed = _compute(engine, run_id, worker, own, batch)
                held.remove(batch)
                stored(storing)
                storing = db.submit(_store, engine, run_id, worker, computed, limits)
        except BaseException:
            with contextlib.suppress(Exception):
                prefetched = claiming.result()
                if prefetched is not None:
                    held.append(prefetched)
            for batch in held:
                _retrying(lambda b=batch: _release(engine, run_id, worker, b), "release")
            raise
        finally:
            bar.close()
    finish_if_done(engine, run_id)
    return total
