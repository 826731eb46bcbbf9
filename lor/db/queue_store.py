"""Work-queue slice of the store: claim, load, complete, fail and requeue work items.

The work queue is a table, not a broker: a work item moves ``pending -> claimed -> done`` (or
``failed``) through the named verbs here, each one SQL statement over many items. Claims take
rows with ``FOR UPDATE SKIP LOCKED`` under a lease, so any number of workers share a run
without coordinating; completion writes the posteriors and marks their items done in the
caller's single transaction, and only for items still claimed by that worker, so a worker
whose lease expired (and whose items were claimed again) writes nothing. Posterior ids are
deterministic (uuid5 of run and object), so even a redelivered write inserts nothing twice.
Items of a reprocess run carry the posterior they update (``parent_posterior_id``); claiming
them returns it, and completion records it on the new row.

Runs, versions and queueing work live in :mod:`lor.db.run_store`. Functions take an open
``Connection`` inside the caller's transaction.

Keyed batch statements (``UPDATE work_items ... FROM <1000 keys>``) are planned as nested
loops over the primary-key index (:func:`_index_nested_loops`): on a partitioned table the
planner otherwise hashes the whole table for every batch when it has statistics (measured
680 ms vs 19 ms per 1000 items of 1e6), and loops over sequential scans when it has none
yet, as right after a run is queued (10 s per batch of 100k).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlalchemy import Connection, text

from lor.db.catalog_store import copy_rows
from lor.db.copy_binary import Field, encode_rows
from lor.db.run_store import DEFAULT_RUN_CONFIG, SUMMARY_COLUMNS
from lor.errors import NotFoundError

#: Namespace of posterior ids: ``uuid5(POSTERIOR_NAMESPACE, f"{run_id}:{object_id}")``.
POSTERIOR_NAMESPACE = uuid.UUID("6f0b4a52-3c1e-5d8e-9a57-1c0e6e2b7d41")
#: Values of ``posteriors.method``; the stage table carries the index into this tuple.
METHODS = ("none", "amortized", "mcmc", "reweighted")
STAGE_TABLE = "lor_posterior_stage"
MAX_ERROR_CHARS = 2000


@dataclass
class Claim:
    """Items claimed by one worker, in claim order."""

    tract_id: np.ndarray  # (N,) int32
    object_id: list[uuid.UUID]
    attempts: np.ndarray  # (N,) int16: claims so far, this one included
    parent_posterior_id: list[uuid.UUID] | None = None  # reprocess runs: posterior to update

    def __len__(self) -> int:
        return len(self.object_id)


@dataclass
class PosteriorRows:
    """Column arrays of posterior rows to store for one batch (per-batch values as scalars)."""

    tract_id: np.ndarray  # (N,) int32
    object_id: list[uuid.UUID]
    input_hash: list[uuid.UUID]
    params: np.ndarray  # (N, P) float32; rows that are all NaN are stored as NULL
    ood_flags: np.ndarray  # (N,) int32
    method: np.ndarray  # (N,) str, one of METHODS
    representation_name: str
    representation_version: str
    summaries: dict[str, np.ndarray] = field(default_factory=dict)  # NaN is stored as NULL
    parent_posterior_id: list[uuid.UUID] | None = None  # None: stored as NULL (not reprocess)


def _index_nested_loops(conn: Connection) -> None:
    """Plan the rest of this transaction as index nested loops (see the module docstring).

    Keyed updates test the state as ``w.state = (SELECT 'claimed')``, not a literal: the
    planner then cannot use the partial index of unfinished items for them (it would scan
    all claimed items once per key) and probes the primary key instead.
    """
    conn.execute(
        text(
            "SELECT set_config('enable_hashjoin', 'off', true), "
            "set_config('enable_mergejoin', 'off', true), "
            "set_config('enable_seqscan', 'off', true), "
            "set_config('enable_bitmapscan', 'off', true), "
            "set_config('enable_material', 'off', true), "
            "set_config('jit', 'off', true)"  # disabled paths cost 1e10: JIT would compile
        )
    )


def claim_batch(conn: Connection, run_id: int, worker: str, size: int, lease_s: float) -> Claim:
    """Claim up to ``size`` pending items of a run for ``worker`` under a lease of ``lease_s``."""
    _index_nested_loops(conn)
    rows = conn.execute(
        text(
            """WITH picked AS (
                   SELECT tract_id, object_id FROM lor.work_items
                   WHERE run_id = :run_id AND state = 'pending'
                   LIMIT :size FOR UPDATE SKIP LOCKED)
               UPDATE lor.work_items w
               SET state = 'claimed', attempts = w.attempts + 1, claimed_by = :worker,
                   lease_expires_at = now() + make_interval(secs => :lease), updated_at = now()
               FROM picked p
               WHERE w.run_id = :run_id AND w.tract_id = p.tract_id AND w.object_id = p.object_id
               RETURNING w.tract_id, w.object_id, w.attempts, w.parent_posterior_id"""
        ),
        {"run_id": run_id, "size": size, "worker": worker, "lease": float(lease_s)},
    ).all()
    parents = [r[3] for r in rows]
    return Claim(
        tract_id=np.fromiter((r[0] for r in rows), np.int32, len(rows)),
        object_id=[r[1] for r in rows],
        attempts=np.fromiter((r[2] for r in rows), np.int16, len(rows)),
        parent_posterior_id=parents if any(p is not None for p in parents) else None,
    )


def load_objects(conn: Connection, claim: Claim) -> dict[str, Any]:
    """The claimed object versions' measurements as arrays in claim order (E(B-V) NULL -> NaN)."""
    _index_nested_loops(conn)
    rows = conn.execute(
        text(
            """SELECT o.flux, o.flux_err, o.missing_mask, o.nondetection_mask,
                      coalesce(o.ebv, 'NaN'), o.input_hash
               FROM unnest(CAST(:t AS integer[]), CAST(:o AS uuid[])) WITH ORDINALITY
                    AS k(tract_id, object_id, i)
               JOIN lor.objects o ON o.tract_id = k.tract_id AND o.object_id = k.object_id
               ORDER BY k.i"""
        ),
        {"t": claim.tract_id.tolist(), "o": claim.object_id},
    ).all()
    if len(rows) != len(claim):
        raise NotFoundError(f"{len(claim) - len(rows)} claimed object versions are missing")
    n = len(rows)
    return {
        "flux": np.array([r[0] for r in rows], np.float32).reshape(n, -1),
        "flux_err": np.array([r[1] for r in rows], np.float32).reshape(n, -1),
        "missing_mask": np.fromiter((r[2] for r in rows), np.int16, n),
        "nondetection_mask": np.fromiter((r[3] for r in rows), np.int16, n),
        "ebv": np.fromiter((r[4] for r in rows), np.float32, n),
        "input_hash": [r[5] for r in rows],
    }


def load_parent_params(conn: Connection, claim: Claim) -> np.ndarray:
    """The params (N, P) float32 of the posteriors a reprocess claim updates, in claim order."""
    if claim.parent_posterior_id is None:
        raise ValueError("this claim has no parent posteriors (not a reprocess run)")
    _index_nested_loops(conn)
    rows = conn.execute(
        text(
            """SELECT p.params
               FROM unnest(CAST(:t AS integer[]), CAST(:p AS uuid[])) WITH ORDINALITY
                    AS k(tract_id, posterior_id, i)
               JOIN lor.posteriors p ON p.tract_id = k.tract_id AND p.posterior_id = k.posterior_id
               WHERE p.params IS NOT NULL
               ORDER BY k.i"""
        ),
        {"t": claim.tract_id.tolist(), "p": claim.parent_posterior_id},
    ).scalars()
    params = [np.asarray(r, np.float32) for r in rows]
    if len(params) != len(claim):
        raise NotFoundError(f"{len(claim) - len(params)} parent posteriors are missing or empty")
    return np.stack(params) if params else np.zeros((0, 0), np.float32)


def posterior_ids(run_id: int, object_ids: Sequence[uuid.UUID]) -> list[uuid.UUID]:
    return [uuid.uuid5(POSTERIOR_NAMESPACE, f"{run_id}:{o}") for o in object_ids]


def _uuid_bytes(ids: Sequence[uuid.UUID]) -> np.ndarray:
    return np.frombuffer(b"".join(u.bytes for u in ids), np.uint8).reshape(len(ids), 16)


def _stage_posteriors(conn: Connection, run_id: int, rows: PosteriorRows) -> None:
    """Binary COPY one batch into the session's temporary stage table (emptied at commit)."""
    summaries = ",\n".join(f"{c} real" for c in SUMMARY_COLUMNS)
    conn.execute(
        text(
            f"""CREATE TEMP TABLE IF NOT EXISTS {STAGE_TABLE} (
                   tract_id integer, object_id uuid, posterior_id uuid, input_hash uuid,
                   has_params smallint, params real[], ood_flags integer, method_code smallint,
                   parent_posterior_id uuid, {summaries}) ON COMMIT DELETE ROWS"""
        )
    )
    conn.execute(text(f"DELETE FROM {STAGE_TABLE}"))
    n = len(rows.object_id)
    params = np.asarray(rows.params, np.float32).reshape(n, -1)
    has_params = ~np.all(np.isnan(params), axis=1) if params.shape[1] else np.zeros(n, bool)
    codes = np.array([METHODS.index(str(m)) for m in rows.method], np.int16)
    values: dict[str, np.ndarray] = {
        "tract_id": np.asarray(rows.tract_id, np.int32),
        "object_id": _uuid_bytes(rows.object_id),
        "posterior_id": _uuid_bytes(posterior_ids(run_id, rows.object_id)),
        "input_hash": _uuid_bytes(rows.input_hash),
        "has_params": has_params.astype(np.int16),
        "params": np.where(has_params[:, None], params, 0.0).astype(np.float32),
        "ood_flags": np.asarray(rows.ood_flags, np.int32),
        "method_code": codes,
    }
    for col in SUMMARY_COLUMNS:
        values[col] = np.asarray(rows.summaries.get(col, np.full(n, np.nan)), np.float32)
    parents = rows.parent_posterior_id  # not copied (left NULL) outside reprocess runs
    if parents is not None:
        values["parent_posterior_id"] = _uuid_bytes(parents)
    fields = [
        Field("tract_id", "int4"),
        Field("object_id", "uuid"),
        Field("posterior_id", "uuid"),
        Field("input_hash", "uuid"),
        Field("has_params", "int2"),
        *([Field("params", "float4", params.shape[1])] if params.shape[1] else []),
        Field("ood_flags", "int4"),
        Field("method_code", "int2"),
        *(Field(c, "float4") for c in SUMMARY_COLUMNS),
        *([Field("parent_posterior_id", "uuid")] if parents is not None else []),
    ]
    copy_rows(
        conn, STAGE_TABLE, encode_rows(fields, {f.name: values[f.name] for f in fields}), fields
    )


def complete_batch(conn: Connection, run_id: int, worker: str, rows: PosteriorRows) -> int:
    """Write posteriors and mark their items done, for items still claimed by ``worker``.

    Returns the number of posteriors written. Items another worker holds now (this worker's
    lease expired and they were claimed again) or that are already done are skipped, so a
    late or repeated completion writes nothing twice. Posterior rows are only ever inserted.
    """
    if not rows.object_id:
        return 0
    _index_nested_loops(conn)
    _stage_posteriors(conn, run_id, rows)
    done = (
        conn.execute(
            text(
                f"""UPDATE lor.work_items w
                SET state = 'done', lease_expires_at = NULL, updated_at = now()
                FROM {STAGE_TABLE} s
                WHERE w.run_id = :run_id AND w.tract_id = s.tract_id
                  AND w.object_id = s.object_id
                  AND w.state = (SELECT 'claimed') AND w.claimed_by = :worker
                RETURNING w.object_id"""
            ),
            {"run_id": run_id, "worker": worker},
        )
        .scalars()
        .all()
    )
    if len(done) < len(rows.object_id):  # rare: some items are no longer ours
        conn.execute(
            text(f"DELETE FROM {STAGE_TABLE} WHERE NOT (object_id = ANY(:done))"),
            {"done": list(done)},
        )
    cols = ", ".join(SUMMARY_COLUMNS)
    nulled = ", ".join(f"NULLIF(s.{c}, 'NaN')" for c in SUMMARY_COLUMNS)
    return conn.execute(
        text(
            f"""INSERT INTO lor.posteriors (tract_id, posterior_id, run_id, object_id,
                    representation_name, representation_version, params, {cols},
                    ood_flags, method, parent_posterior_id, input_hash, worker_host)
                SELECT s.tract_id, s.posterior_id, :run_id, s.object_id, :rep_name,
                    :rep_version, CASE WHEN s.has_params = 1 THEN s.params END, {nulled},
                    s.ood_flags, (CAST(:methods AS text[]))[s.method_code + 1],
                    s.parent_posterior_id, s.input_hash, :worker
                FROM {STAGE_TABLE} s
                ON CONFLICT DO NOTHING"""
        ),
        {
            "run_id": run_id,
            "worker": worker,
            "rep_name": rows.representation_name,
            "rep_version": rows.representation_version,
            "methods": list(METHODS),
        },
    ).rowcount


def fail_items(
    conn: Connection,
    run_id: int,
    worker: str,
    tract_id: Sequence[int],
    object_id: Sequence[uuid.UUID],
    errors: Sequence[str],
    max_attempts: int,
) -> tuple[int, int]:
    """Record an error on items claimed by ``worker``; returns (back to pending, failed).

    An item that has been claimed ``max_attempts`` times ends ``failed`` with its error; the
    others go back to ``pending`` to be tried again.
    """
    if not object_id:
        return 0, 0
    _index_nested_loops(conn)
    states = (
        conn.execute(
            text(
                """UPDATE lor.work_items w
               SET state = CASE WHEN w.attempts >= :max THEN 'failed' ELSE 'pending' END,
                   claimed_by = CASE WHEN w.attempts >= :max THEN w.claimed_by END,
                   last_error = k.error, lease_expires_at = NULL, updated_at = now()
               FROM unnest(CAST(:t AS integer[]), CAST(:o AS uuid[]), CAST(:e AS text[]))
                    AS k(tract_id, object_id, error)
               WHERE w.run_id = :run_id AND w.tract_id = k.tract_id AND w.object_id = k.object_id
                 AND w.state = (SELECT 'claimed') AND w.claimed_by = :worker
               RETURNING w.state"""
            ),
            {
                "run_id": run_id,
                "worker": worker,
                "max": max_attempts,
                "t": [int(t) for t in tract_id],
                "o": list(object_id),
                "e": [e[:MAX_ERROR_CHARS] for e in errors],
            },
        )
        .scalars()
        .all()
    )
    failed = sum(s == "failed" for s in states)
    return len(states) - failed, failed


def release_claims(
    conn: Connection,
    run_id: int,
    worker: str,
    tract_id: Sequence[int],
    object_id: Sequence[uuid.UUID],
) -> int:
    """Hand items claimed by ``worker`` back to pending at once, as if never claimed.

    For a worker that is interrupted (Ctrl-C, shutdown) before it processed them, so the
    work does not wait for the lease to expire and the attempt does not count.
    """
    if not object_id:
        return 0
    _index_nested_loops(conn)
    return conn.execute(
        text(
            """UPDATE lor.work_items w
               SET state = 'pending', attempts = greatest(w.attempts - 1, 0), claimed_by = NULL,
                   lease_expires_at = NULL, updated_at = now()
               FROM unnest(CAST(:t AS integer[]), CAST(:o AS uuid[])) AS k(tract_id, object_id)
               WHERE w.run_id = :run_id AND w.tract_id = k.tract_id AND w.object_id = k.object_id
                 AND w.state = (SELECT 'claimed') AND w.claimed_by = :worker"""
        ),
        {
            "run_id": run_id,
            "worker": worker,
            "t": [int(t) for t in tract_id],
            "o": list(object_id),
        },
    ).rowcount


def requeue_expired(conn: Connection, run_id: int | None = None) -> dict[int, int]:
    """Return expired claims to pending (or fail them after the run's max attempts).

    Returns {run id: items requeued}. Items whose completion is in flight right now are
    locked and skipped (``SKIP LOCKED``): the next sweep sees them done.
    """
    _index_nested_loops(conn)
    rows = conn.execute(
        text(
            """WITH picked AS (
                   SELECT w.tract_id, w.run_id, w.object_id FROM lor.work_items w
                   WHERE w.state = 'claimed' AND w.lease_expires_at < now()
                     AND (CAST(:run_id AS integer) IS NULL OR w.run_id = :run_id)
                   FOR UPDATE SKIP LOCKED)
               UPDATE lor.work_items w
               SET state = CASE WHEN w.attempts >= m.max_attempts THEN 'failed' ELSE 'pending' END,
                   last_error = format('lease expired while claimed by %s (attempt %s of %s)',
                                       w.claimed_by, w.attempts, m.max_attempts),
                   claimed_by = CASE WHEN w.attempts >= m.max_attempts THEN w.claimed_by END,
                   lease_expires_at = NULL, updated_at = now()
               FROM picked p,
                    LATERAL (SELECT coalesce(CAST(r.config ->> 'max_attempts' AS integer), :default_max)
                             AS max_attempts FROM lor.processing_runs r WHERE r.id = p.run_id) m
               WHERE w.tract_id = p.tract_id AND w.run_id = p.run_id AND w.object_id = p.object_id
               RETURNING w.run_id, w.state"""
        ),
        {"run_id": run_id, "default_max": DEFAULT_RUN_CONFIG["max_attempts"]},
    ).all()
    out: dict[int, int] = {}
    for rid, state in rows:
        if state == "pending":
            out[rid] = out.get(rid, 0) + 1
    return out
