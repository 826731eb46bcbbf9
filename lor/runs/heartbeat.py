"""Heartbeats of claiming processes, and finding the claims of dead ones.

Every process that claims work (``lor process``, each Celery pool process) runs a
:class:`Heartbeat`: a daemon thread that writes ``lor.workers.heartbeat_at`` every
``LOR_HEARTBEAT_S`` seconds on its own connection. When the process dies (``kill -9``, OOM),
the beats stop, and after ``LOR_DEAD_AFTER_S`` its claims are requeued by whoever sweeps
next (:func:`requeue_dead`), seconds after the death instead of at the end of the 600 s lease.
A process of this host that no longer exists is dead at once (its pid is checked).

A live process whose computation is stuck still beats; its lease bounds that case, as before.
Declaring a live holder dead by mistake costs only work: completion marks items done only
where the completing worker still holds them, so nothing is written twice.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
from collections.abc import Sequence
from types import TracebackType

from sqlalchemy import Engine

from lor.config import get_settings
from lor.db import queue_store as queue
from lor.db import worker_store
from lor.db.worker_store import Holder

log = logging.getLogger(__name__)
#: Rows of processes silent this long, holding no claims, are deleted by the sweep.
FORGET_AFTER_S = 86_400.0


class Heartbeat:
    """A daemon thread beating for ``name`` every ``interval_s`` until :meth:`stop`."""

    def __init__(
        self, engine: Engine, name: str, kind: str, interval_s: float | None = None
    ) -> None:
        self.engine = engine
        self.name = name
        self.kind = kind
        self.interval_s = interval_s or get_settings().heartbeat_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def beat(self) -> bool:
        """One heartbeat; False (logged) if the database could not be reached."""
        host, _, pid = self.name.rpartition(":")
        try:
            with self.engine.begin() as conn:
                worker_store.beat(conn, self.name, host, int(pid or os.getpid()), self.kind)
            return True
        except Exception as exc:  # noqa: BLE001 - a missed beat is retried next interval
            log.warning("heartbeat of %s failed: %s", self.name, exc)
            return False

    def start(self) -> Heartbeat:
        self.beat()  # the first beat before any claim, so no claim is ever without one
        self._thread = threading.Thread(target=self._run, name="lor-heartbeat", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.beat()

    def stop(self, forget: bool = True) -> None:
        """Stop beating; ``forget`` removes the row (the process has handed its claims back)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.interval_s + 5)
        if forget:
            with contextlib.suppress(Exception), self.engine.begin() as conn:
                worker_store.forget(conn, self.name)

    def __enter__(self) -> Heartbeat:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def dead_here(holders: list[Holder]) -> list[str]:
    """Holders that ran on this host and whose process no longer exists."""
    me = socket.gethostname()
    return [
        h.worker for h in holders if h.host == me and h.pid is not None and not pid_alive(h.pid)
    ]


def is_dead(holder: Holder, dead_after_s: float) -> bool:
    """Whether a holder's claims are requeued at the next sweep (see :func:`requeue_dead`)."""
    if holder.worker in dead_here([holder]):
        return True
    return holder.heartbeat_age_s is not None and holder.heartbeat_age_s > dead_after_s


def requeue_dead(conn_engine: Engine, run_id: int | None = None) -> dict[int, int]:
    """Requeue the claims (of one run, or all) whose holder is dead or whose lease expired.

    One transaction; {run id: items requeued}.
    """
    dead_after = get_settings().dead_after_s
    with conn_engine.begin() as conn:
        here = dead_here(worker_store.holders(conn, run_id))
        requeued = queue.requeue_expired(conn, run_id, dead_after, here)
    if run_id is None:  # a sweep over all runs: forget processes silent for a day
        with conn_engine.begin() as conn:
            worker_store.prune(conn, FORGET_AFTER_S)
    return requeued


def describe_wait(holders: Sequence[Holder], dead_after_s: float) -> str:
    """What a process waits for when a run's only unfinished items are claimed by others."""
    parts = []
    for h in holders:
        if h.heartbeat_age_s is None:
            state = f"no heartbeat; returned when its lease ends in {max(h.lease_left_s, 0):.0f} s"
        elif h.heartbeat_age_s > dead_after_s:
            state = f"silent for {h.heartbeat_age_s:.0f} s: dead, returned now"
        else:
            state = (
                f"alive, heartbeat {h.heartbeat_age_s:.1f} s ago; returned if silent for "
                f"{dead_after_s:.0f} s"
            )
        parts.append(f"{h.items} items claimed by {h.worker} ({state})")
    return "waiting for " + "; ".join(parts)
