"""Celery recovery that never stalls silently (issue #16), with real worker processes.

Before: after ``kill -9`` of a worker restarted without ``--beat`` the run stalled forever
(nothing re-sent its messages; its claims waited for the 600 s lease), and a killed beat
child was never restarted, so sweeps ended without a word.
"""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path

import pytest
from sqlalchemy import text

from lor.runs.lifecycle import create_run, run_status
from tests.workers.conftest import Workers
from tests.workers.support import exactly_once, ingest_synthetic, wait_for
from workers.app import make_app

pytestmark = pytest.mark.process_faults


def _complete(engine, run_id: int) -> bool:  # type: ignore[no-untyped-def]
    return run_status(engine, run_id).run.status == "complete"


def _exactly(engine, run_id: int, n: int) -> None:  # type: ignore[no-untyped-def]
    assert exactly_once(engine, run_id) == {
        "posteriors": n, "objects": n, "items": n, "done": n, "done_without_posterior": 0,
    }  # fmt: skip


def test_restarted_worker_without_beat_redispatches_and_reclaims(
    workers: Workers, engine, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    n = 200
    ingest_synthetic(engine, tmp_path, n)
    run = create_run(engine, "DR1", config={"batch_size": 20}).run  # default 600 s lease
    victim = workers.start("victim", delay_s=3)
    make_app(workers.broker).send_task("lor.dispatch_run", args=(run.id,), queue=workers.queue)

    def holding() -> bool:
        with engine.connect() as conn:
            return bool(
                conn.execute(
                    text("SELECT 1 FROM lor.work_items WHERE run_id = :r AND claimed_by LIKE :w"),
                    {"r": run.id, "w": f"%:{victim.pid}"},
                ).first()
            )

    wait_for(holding, 30, "the victim to claim a batch")
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait(10)
    workers.start("fresh", delay_s=0)  # no --beat, and nobody dispatches again
    wait_for(lambda: _complete(engine, run.id), 60, "the run to complete on the fresh worker")
    _exactly(engine, run.id, n)
    assert "sweep sent on start" in workers.log("fresh")


def test_killed_beat_child_is_restarted(workers: Workers, engine, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    workers.start("w", beat=True, delay_s=0)
    pids = re.findall(r"embedded beat running as pid (\d+)", workers.log("w"))
    assert pids, workers.log("w")
    os.kill(int(pids[0]), signal.SIGKILL)
    wait_for(
        lambda: len(re.findall(r"embedded beat running as pid (\d+)", workers.log("w"))) >= 2,
        30,
        "the watchdog to start a new beat",
    )
    assert f"beat process {pids[0]} died" in workers.log("w")
    n = 60  # a run nobody dispatches: only the (new) beat's sweep can send its messages
    ingest_synthetic(engine, tmp_path, n)
    run = create_run(engine, "DR1", config={"batch_size": 20}).run
    wait_for(lambda: _complete(engine, run.id), 60, "the new beat's sweep to run it")
    _exactly(engine, run.id, n)
