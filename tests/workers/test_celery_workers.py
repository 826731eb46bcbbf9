"""Celery workers as real processes: crashes, broker restarts and dropped connections.

Every test here starts ``celery worker`` subprocesses (and some kill them, a broker or their
database connections) and checks that the run still ends with every object stored exactly
once. They are marked ``process_faults``; ``-m "not process_faults"`` skips them.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from lor.db.admin import temporary_database
from lor.runs.lifecycle import create_run, run_status
from tests.workers.conftest import RABBITMQ_URL, Workers
from tests.workers.support import exactly_once, ingest_synthetic, wait_for
from workers.app import make_app

pytestmark = pytest.mark.process_faults


def _dispatch(broker: str, queue: str, run_id: int) -> None:
    make_app(broker).send_task("lor.dispatch_run", args=(run_id,), queue=queue)


def _complete(engine, run_id: int) -> bool:  # type: ignore[no-untyped-def]
    return run_status(engine, run_id).run.status == "complete"


def _assert_exactly_once(engine, run_id: int, n: int) -> None:  # type: ignore[no-untyped-def]
    assert exactly_once(engine, run_id) == {
        "posteriors": n, "objects": n, "items": n, "done": n, "done_without_posterior": 0,
    }  # fmt: skip


def _new_run(engine, tmp_path: Path, n: int, **config: float):  # type: ignore[no-untyped-def]
    ingest_synthetic(engine, tmp_path, n)
    return create_run(engine, "DR1", config={"batch_size": 20, "lease_s": 3, **config}).run


def test_worker_killed_mid_batch(workers: Workers, engine, tmp_path: Path) -> None:
    """kill -9 of a worker holding a batch: its claims are requeued (the holder is dead), done
    once."""
    n = 300
    run = _new_run(engine, tmp_path, n)
    victim = workers.start("victim", delay_s=5)  # holds its first batch for 5 s
    _dispatch(workers.broker, workers.queue, run.id)
    query = text(
        """SELECT object_id FROM lor.work_items
           WHERE run_id = :r AND state = 'claimed' AND claimed_by LIKE :who"""
    )
    args = {"r": run.id, "who": f"%:{victim.pid}"}

    def holding() -> bool:
        with engine.connect() as conn:
            return bool(conn.execute(query, args).first())

    wait_for(holding, 30, "the victim to claim a batch")
    os.kill(victim.pid, signal.SIGKILL)  # mid-batch
    victim.wait(10)
    with engine.connect() as conn:
        held = set(conn.execute(query, args).scalars())
    assert held, "the victim finished its batch before it was killed"
    workers.start("healer", beat=True, pool="prefork")  # beat: sweeps every second
    wait_for(lambda: _complete(engine, run.id), 90, "the run to complete")
    _assert_exactly_once(engine, run.id, n)
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                """SELECT w.attempts, w.last_error, p.worker_host FROM lor.work_items w
                   JOIN lor.posteriors p USING (tract_id, run_id, object_id)
                   WHERE w.object_id = ANY(:held)"""
            ),
            {"held": list(held)},
        ).all()
    assert len(rows) == len(held)
    # returned because the holder is gone (pid dead on this host), not at the lease's end
    assert all(r.attempts >= 2 and "is no longer running" in r.last_error for r in rows)
    assert not any(r.worker_host.endswith(f":{victim.pid}") for r in rows)


def test_broker_restart_mid_run_loses_nothing(workers: Workers, engine, tmp_path, redis_server):  # type: ignore[no-untyped-def]
    """Redis dies with the run's messages in it and comes back empty: the sweep re-sends."""
    n = 300
    run = _new_run(engine, tmp_path, n)
    workers.start("w", beat=True)
    _dispatch(workers.broker, workers.queue, run.id)
    wait_for(lambda: exactly_once(engine, run.id)["done"] >= 60, 30, "some work to be done")
    redis_server.restart()  # every queued message is gone
    assert exactly_once(engine, run.id)["done"] < n
    wait_for(lambda: _complete(engine, run.id), 90, "the run to complete after the restart")
    _assert_exactly_once(engine, run.id, n)
    assert "lor.sweep" in workers.log("w")


def test_dropped_database_connections_are_retried(workers: Workers, engine, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """pg_terminate_backend on the worker's connections, repeatedly, while it processes."""
    n = 300
    run = _new_run(engine, tmp_path, n)
    workers.start("w", beat=True)
    _dispatch(workers.broker, workers.queue, run.id)
    terminated = 0
    for _ in range(4):
        time.sleep(0.8)
        with engine.connect() as conn:
            terminated += len(
                conn.execute(
                    text(
                        """SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                           WHERE datname = current_database()
                             AND application_name LIKE 'lor-worker %'"""
                    )
                ).all()
            )
    assert terminated >= 3
    wait_for(lambda: _complete(engine, run.id), 90, "the run to complete")
    _assert_exactly_once(engine, run.id, n)


def test_rabbitmq_broker(workers: Workers, engine, tmp_path) -> None:  # type: ignore[no-untyped-def]
    n = 100
    run = _new_run(engine, tmp_path, n)
    workers.start("w", pool="prefork", broker=RABBITMQ_URL, delay_s=0)
    _dispatch(RABBITMQ_URL, workers.queue, run.id)
    wait_for(lambda: _complete(engine, run.id), 60, "the run to complete over RabbitMQ")
    _assert_exactly_once(engine, run.id, n)


def test_worker_refuses_a_stale_schema(workers: Workers, server_url: str) -> None:
    with temporary_database(server_url, "lor_test_stale") as url:  # empty: no lor schema
        proc = workers.start("stale", wait=False, database_url=url)
        assert proc.wait(60) != 0
    assert "run `lor db upgrade`" in workers.log("stale")
