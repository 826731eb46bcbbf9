"""Recovery without silent stalls: heartbeats, dead holders, waiting, stalled runs (issue #16).

Before claim heartbeats, a killed ``lor process`` left its claims for the whole 600 s lease:
a rerun exited 0 with the items still claimed, and nothing said why the run did not finish.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from lor.config import get_settings
from lor.db import worker_store
from lor.runs import processing
from lor.runs.heartbeat import Heartbeat
from lor.runs.lifecycle import create_run, run_status
from lor.runs.processing import claim_objects, process_run
from tests.workers.processors import FluxProcessor
from tests.workers.support import exactly_once, ingest_synthetic, wait_for

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def fast_death(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """Heartbeats every 0.2 s; a holder silent for 1 s is dead."""
    monkeypatch.setenv("LOR_HEARTBEAT_S", "0.2")
    monkeypatch.setenv("LOR_DEAD_AFTER_S", "1")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def _exactly(engine, run_id: int, n: int) -> None:  # type: ignore[no-untyped-def]
    assert exactly_once(engine, run_id) == {
        "posteriors": n, "objects": n, "items": n, "done": n, "done_without_posterior": 0,
    }  # fmt: skip


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_silent_holder_loses_its_claims_in_seconds_not_at_lease_end(engine, tmp_path, fast_death):  # type: ignore[no-untyped-def]
    n = 50
    ingest_synthetic(engine, tmp_path, n)
    run = create_run(engine, "DR1").run
    beat = Heartbeat(engine, "elsewhere:123", "process").start()
    assert claim_objects(engine, run.id, "elsewhere:123", 1000, lease_s=600) is not None
    assert processing.requeue_expired(engine, run.id) == {}  # alive: its claims stay
    beat.stop(forget=False)  # the process dies: no more beats, its row stays
    time.sleep(1.3)
    assert processing.requeue_expired(engine, run.id) == {run.id: n}
    with engine.connect() as conn:
        errors = set(conn.execute(text("SELECT last_error FROM lor.work_items")).scalars())
    assert len(errors) == 1 and "no heartbeat from elsewhere:123" in errors.pop()


def test_rerun_reclaims_a_dead_local_process_claims_at_once(engine, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A holder of this host whose pid is gone is dead without waiting for anything."""
    n = 40
    ingest_synthetic(engine, tmp_path, n)
    run = create_run(engine, "DR1").run
    ghost = f"{socket.gethostname()}:{_dead_pid()}"
    with engine.begin() as conn:  # it beat a moment ago, then was killed
        worker_store.beat(conn, ghost, socket.gethostname(), 1, "process")
    assert claim_objects(engine, run.id, ghost, 1000, lease_s=600) is not None
    t0 = time.monotonic()
    counts = process_run(engine, run.id, processor=FluxProcessor(), progress=False)
    assert time.monotonic() - t0 < 10
    assert counts.done == n
    _exactly(engine, run.id, n)
    assert run_status(engine, run.id).run.status == "complete"


def test_process_says_what_it_waits_for_then_takes_over(engine, tmp_path, fast_death):  # type: ignore[no-untyped-def]
    n = 30
    ingest_synthetic(engine, tmp_path, n)
    run = create_run(engine, "DR1").run
    other = Heartbeat(engine, "otherhost:77", "celery").start()
    assert claim_objects(engine, run.id, "otherhost:77", 1000, lease_s=600) is not None
    said: list[str] = []
    result: list[object] = []
    thread = threading.Thread(
        target=lambda: result.append(
            process_run(
                engine, run.id, processor=FluxProcessor(), progress=False, echo=said.append
            )  # fmt: skip
        )
    )
    thread.start()
    wait_for(lambda: bool(said), 10, "process_run to say what it waits for")
    assert said[0].startswith(f"waiting for {n} items claimed by otherhost:77 (alive")
    assert thread.is_alive()  # it waits; it does not exit with the items still claimed
    other.stop(forget=False)  # the holder dies
    thread.join(15)
    assert not thread.is_alive() and result[0].done == n  # type: ignore[attr-defined]
    _exactly(engine, run.id, n)


def test_status_names_a_stalled_run(engine, tmp_path, fast_death) -> None:  # type: ignore[no-untyped-def]
    n = 20
    ingest_synthetic(engine, tmp_path, n)
    run = create_run(engine, "DR1", name="stuck").run
    assert f"{n} pending" in (run_status(engine, run.id).stalled or "")  # nobody processes it
    beat = Heartbeat(engine, "h:9", "celery").start()
    claim_objects(engine, run.id, "h:9", 5, lease_s=600)
    assert run_status(engine, run.id).stalled is None  # a live holder: slow, not stalled
    beat.stop(forget=False)
    time.sleep(1.3)
    reason = run_status(engine, run.id).stalled
    assert reason is not None
    assert f"{n - 5} pending" in reason and "5 claimed by h:9" in reason
    assert "lor process stuck" in reason


def test_lor_process_killed_then_rerun_completes_without_waiting_for_the_lease(
    engine,
    tmp_path,
    lor_env,  # type: ignore[no-untyped-def]
) -> None:
    """The issue's reproduction: kill -9 of `lor process` mid-run, then `lor process` again."""
    n = 300
    ingest_synthetic(engine, tmp_path, n)
    run = create_run(engine, "DR1", config={"batch_size": 20}).run  # lease: the default 600 s
    env = dict(os.environ, LOR_DATABASE_URL=lor_env, PYTHONPATH=str(REPO_ROOT),
               LOR_TEST_PROCESSOR_DELAY_S="0.3")  # fmt: skip
    argv = [sys.executable, "-m", "tests.workers.cli", "process", str(run.id), "--no-progress"]
    first = subprocess.Popen(argv, cwd=REPO_ROOT, env=env, stderr=subprocess.DEVNULL)
    wait_for(lambda: 40 <= exactly_once(engine, run.id)["done"], 60, "some work to be done")
    first.kill()
    first.wait(10)
    with engine.connect() as conn:
        held = conn.execute(
            text("SELECT count(*) FROM lor.work_items WHERE run_id = :r AND state = 'claimed'"),
            {"r": run.id},
        ).scalar_one()
    assert held > 0  # it died holding claims
    t0 = time.monotonic()
    env["LOR_TEST_PROCESSOR_DELAY_S"] = "0"
    second = subprocess.run(
        argv, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert second.returncode == 0, second.stderr
    assert time.monotonic() - t0 < 60  # not the 600 s lease
    _exactly(engine, run.id, n)
    assert "complete" in second.stdout


def test_lor_status_without_a_run_names_stalled_runs(engine, tmp_path, lor_env) -> None:  # type: ignore[no-untyped-def]
    from click.testing import CliRunner

    from lor.cli.main import cli

    ingest_synthetic(engine, tmp_path, 12)
    create_run(engine, "DR1", name="forgotten")
    result = CliRunner().invoke(cli, ["status"])
    assert result.exit_code == 0, result.output
    assert "run 1 (forgotten)" in result.output
    assert "STALLED: no posterior in the last 60 s" in result.output
    assert "lor process forgotten" in result.output
