"""``lor bench recovery``: kill workers, the broker and database connections mid-run; count
what was lost or duplicated and how long each recovery took.

Everything runs in a throwaway database on the configured server, with a private
``redis-server`` as the Celery broker. A catalog is simulated with the shipped emulator
(as ``lor bench pipeline`` does) and ingested once; each scenario processes it in its own run
(its own copy of the interim prior, so every run queues every object), with the shipped
estimator and the default run settings (600 s lease, heartbeats, dead after 10 s):

- ``process``: ``lor process RUN`` is killed (SIGKILL) at ``kills`` random points of the run
  (uniform in 2-95% of its items done; each kill waits until the process at work has stored
  a posterior) and started again at once;
- ``celery``: a Celery worker (prefork, no beat) is killed with its whole process group the
  same way and started again, without ``--beat`` and without a new dispatch;
- ``redis``: a worker with ``--beat`` runs; mid-run the broker is killed, stays down 2 s and
  comes back empty (every queued message is lost); its recovery counts the first posterior
  of work claimed after the restart (the batch being computed meanwhile is not touched);
- ``pg_drop``: mid-run every database connection of the worker is terminated
  (``pg_terminate_backend``; the server is not restarted).

Per scenario: ``lost`` (items without a stored posterior at the end), ``duplicated``
(posterior rows beyond one per item), ``max_recovery_s`` (from each fault to the first
posterior any process stored after it), ``stalled_runs`` (the run did not complete within
the deadline, or ``lor status`` names it stalled), and the wall time.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, text

from lor.bench.pipeline import (
    RELEASE,
    REPO_ROOT,
    bench_priors,
    create_bench_run,
    write_simulated_catalog,
)
from lor.db.admin import temporary_database
from lor.db.engine import make_engine, resolve_database_url
from lor.db.migrate import upgrade
from lor.version import code_version

SCENARIOS = ("process", "celery", "redis", "pg_drop")
START_S = 240.0

Echo = Callable[[str], None]


def _env(url: str, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        LOR_DATABASE_URL=url,
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")])),
        **extra,
    )
    return env


class Redis:
    """A private ``redis-server`` (no persistence) on a free port that can be killed and
    restarted empty (the worker tests use it too)."""

    def __init__(self, workdir: Path) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.argv = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                     "--save", "", "--appendonly", "no", "--dir", str(workdir)]  # fmt: skip
        self.proc = self._start()

    def _start(self) -> subprocess.Popen:  # type: ignore[type-arg]
        proc = subprocess.Popen(self.argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), 0.2),
            ):
                return proc
            time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        """kill -9 (nothing to save: it keeps no data)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def restart(self, down_s: float = 2.0) -> None:
        """kill -9, stay down ``down_s``, start again with nothing in it."""
        self.stop()
        time.sleep(down_s)
        self.proc = self._start()


class Proc:
    """A lor subprocess (``lor process`` or a Celery worker) in its own process group."""

    def __init__(
        self, argv: list[str], env: dict[str, str], log: Path, ready: bytes | None
    ) -> None:
        self.log = log
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(argv, cwd=REPO_ROOT, env=env, stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
        if ready is not None:
            deadline = time.monotonic() + START_S
            while ready not in log.read_bytes():
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"{argv[2:5]} did not start:\n{self.tail()}")
                time.sleep(0.1)

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.kill()


def _lor_process(url: str, run_id: int, log: Path) -> Proc:
    argv = [sys.executable, "-m", "lor.cli.main", "process", str(run_id), "--no-progress"]
    return Proc(argv, _env(url), log, None)


def _celery(url: str, broker: str, queue: str, log: Path, beat: bool) -> Proc:
    argv = [sys.executable, "-m", "celery", "-A", "workers.app", "worker", "--pool=prefork",
            "--concurrency=1", "--loglevel=INFO", f"--hostname=lor-recovery-{uuid.uuid4().hex[:6]}@%h",
            "--without-gossip", "--without-mingle", "--without-heartbeat"]  # fmt: skip
    if beat:
        argv += ["--beat", f"--schedule={log.with_suffix('.beat')}"]
    return Proc(argv, _env(url, LOR_BROKER_URL=broker, LOR_QUEUE=queue), log, b" ready.")


def _db_now(engine: Engine) -> Any:
    with engine.connect() as conn:
        return conn.execute(text("SELECT clock_timestamp()")).scalar_one()


def _first_after(engine: Engine, run_id: int, since: Any, skip: list[uuid.UUID]) -> Any:
    with engine.connect() as conn:
        return conn.execute(
            text(
                """SELECT min(created_at) FROM lor.posteriors
                   WHERE run_id = :r AND created_at > :t AND NOT (object_id = ANY(:skip))"""
            ),
            {"r": run_id, "t": since, "skip": skip},
        ).scalar_one()


def _claimed(engine: Engine, run_id: int) -> list[uuid.UUID]:
    with engine.connect() as conn:
        return list(
            conn.execute(
                text(
                    "SELECT object_id FROM lor.work_items WHERE run_id = :r AND state = 'claimed'"
                ),
                {"r": run_id},
            ).scalars()
        )


def _wait_first_after(
    engine: Engine, run_id: int, since: Any, timeout: float, skip: list[uuid.UUID] | None = None,
    watch: Proc | None = None,
) -> float | None:  # fmt: skip
    """Seconds from ``since`` to the first posterior stored after it, of an object not in
    ``skip`` (None: nothing left to store; infinite: none within ``timeout``).

    Raises RuntimeError if ``watch`` (the process expected to store it) exits with an error:
    a crash is the code's failure, not a recovery to time.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        first = _first_after(engine, run_id, since, skip or [])
        if first is not None:
            return (first - since).total_seconds()
        if _remaining(engine, run_id) == 0:
            return None  # nothing left to store: no recovery to time
        if watch is not None and watch.proc.poll() not in (None, 0):
            raise RuntimeError(f"the restarted process failed:\n{watch.tail()}")
        time.sleep(0.1)
    return float("inf")


def _remaining(engine: Engine, run_id: int) -> int:
    with engine.connect() as conn:
        return conn.execute(
            text(
                "SELECT count(*) FROM lor.work_items WHERE run_id = :r AND state IN ('pending', 'claimed')"
            ),
            {"r": run_id},
        ).scalar_one()


def _outcome(engine: Engine, run_id: int, deadline_s: float) -> dict[str, Any]:
    """Wait for the run to complete (up to ``deadline_s``); lost, duplicated, stalled."""
    from lor.runs.lifecycle import run_status

    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline and run_status(engine, run_id).run.status != "complete":
        time.sleep(0.5)
    status = run_status(engine, run_id)
    with engine.connect() as conn:
        posteriors, objects, items, lost = conn.execute(
            text(
                """SELECT (SELECT count(*) FROM lor.posteriors WHERE run_id = :r),
                          (SELECT count(DISTINCT object_id) FROM lor.posteriors WHERE run_id = :r),
                          (SELECT count(*) FROM lor.work_items WHERE run_id = :r),
                          (SELECT count(*) FROM lor.work_items w WHERE w.run_id = :r
                             AND NOT EXISTS (SELECT 1 FROM lor.posteriors p WHERE p.run_id = w.run_id
                               AND p.tract_id = w.tract_id AND p.object_id = w.object_id))"""
            ),
            {"r": run_id},
        ).one()
    return {
        "objects": items,
        "lost": lost,
        "duplicated": posteriors - objects,
        "failed": status.counts["failed"],
        "complete": status.run.status == "complete",
        "stalled_runs": int(status.run.status != "complete" or status.stalled is not None),
        "stalled_reason": status.stalled,
    }


def _done(engine: Engine, run_id: int) -> int:
    with engine.connect() as conn:
        return conn.execute(
            text("SELECT count(*) FROM lor.work_items WHERE run_id = :r AND state = 'done'"),
            {"r": run_id},
        ).scalar_one()


def _random_points(engine: Engine, run_id: int, count: int, rng: random.Random) -> list[int]:
    """``count`` random points of a run, as numbers of items done, in order."""
    total = _remaining(engine, run_id)
    return sorted(int(rng.uniform(0.02, 0.95) * total) for _ in range(count))


def _wait_for_point(engine: Engine, run_id: int, point: int, since: Any, watch: Proc) -> bool:
    """Wait until ``point`` items are done and ``watch`` has stored a posterior since
    ``since`` (so a kill lands on a process at work); False if the run finished first."""
    if _wait_first_after(engine, run_id, since, START_S, watch=watch) is None:
        return False
    while _done(engine, run_id) < point:
        if not _remaining(engine, run_id):
            return False
        if watch.proc.poll() not in (None, 0):
            raise RuntimeError(f"the process failed:\n{watch.tail()}")
        time.sleep(0.05)
    return bool(_remaining(engine, run_id))


def _kill_points(
    engine: Engine, run_id: int, kills: int, rng: random.Random,
    start: Callable[[int], Proc], running: list[Proc], echo: Echo,
) -> list[float]:  # fmt: skip
    """Start; at each of ``kills`` random points of the run, SIGKILL the process and start a
    new one. Returns each kill's recovery seconds (infinite: none within ``START_S``); the
    last process is left in ``running``. Fewer kills only if the run completes first."""
    recoveries: list[float] = []
    running.append(start(0))
    since = _db_now(engine)
    for k, point in enumerate(_random_points(engine, run_id, kills, rng)):
        if not _wait_for_point(engine, run_id, point, since, running[-1]):
            break
        running.pop().kill()
        killed_at = _db_now(engine)
        running.append(start(k + 1))
        recovered = _wait_first_after(engine, run_id, killed_at, START_S, watch=running[-1])
        if recovered is None:  # the killed process had stored the run's last batch
            break
        recoveries.append(recovered)
        echo(f"  kill {k + 1} at {point} done: first posterior {recovered:.1f} s after it")
        since = killed_at
    return recoveries


def _fault_once(engine: Engine, run_id: int, fault: Callable[[], None], rng: random.Random,
                watch: Proc, skip_in_flight: bool) -> float | None:  # fmt: skip
    """Inject ``fault`` at a random point of the run; its recovery seconds (None: the run
    finished first).

    ``skip_in_flight``: the recovery is the first posterior of work claimed after the fault
    (a broker restart does not touch the batches a worker has already received; their
    completion says nothing about the lost messages being re-sent).
    """
    (point,) = _random_points(engine, run_id, 1, rng)
    if not _wait_for_point(engine, run_id, point, _db_now(engine), watch):
        return None
    in_flight = _claimed(engine, run_id) if skip_in_flight else []
    at = _db_now(engine)
    fault()
    return _wait_first_after(engine, run_id, at, START_S, in_flight)


def _terminate_worker_connections(engine: Engine) -> None:
    with engine.connect() as conn:
        conn.execute(
            text(
                """SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                   WHERE datname = current_database() AND application_name LIKE 'lor-worker %'"""
            )
        ).all()


def _dispatch(broker: str, queue: str, run_id: int) -> None:
    from celery import Celery

    client = Celery("lor-bench", broker=broker)
    client.send_task("lor.dispatch_run", args=(run_id, None), queue=queue)
    client.close()


def _scenario(
    name: str, engine: Engine, url: str, run_id: int, redis: Redis, workdir: Path,
    kills: int, rng: random.Random, echo: Echo,
) -> list[float]:  # fmt: skip
    """Run one scenario past its last fault; the recovery seconds of each fault."""
    queue = f"lor-recovery-{uuid.uuid4().hex[:8]}"
    log = workdir / f"{name}.log"
    running: list[Proc] = []
    try:
        if name == "process":
            start = lambda k: _lor_process(url, run_id, log)  # noqa: E731
            return _kill_points(engine, run_id, kills, rng, start, running, echo)
        if name == "celery":

            def start_worker(k: int) -> Proc:
                worker = _celery(url, redis.url, queue, log, beat=False)
                if k == 0:  # the only dispatch: restarted workers re-dispatch by themselves
                    _dispatch(redis.url, queue, run_id)
                return worker

            return _kill_points(engine, run_id, kills, rng, start_worker, running, echo)
        running.append(_celery(url, redis.url, queue, log, beat=True))
        _dispatch(redis.url, queue, run_id)
        fault = redis.restart if name == "redis" else lambda: _terminate_worker_connections(engine)
        one = _fault_once(engine, run_id, fault, rng, running[-1], skip_in_flight=name == "redis")
        echo(f"  {name}: first posterior {one} s after the fault")
        return [] if one is None else [one]
    finally:
        deadline = time.monotonic() + max(600.0, _remaining(engine, run_id) / 100.0)
        while _remaining(engine, run_id) and time.monotonic() < deadline and running:
            time.sleep(0.5)  # let the last process finish the run before stopping it
        for proc in running:
            proc.stop()


def run_recovery_benchmark(
    objects: int = 100_000,
    tracts: int = 20,
    kills: int = 10,
    scenarios: tuple[str, ...] = SCENARIOS,
    seed: int = 16,
    echo: Echo = print,
    batch_size: int = 1000,
) -> dict[str, Any]:
    """Run the benchmark (see the module docstring); returns the figures."""
    from lor.catalog.ingest import ingest_catalog
    from lor.reporting.demo import register_shipped_models

    rng = random.Random(seed)
    out: dict[str, Any] = {"benchmark": "recovery", "git_commit": code_version(),
                           "load_avg_1m_start": os.getloadavg()[0], "cpu_count": os.cpu_count()}  # fmt: skip
    t_all = time.perf_counter()
    with (
        tempfile.TemporaryDirectory() as tmp,
        temporary_database(resolve_database_url(), "lor_bench_recovery") as url,
    ):
        engine = make_engine(url)
        upgrade(engine)
        path = write_simulated_catalog(Path(tmp) / "objects.parquet", objects, tracts)
        n = ingest_catalog(engine, path, RELEASE, progress=False).rows_new
        echo(f"simulated and ingested {n} objects in {tracts} tracts")
        models = register_shipped_models(engine)
        priors = bench_priors(engine, scenarios)
        redis = Redis(Path(tmp))
        try:
            for name in scenarios:
                run_id = create_bench_run(
                    engine, f"recovery-{name}", models, priors[name], batch_size
                )
                echo(f"{name}: run {run_id}")
                t0 = time.perf_counter()
                rec = _scenario(name, engine, url, run_id, redis, Path(tmp), kills, rng, echo)
                result = _outcome(engine, run_id, 5.0) | {
                    "faults": len(rec),
                    "recoveries": len(rec),
                    "max_recovery_s": max(rec) if rec else None,
                    "median_recovery_s": sorted(rec)[len(rec) // 2] if rec else None,
                    "wall_s": time.perf_counter() - t0,
                }
                echo(f"  {name}: {result}")
                out[name] = result
        finally:
            redis.stop()
            engine.dispose()
    every = [out[s] for s in scenarios]
    out.update(
        lost=sum(r["lost"] for r in every),
        duplicated=sum(r["duplicated"] for r in every),
        max_recovery_s=max((r["max_recovery_s"] or 0.0) for r in every),
        stalled_runs=sum(r["stalled_runs"] for r in every),
        objects=n, tracts=tracts, kills=kills, seed=seed,
        batch_size=batch_size,
        wall_s=time.perf_counter() - t_all, load_avg_1m_end=os.getloadavg()[0],
        data=(f"{n} objects simulated with the shipped emulator (LSST 10-year depth) in {tracts} "
              f"tracts; shipped npe_mlp estimator; default run settings (batches of {batch_size}, 600 s "
              f"lease, heartbeat {_setting('heartbeat_s')} s, dead after {_setting('dead_after_s')} s); "
              f"private redis-server broker; one run per scenario"),
    )  # fmt: skip
    return out


def _setting(name: str) -> float:
    from lor.config import get_settings

    return float(getattr(get_settings(), name))
