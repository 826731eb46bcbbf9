"""Real Celery worker processes for the worker tests, each on a private queue.

Workers run ``python -m celery -A tests.workers.celery_app worker`` (the worker app with the
deterministic test processor injected) in subprocesses against the session's test database. Each test gets a private ``redis-server`` (no persistence) as its
broker and its own queue name, so tests never see each other's messages and leave nothing
behind in the shared Redis; the RabbitMQ test uses the local RabbitMQ with its own queue.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from lor.bench.recovery import Redis as RedisServer
from tests.workers.support import wait_for

REPO_ROOT = Path(__file__).resolve().parents[2]
RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672//"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "process_faults: starts real Celery worker (and broker) processes and kills them",
    )


@dataclass
class Workers:
    """Starts worker subprocesses and stops them all at teardown."""

    env: dict[str, str]
    logs: Path
    procs: list[subprocess.Popen] = field(default_factory=list)  # type: ignore[type-arg]
    shared_brokers: set[str] = field(default_factory=set)

    @property
    def queue(self) -> str:
        return self.env["LOR_QUEUE"]

    @property
    def broker(self) -> str:
        return self.env["LOR_BROKER_URL"]

    def start(
        self, name: str, beat: bool = False, pool: str = "solo", broker: str | None = None,
        wait: bool = True, database_url: str | None = None, delay_s: float | None = None,
    ) -> subprocess.Popen:  # type: ignore[type-arg]  # fmt: skip
        env = dict(self.env)
        if delay_s is not None:
            env["LOR_TEST_PROCESSOR_DELAY_S"] = str(delay_s)
        if broker:
            env["LOR_BROKER_URL"] = broker
            self.shared_brokers.add(broker)
        if database_url:
            env["LOR_DATABASE_URL"] = database_url
        log = self.logs / f"{name}.log"
        argv = [
            sys.executable, "-m", "celery", "-A", "tests.workers.celery_app", "worker",
            f"--pool={pool}", "--concurrency=1", "--loglevel=INFO",
            f"--hostname={name}-{uuid.uuid4().hex[:6]}@%h",
            "--without-gossip", "--without-mingle", "--without-heartbeat",
        ]  # fmt: skip
        if beat:
            argv += ["--beat", f"--schedule={self.logs / f'{name}-beat'}"]
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                argv, cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        self.procs.append(proc)
        if wait:
            wait_for(
                lambda: b" ready." in log.read_bytes() or proc.poll() is not None,
                60,
                f"worker {name} to start (log {log})",
            )
            assert proc.poll() is None, log.read_text()
        return proc

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        for broker in self.shared_brokers:  # once no worker can declare them again
            drop_queue(broker, self.queue)


def drop_queue(broker: str, queue: str) -> None:
    """Delete a test queue and its exchange from a shared broker (best effort)."""
    from workers.app import make_app

    try:
        with make_app(broker).connection_for_write() as conn:
            conn.default_channel.queue_delete(queue)
            conn.default_channel.exchange_delete(queue)
    except Exception:  # noqa: BLE001 - cleanup must not fail a test
        pass


@pytest.fixture()
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    yield server
    server.stop()


@pytest.fixture()
def workers(lor_env: str, engine, redis_server: RedisServer, tmp_path: Path) -> Iterator[Workers]:  # type: ignore[no-untyped-def]
    """Worker subprocess launcher; depends on ``engine`` so workers stop before it truncates."""
    env = dict(os.environ)
    env.update(
        LOR_DATABASE_URL=lor_env,
        LOR_BROKER_URL=redis_server.url,
        LOR_QUEUE=f"lor-test-{uuid.uuid4().hex[:10]}",
        LOR_TEST_PROCESSOR_DELAY_S="0.2",
        LOR_SWEEP_INTERVAL_S="1",
        PYTHONPATH=str(REPO_ROOT),
    )
    logs = tmp_path / "logs"
    logs.mkdir()
    pool = Workers(env, logs)
    yield pool
    pool.stop_all()
