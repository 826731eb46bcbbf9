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

import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from psycopg.errors import UniqueViolation
from sqlalchemy import Connection, text

from lor.db.catalog_store import copy_rows
from lor.db.copy_binary import Field, UuidColumn, decode_array, encode_rows
from lor.db.models import METHODS
from lor.db.params_codec import join, split
from lor.db.run_store import DEFAULT_RUN_CONFIG
from lor.errors import NotFoundError
from lor.posteriors.base import SUMMARY_COLUMNS

#: Namespace of posterior ids: ``uuid5(POSTERIOR_NAMESPACE, f"{run_id}:{object_id}")``.
POSTERIOR_NAMESPACE = uuid.UUID("6f0b4a52-3c1e-5d8e-9a57-1c0e6e2b7d41")
STAGE_TABLE = "lor_posterior_stage"
KEYS_TABLE = "lor_item_keys"
MAX_ERROR_CHARS = 2000


@dataclass
class PosteriorRows:
    """Column arrays of posterior rows to store for one batch (per-batch values as scalars)."""

    tract_id: np.ndarray  # (N,) int32
    object_id: Sequence[uuid.UUID]
    input_hash: Sequence[uuid.UUID]
    params: np.ndarray  # (N, P) float32; rows that are all NaN are stored as NULL
    ood_flags: np.ndarray  # (N,) int32
    method: np.ndarray  # (N,) str, one of METHODS
    representation_name: str
    representation_version: str
    summaries: dict[str, np.ndarray] = field(default_factory=dict)  # NaN is stored as NULL
    parent_posterior_id: Sequence[uuid.UUID] | None = None  # None: stored as NULL (not reprocess)


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


_CLAIM = """WITH picked AS (
        SELECT tract_id, object_id FROM lor.work_items
        WHERE run_id = %(run_id)s AND state = 'pending'
        LIMIT %(size)s FOR UPDATE SKIP LOCKED),
    claimed AS (
        UPDATE lor.work_items w
        SET state = 'claimed', attempts = w.attempts + 1, claimed_by = %(worker)s,
            lease_expires_at = now() + make_interval(secs => %(lease)s), updated_at = now()
        FROM picked p
        WHERE w.run_id = %(run_id)s AND w.tract_id = p.tract_id AND w.object_id = p.object_id
        RETURNING w.tract_id, w.object_id, w.parent_posterior_id)
    SELECT (SELECT count(*) FROM claimed), {columns}
    FROM claimed c
    JOIN lor.objects o ON o.tract_id = c.tract_id AND o.object_id = c.object_id {join}"""
#: The measurements of ``lor.objects`` (alias ``o``) a processor reads, by
#: :class:`lor.runs.processing.ObjectBatch` field: (SQL, binary type). Claims here and the
#: prior-chunk loader (:mod:`lor.db.prior_chunk_store`) read the same columns.
OBJECT_PHOTOMETRY_COLUMNS = {
    "flux": ("o.flux", "float4"),
    "flux_err": ("o.flux_err", "float4"),
    "missing_mask": ("o.missing_mask", "int2"),
    "nondetection_mask": ("o.nondetection_mask", "int2"),
    "ebv": ("coalesce(o.ebv, 'NaN')", "float4"),
}
_OBJECT_COLUMNS = {
    "tract_id": ("c.tract_id", "int4"),
    "object_id": ("c.object_id", "uuid"),
    **OBJECT_PHOTOMETRY_COLUMNS,
    "input_hash": ("o.input_hash", "uuid"),
}
_PARENT_COLUMNS = {
    "parent_posterior_id": ("c.parent_posterior_id", "uuid"),
    "parent_params": ("p.params", "float4"),
    "parent_params_rest": ("p.params_rest", "bytea"),  # joined into parent_params on read
    "parent_ood_flags": ("p.ood_flags", "int4"),
}
_PARENT_JOIN = """
    JOIN lor.posteriors p
        ON p.tract_id = c.tract_id AND p.posterior_id = c.parent_posterior_id
        AND p.params IS NOT NULL"""


def claim_batch(
    conn: Connection, run_id: int, worker: str, size: int, lease_s: float
) -> dict[str, Any]:
    """Claim up to ``size`` pending items of a run for ``worker`` under a lease of ``lease_s``
    and load what processing them needs, in one statement.

    Returns column arrays, one row per claimed item: ``tract_id``, ``object_id`` and the
    object version's measurements (E(B-V) NULL -> NaN); for a reprocess run also
    ``parent_posterior_id`` and that posterior's ``parent_params`` and
    ``parent_ood_flags``; ids as :class:`UuidColumn`. Each column travels as one binary
    array (:func:`decode_array`): parsing a ``real[]`` of parameters value by value, or a
    row per message, cost more than the claim itself.

    Raises
    ------
    NotFoundError
        If a claimed object version or parent posterior (with params) is missing; the
        caller's transaction then rolls the claim back.
    """
    _index_nested_loops(conn)
    reprocess = conn.execute(
        text("SELECT kind = 'reprocess' FROM lor.processing_runs WHERE id = :r"), {"r": run_id}
    ).scalar()
    columns = _OBJECT_COLUMNS | (_PARENT_COLUMNS if reprocess else {})
    query = _CLAIM.format(
        columns=", ".join(f"array_send(array_agg({sql}))" for sql, _ in columns.values()),
        join=_PARENT_JOIN if reprocess else "",
    )
    params = {"run_id": run_id, "size": size, "worker": worker, "lease": float(lease_s)}
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    claimed, *arrays = cursor.execute(query, params, binary=True).fetchone()
    found = 0 if arrays[0] is None else len(decode_array(arrays[0], "int4"))
    if found < claimed:
        raise NotFoundError(
            f"{claimed - found} claimed object versions or parent posteriors are missing"
        )
    if not claimed:
        return {name: np.zeros(0) for name in columns if name != "parent_params_rest"}
    out: dict[str, Any] = {}
    for (name, (_, pg_type)), data in zip(columns.items(), arrays, strict=True):
        values = decode_array(data, pg_type)
        out[name] = UuidColumn(values) if pg_type == "uuid" else values
    if "parent_params_rest" in out:
        out["parent_params"] = join(out["parent_params"], out.pop("parent_params_rest"))
    return out


def posterior_ids(run_id: int, object_ids: Sequence[uuid.UUID]) -> list[uuid.UUID]:
    """``uuid5(POSTERIOR_NAMESPACE, f"{run_id}:{object_id}")`` of each object version."""
    return list(UuidColumn(_posterior_id_bytes(run_id, _uuid_bytes(object_ids))))


def _uuid_bytes(ids: Sequence[uuid.UUID]) -> np.ndarray:
    if isinstance(ids, UuidColumn):
        return ids.raw
    return np.frombuffer(b"".join(u.bytes for u in ids), np.uint8).reshape(len(ids), 16)


_HEX = np.frombuffer(b"0123456789abcdef", np.uint8)
_UUID_DIGITS = np.array([i for i in range(36) if i not in (8, 13, 18, 23)])


def _posterior_id_bytes(run_id: int, object_ids: np.ndarray) -> np.ndarray:
    """:func:`posterior_ids` of (N, 16) uint8 object ids as (N, 16) uint8: the names are
    built in numpy and only the SHA-1 runs per object (3x faster than ``uuid.uuid5``)."""
    n = len(object_ids)
    text_ids = np.full((n, 36), ord("-"), np.uint8)  # str(uuid): 8-4-4-4-12 lowercase hex
    digits = np.empty((n, 32), np.uint8)
    digits[:, 0::2], digits[:, 1::2] = _HEX[object_ids >> 4], _HEX[object_ids & 15]
    text_ids[:, _UUID_DIGITS] = digits
    prefix = np.frombuffer(POSTERIOR_NAMESPACE.bytes + f"{run_id}:".encode(), np.uint8)
    names = np.concatenate([np.broadcast_to(prefix, (n, len(prefix))), text_ids], axis=1)
    width, data = names.shape[1], names.tobytes()
    digest = b"".join(
        hashlib.sha1(data[i : i + width]).digest()[:16] for i in range(0, len(data), width)
    )
    out = np.frombuffer(digest, np.uint8).reshape(n, 16).copy()
    out[:, 6] = (out[:, 6] & 0x0F) | 0x50  # version 5
    out[:, 8] = (out[:, 8] & 0x3F) | 0x80  # RFC 4122 variant
    return out


def _posterior_values(run_id: int, rows: PosteriorRows) -> dict[str, np.ndarray]:
    """The column arrays of posterior rows as COPY writes them (uuids as (N, 16) uint8)."""
    n = len(rows.object_id)
    params = np.asarray(rows.params, np.float32).reshape(n, -1)
    has_params = ~np.all(np.isnan(params), axis=1) if params.shape[1] else np.zeros(n, bool)
    z, rest = split(params[has_params], rows.representation_name, rows.representation_version)
    z_all = np.zeros((n, z.shape[1]), np.float32)
    rest_all = np.zeros((n, rest.shape[1]), np.uint8)
    z_all[has_params], rest_all[has_params] = z, rest
    object_id = _uuid_bytes(rows.object_id)
    values: dict[str, np.ndarray] = {
        "tract_id": np.asarray(rows.tract_id, np.int32),
        "object_id": object_id,
        "posterior_id": _posterior_id_bytes(run_id, object_id),
        "input_hash": _uuid_bytes(rows.input_hash),
        "has_params": has_params.astype(np.int16),
        "params": z_all,
        "params_rest": rest_all,
        "ood_flags": np.asarray(rows.ood_flags, np.int32),
        "method_code": np.array([METHODS.index(str(m)) for m in rows.method], np.int16),
    }
    for col in SUMMARY_COLUMNS:
        values[col] = np.asarray(rows.summaries.get(col, np.full(n, np.nan)), np.float32)
    if rows.parent_posterior_id is not None:  # not copied (left NULL) outside reprocess runs
        values["parent_posterior_id"] = _uuid_bytes(rows.parent_posterior_id)
    return values


def _copy_posteriors(
    conn: Connection, run_id: int, worker: str, rows: PosteriorRows, values: dict[str, np.ndarray]
) -> int:
    """Binary COPY of posterior rows straight into ``lor.posteriors``; returns the rows written.

    A NULL (no params, a NaN summary) is written by leaving its column out, and text must
    have one length per COPY, so rows are split by method and by which columns are NULL:
    one or two COPYs for a batch. Skips the stage table and ``INSERT ... SELECT``, so it
    must only write rows no posterior exists for (see :func:`complete_batch`).
    """
    n = len(values["tract_id"])
    present = np.column_stack(
        [values["has_params"] == 1] + [np.isfinite(values[c]) for c in SUMMARY_COLUMNS]
    )
    layout = (present.astype(np.int64) << np.arange(present.shape[1])).sum(axis=1)
    key = values["method_code"].astype(np.int64) << present.shape[1] | layout
    _, first, which = np.unique(key, return_index=True, return_inverse=True)
    constant = {
        "run_id": np.full(n, run_id, np.int32),
        "representation_name": np.full(n, rows.representation_name.encode()),
        "representation_version": np.full(n, rows.representation_version.encode()),
        "worker_host": np.full(n, worker.encode()),
    }
    for g, row in enumerate(first):
        sel = which == g
        has_params, *has_summary = present[row]
        code = values["method_code"][row]
        fields = [
            Field("tract_id", "int4"),
            Field("posterior_id", "uuid"),
            Field("run_id", "int4"),
            Field("object_id", "uuid"),
            Field("representation_name", "text"),
            Field("representation_version", "text"),
            *(
                [
                    Field("params", "float4", values["params"].shape[1]),
                    Field("params_rest", "bytea"),
                ]
                if has_params
                else []
            ),
            *(Field(c, "float4") for c, ok in zip(SUMMARY_COLUMNS, has_summary, strict=True) if ok),
            Field("ood_flags", "int4"),
            Field("method", "text"),
            *([Field("parent_posterior_id", "uuid")] if "parent_posterior_id" in values else []),
            Field("input_hash", "uuid"),
            Field("worker_host", "text"),
        ]
        part = {f.name: (values | constant)[f.name][sel] for f in fields if f.name != "method"}
        part["method"] = np.full(int(sel.sum()), METHODS[code].encode())
        copy_rows(conn, "lor.posteriors", encode_rows(fields, part), fields)
    return n


def _stage_posteriors(conn: Connection, values: dict[str, np.ndarray]) -> None:
    """Binary COPY one batch into the session's temporary stage table (emptied at commit)."""
    summaries = ",\n".join(f"{c} real" for c in SUMMARY_COLUMNS)
    conn.execute(
        text(
            f"""CREATE TEMP TABLE IF NOT EXISTS {STAGE_TABLE} (
                   tract_id integer, object_id uuid, posterior_id uuid, input_hash uuid,
                   has_params smallint, params real[], params_rest bytea, ood_flags integer,
                   method_code smallint,
                   parent_posterior_id uuid, {summaries}) ON COMMIT DELETE ROWS"""
        )
    )
    conn.execute(text(f"DELETE FROM {STAGE_TABLE}"))
    n_params = values["params"].shape[1]
    fields = [
        Field("tract_id", "int4"),
        Field("object_id", "uuid"),
        Field("posterior_id", "uuid"),
        Field("input_hash", "uuid"),
        Field("has_params", "int2"),
        *([Field("params", "float4", n_params), Field("params_rest", "bytea")] if n_params else []),
        Field("ood_flags", "int4"),
        Field("method_code", "int2"),
        *(Field(c, "float4") for c in SUMMARY_COLUMNS),
        *([Field("parent_posterior_id", "uuid")] if "parent_posterior_id" in values else []),
    ]
    copy_rows(
        conn, STAGE_TABLE, encode_rows(fields, {f.name: values[f.name] for f in fields}), fields
    )


def _insert_new_posteriors(
    conn: Connection, run_id: int, worker: str, rows: PosteriorRows, values: dict[str, np.ndarray]
) -> int:
    """Write posterior rows through the stage table, skipping any that exist already."""
    _stage_posteriors(conn, values)
    cols = ", ".join(SUMMARY_COLUMNS)
    nulled = ", ".join(f"NULLIF(s.{c}, 'NaN')" for c in SUMMARY_COLUMNS)
    return conn.execute(
        text(
            f"""INSERT INTO lor.posteriors (tract_id, posterior_id, run_id, object_id,
                    representation_name, representation_version, params, params_rest, {cols},
                    ood_flags, method, parent_posterior_id, input_hash, worker_host)
                SELECT s.tract_id, s.posterior_id, :run_id, s.object_id, :rep_name,
                    :rep_version, CASE WHEN s.has_params = 1 THEN s.params END,
                    CASE WHEN s.has_params = 1 THEN s.params_rest END, {nulled},
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


def _mark_done(
    conn: Connection, run_id: int, worker: str, tract_id: np.ndarray, object_id: np.ndarray
) -> np.ndarray:
    """Mark items done where ``worker`` still holds them; which of them it did.

    The keys go to a temporary table by binary COPY, as the stage does: joined to an
    ``unnest`` of key arrays the planner loops the other way round for a new run, whose
    items it has no statistics for (1 s per 2000 items).
    """
    n = len(object_id)
    conn.execute(
        text(
            f"""CREATE TEMP TABLE IF NOT EXISTS {KEYS_TABLE} (tract_id integer, object_id uuid)
                ON COMMIT DELETE ROWS"""
        )
    )
    conn.execute(text(f"DELETE FROM {KEYS_TABLE}"))
    fields = [Field("tract_id", "int4"), Field("object_id", "uuid")]
    keys = {"tract_id": tract_id, "object_id": object_id}
    copy_rows(conn, KEYS_TABLE, encode_rows(fields, keys), fields)
    count, missed = conn.execute(
        text(
            f"""WITH done AS (
                   UPDATE lor.work_items w
                   SET state = 'done', lease_expires_at = NULL, updated_at = now()
                   FROM {KEYS_TABLE} k
                   WHERE w.run_id = :run_id AND w.tract_id = k.tract_id
                     AND w.object_id = k.object_id
                     AND w.state = (SELECT 'claimed') AND w.claimed_by = :worker
                   RETURNING w.object_id)
               SELECT count(*), CASE WHEN count(*) < :n THEN array_agg(object_id) END FROM done"""
        ),
        {"run_id": run_id, "worker": worker, "n": n},
    ).one()
    if count == n:
        return np.ones(n, bool)
    done = {o.bytes for o in missed or []}  # rare: some items are no longer ours
    return np.array([bytes(o) in done for o in object_id], bool)


def complete_batch(conn: Connection, run_id: int, worker: str, rows: PosteriorRows) -> int:
    """Write posteriors and mark their items done, for items still claimed by ``worker``.

    Returns the number of posteriors written. Items another worker holds now (this worker's
    lease expired and they were claimed again) or that are already done are skipped, so a
    late or repeated completion writes nothing twice. Posterior rows are only ever inserted.

    A posterior is written only in the transaction that marks its item done, so an item this
    worker still held has none yet: the rows go straight into ``lor.posteriors`` by binary
    COPY. Should one exist after all (written outside the queue), the COPY's unique violation
    rolls back to a savepoint and the rows go through the stage table with ``ON CONFLICT DO
    NOTHING`` instead.
    """
    if not rows.object_id:
        return 0
    _index_nested_loops(conn)
    values = _posterior_values(run_id, rows)
    mine = _mark_done(conn, run_id, worker, values["tract_id"], values["object_id"])
    if not mine.any():
        return 0
    values = {k: v[mine] for k, v in values.items()}
    try:
        with conn.begin_nested():
            return _copy_posteriors(conn, run_id, worker, rows, values)
    except UniqueViolation:
        return _insert_new_posteriors(conn, run_id, worker, rows, values)


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


def requeue_expired(
    conn: Connection,
    run_id: int | None = None,
    dead_after_s: float | None = None,
    dead_holders: Sequence[str] = (),
) -> dict[int, int]:
    """Return claims whose holder is gone to pending (or fail them after max attempts).

    A holder is gone when its lease expired, when it has not beaten in ``lor.workers`` for
    ``dead_after_s`` (None: leases only), or when the caller knows it is dead
    (``dead_holders``: e.g. a process of this host that no longer exists). Returns {run id:
    items requeued}. Items whose completion is in flight right now are locked and skipped
    (``SKIP LOCKED``): the next sweep sees them done.
    """
    _index_nested_loops(conn)
    rows = conn.execute(
        text(
            """WITH dead AS (
                   SELECT k.name, format('no heartbeat from %s for %s s', k.name,
                              round(extract(epoch FROM now() - k.heartbeat_at))) AS why,
                          2 AS rank
                   FROM lor.workers k
                   WHERE CAST(:dead_after AS double precision) IS NOT NULL
                     AND k.heartbeat_at < now() - make_interval(secs => :dead_after)
                   UNION ALL
                   SELECT h, format('%s is no longer running', h), 1
                   FROM unnest(CAST(:dead AS text[])) AS h),
               picked AS (
                   SELECT w.tract_id, w.run_id, w.object_id,
                          coalesce((SELECT d.why FROM dead d WHERE d.name = w.claimed_by
                                    ORDER BY d.rank LIMIT 1),
                                   format('lease expired while claimed by %s', w.claimed_by))
                            AS why
                   FROM lor.work_items w
                   WHERE w.state = 'claimed'
                     AND (CAST(:run_id AS integer) IS NULL OR w.run_id = :run_id)
                     AND (w.lease_expires_at < now()
                          OR w.claimed_by IN (SELECT name FROM dead))
                   FOR UPDATE OF w SKIP LOCKED)
               UPDATE lor.work_items w
               SET state = CASE WHEN w.attempts >= m.max_attempts THEN 'failed' ELSE 'pending' END,
                   last_error = format('%s (attempt %s of %s)', p.why, w.attempts,
                                       m.max_attempts),
                   claimed_by = CASE WHEN w.attempts >= m.max_attempts THEN w.claimed_by END,
                   lease_expires_at = NULL, updated_at = now()
               FROM picked p,
                    LATERAL (SELECT coalesce(CAST(r.config ->> 'max_attempts' AS integer), :default_max)
                             AS max_attempts FROM lor.processing_runs r WHERE r.id = p.run_id) m
               WHERE w.tract_id = p.tract_id AND w.run_id = p.run_id AND w.object_id = p.object_id
               RETURNING w.run_id, w.state"""
        ),
        {
            "run_id": run_id,
            "default_max": DEFAULT_RUN_CONFIG["max_attempts"],
            "dead_after": dead_after_s,
            "dead": list(dead_holders),
        },
    ).all()
    out: dict[int, int] = {}
    for rid, state in rows:
        if state == "pending":
            out[rid] = out.get(rid, 0) + 1
    return out
