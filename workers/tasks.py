"""Celery tasks: thin wrappers over :mod:`lor.runs.processing` (no queries here).

- ``lor.dispatch_run(run_id, size=None)``: send enough ``lor.process_batch`` messages to
  cover the run's pending items (minus messages already queued); safe to send again.
- ``lor.process_batch(run_id, size=None)``: claim, process and store one batch.
- ``lor.sweep()`` (beat): requeue expired claims, top up messages for open runs with pending
  work, mark finished runs complete.

Each worker process makes its own engine after the fork and checks the schema first
(``worker_process_init``; lazily in pools that do not fork), refusing a stale schema, then
beats (:class:`lor.runs.heartbeat.Heartbeat`) so its claims come back within seconds if
it dies. A worker that becomes ready sends one ``lor.sweep``: a worker restarted after a
crash, with or without beat, re-dispatches the open runs' pending work itself.

Processors come from :data:`PROCESSORS` (the registry's, at most
:data:`lor.runs.processing.MAX_CACHED_PROCESSORS` runs' kept per process); an app
module that wraps this one may replace its factory with :func:`use_processor_factory`
before the worker starts (the worker tests inject their deterministic processor so).
"""

from __future__ import annotations

import logging
import os
from typing import Any

from celery.signals import worker_init, worker_process_init, worker_ready
from sqlalchemy import Engine
from sqlalchemy.exc import InterfaceError, OperationalError

from lor.db.engine import make_engine
from lor.db.migrate import check_schema
from lor.errors import LorError
from lor.runs import processing
from lor.runs.heartbeat import Heartbeat
from workers.app import app, queued_messages

log = logging.getLogger(__name__)

#: At most this many messages per dispatch; the sweep sends more as the queue drains.
MAX_MESSAGES_PER_DISPATCH = 10_000

_ENGINES: dict[int, Engine] = {}
_HEARTBEATS: dict[int, Heartbeat] = {}
PROCESSORS = processing.Processors()
"""This process's run processors (a forked child starts its own: the cache keys by pid)."""


def use_processor_factory(factory: processing.ProcessorFactory) -> None:
    """Build runs' processors with ``factory`` instead of the registry (call before work)."""
    global PROCESSORS
    PROCESSORS = processing.Processors(factory)


def worker_engine() -> Engine:
    """This process's engine, made on first use after the fork, once the schema checks out."""
    pid = os.getpid()
    if pid not in _ENGINES:
        _ENGINES.clear()  # a forked child must not share its parent's connections
        engine = make_engine(
            pool_size=2,
            max_overflow=2,
            connect_args={"application_name": f"lor-worker {processing.default_worker()}"},
        )
        try:
            check_schema(engine)
        except Exception:
            engine.dispose()
            raise
        _ENGINES[pid] = engine
        _HEARTBEATS.clear()  # a forked child's copy of its parent's (its thread did not fork)
        _HEARTBEATS[pid] = Heartbeat(engine, processing.default_worker(), "celery").start()
    return _ENGINES[pid]


@worker_init.connect
def refuse_stale_schema(**_: Any) -> None:
    """In the main worker process, before any pool starts: exit on a stale schema."""
    engine = make_engine()
    try:
        check_schema(engine)
    except LorError as exc:
        log.critical("lor worker refuses to start: %s", exc)
        raise SystemExit(2) from exc
    finally:
        engine.dispose()


@worker_process_init.connect
def check_schema_in_child(**_: Any) -> None:
    """In every pool process: size the compute thread pools, then connect and check the
    schema once, before the first task."""
    processing.limit_compute_threads()
    try:
        worker_engine()
    except LorError as exc:  # tasks raise it again; the work stays pending in PostgreSQL
        log.error("lor worker process %s refuses work: %s", os.getpid(), exc)


@worker_ready.connect
def sweep_on_start(sender: Any = None, **_: Any) -> None:
    """Once the worker consumes: one sweep, so a restarted worker re-dispatches open runs
    (their messages may have died with the broker or with the previous worker)."""
    app.send_task("lor.sweep", queue=app.conf.task_default_queue)
    log.info("lor: sweep sent on start (open runs' pending work is re-dispatched)")


def _top_up(run_id: int, size: int | None, queued: int) -> tuple[int, int]:
    """Send process_batch messages for a run's pending batches beyond ``queued``.

    Returns (messages sent, batches needed).
    """
    needed = processing.batches_needed(worker_engine(), run_id, size)
    sent = min(max(0, needed - queued), MAX_MESSAGES_PER_DISPATCH)
    for _ in range(sent):
        process_batch.delay(run_id, size)
    return sent, needed


@app.task(name="lor.dispatch_run")
def dispatch_run(run_id: int, size: int | None = None) -> int:
    """Queue messages for a run's pending work; returns how many were sent."""
    sent, needed = _top_up(run_id, size, queued_messages(app))
    log.info("run %s: %d batches pending, %d messages sent", run_id, needed, sent)
    return sent


@app.task(
    name="lor.process_batch",
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=True,
    max_retries=5,
)
def process_batch(run_id: int, size: int | None = None) -> dict[str, int]:
    """Process one batch of a run (see :func:`lor.runs.processing.process_batch`)."""
    engine = worker_engine()
    counts = processing.process_batch(engine, run_id, size=size, processors=PROCESSORS)
    if counts.retried:  # items went back to pending: make sure a message comes for them
        process_batch.delay(run_id, size)
    processing.finish_if_done(engine, run_id)  # whoever stores the last batch closes the run
    return counts.as_dict()


@app.task(name="lor.sweep")
def sweep() -> dict[str, Any]:
    """Requeue expired claims, top up messages for open runs, mark finished runs complete."""
    engine = worker_engine()
    requeued = processing.requeue_expired(engine)
    queued = queued_messages(app)
    sent: dict[int, int] = {}
    for run_id in processing.runs_with_pending_work(engine):
        sent[run_id], needed = _top_up(run_id, None, queued)
        queued = max(0, queued - needed)
    finished = processing.finish_if_done(engine)
    if requeued or any(sent.values()) or finished:
        log.info("sweep: requeued %s, sent %s, finished runs %s", requeued, sent, finished)
    return {"requeued": requeued, "sent": sent, "finished": finished}
