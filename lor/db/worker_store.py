"""Worker slice of the store: heartbeats of the processes that claim work, and who holds what.

A claim names its holder (``work_items.claimed_by``, ``host:pid``); the holder beats in
``lor.workers`` every few seconds (:mod:`lor.runs.heartbeat`). A holder silent for longer
than the dead-after time is dead, and its claims go back to pending at the next sweep
(:func:`lor.db.queue_store.requeue_expired`) instead of at the end of the lease. Functions
take an open ``Connection`` inside the caller's transaction.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, text


@dataclass(frozen=True)
class Holder:
    """A process holding claims of a run: how many, and when it last beat (None: never)."""

    worker: str
    items: int
    heartbeat_age_s: float | None
    lease_left_s: float

    @property
    def host(self) -> str:
        return self.worker.rpartition(":")[0]

    @property
    def pid(self) -> int | None:
        pid = self.worker.rpartition(":")[2]
        return int(pid) if pid.isdigit() else None


def beat(conn: Connection, name: str, host: str, pid: int, kind: str) -> None:
    """Record that ``name`` is alive now (insert on the first beat)."""
    conn.execute(
        text(
            """INSERT INTO lor.workers (name, host, pid, kind) VALUES (:n, :h, :p, :k)
               ON CONFLICT (name) DO UPDATE SET heartbeat_at = now()"""
        ),
        {"n": name, "h": host, "p": pid, "k": kind},
    )


def forget(conn: Connection, name: str) -> None:
    """Remove a worker that stops cleanly (it handed its claims back first)."""
    conn.execute(text("DELETE FROM lor.workers WHERE name = :n"), {"n": name})


def holders(conn: Connection, run_id: int | None = None) -> list[Holder]:
    """Who holds claimed items (of one run, or all runs), largest holder first."""
    rows = conn.execute(
        text(
            """SELECT w.claimed_by, count(*) AS items,
                      extract(epoch FROM now() - max(k.heartbeat_at)) AS age,
                      extract(epoch FROM min(w.lease_expires_at) - now()) AS lease_left
               FROM lor.work_items w
               LEFT JOIN lor.workers k ON k.name = w.claimed_by
               WHERE w.state = 'claimed'
                 AND (CAST(:r AS integer) IS NULL OR w.run_id = :r)
               GROUP BY w.claimed_by ORDER BY items DESC, w.claimed_by"""
        ),
        {"r": run_id},
    ).all()
    return [
        Holder(str(w), int(n), None if age is None else float(age), float(left or 0.0))
        for w, n, age, left in rows
    ]


def prune(conn: Connection, older_than_s: float) -> int:
    """Drop workers silent for longer than ``older_than_s`` that hold no claims."""
    return conn.execute(
        text(
            """DELETE FROM lor.workers k
               WHERE k.heartbeat_at < now() - make_interval(secs => :s)
                 AND NOT EXISTS (SELECT 1 FROM lor.work_items w
                                 WHERE w.state = 'claimed' AND w.claimed_by = k.name)"""
        ),
        {"s": float(older_than_s)},
    ).rowcount
