"""Prior-chunk slice of the store: the set-based work of prior-only reprocess runs.

A prior change updates each stored posterior of the parent run from its stored parameters
and the two priors alone (:mod:`lor.loop.prior_chunks`), so such a run has no
per-object work items: queueing, claiming and completing one cost PostgreSQL three row
writes per object, more than the new posterior row itself (measured on 2e4 objects:
129 us to queue, 42 to claim, 17 to mark done, 36 to COPY the new row). Its work is
``lor.prior_chunks``: ranges of the parent run's object ids, a few per tract. A worker takes
a range with ``FOR UPDATE SKIP LOCKED`` and, in that one transaction, reads the parent
posteriors of the range (one statement, binary arrays), writes the new rows by binary COPY
and marks the range done. A worker that dies rolls back, so the range is pending again
without a lease, and the deterministic posterior ids keep every object to one row.

Functions take an open ``Connection`` inside the caller's transaction.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, text

from lor.db.copy_binary import UuidColumn, decode_array
from lor.db.params_codec import join
from lor.db.queue_store import (
    MAX_ERROR_CHARS,
    OBJECT_PHOTOMETRY_COLUMNS,
    PosteriorRows,
    _copy_posteriors,
    _posterior_values,
)
from lor.errors import NotFoundError

STATES = ("pending", "done", "failed")


@dataclass(frozen=True)
class Chunk:
    """One range of a prior-only reprocess run: the parent's posteriors with params whose
    object ids lie in ``[first_object_id, last_object_id]`` of a tract."""

    run_id: int
    tract_id: int
    chunk: int
    first_object_id: uuid.UUID
    last_object_id: uuid.UUID
    objects: int


def enqueue_chunks(conn: Connection, run_id: int, parent_run_id: int, chunk_objects: int) -> int:
    """Queue every posterior with params of the parent run as ranges of ``chunk_objects``
    object ids per tract (one INSERT ... SELECT); returns the objects queued.

    uuids have no ``min``/``max`` aggregate: their text in collation "C" sorts as the bytes do.
    """
    return int(
        conn.execute(
            text(
                """WITH numbered AS (
                       SELECT tract_id, object_id,
                              (row_number() OVER (PARTITION BY tract_id ORDER BY object_id) - 1)
                                / :size AS chunk
                       FROM lor.posteriors WHERE run_id = :parent AND params IS NOT NULL),
                   queued AS (
                       INSERT INTO lor.prior_chunks (run_id, tract_id, chunk, first_object_id,
                                                     last_object_id, objects)
                       SELECT :run_id, tract_id, chunk,
                              CAST(min(CAST(object_id AS text) COLLATE "C") AS uuid),
                              CAST(max(CAST(object_id AS text) COLLATE "C") AS uuid), count(*)
                       FROM numbered GROUP BY tract_id, chunk
                       ON CONFLICT DO NOTHING
                       RETURNING objects)
                   SELECT coalesce(sum(objects), 0) FROM queued"""
            ),
            {"run_id": run_id, "parent": parent_run_id, "size": int(chunk_objects)},
        ).scalar_one()
    )


TAKE_SQL = """SELECT tract_id, chunk, first_object_id, last_object_id, objects
               FROM lor.prior_chunks WHERE run_id = :r AND state = 'pending'
               ORDER BY tract_id, chunk LIMIT 1 FOR UPDATE SKIP LOCKED"""
"""How a lane takes its next range (``:r`` the run), also what ``lor.bench.profile`` plans."""


def take_chunk(conn: Connection, run_id: int) -> Chunk | None:
    """Lock one pending range of a run for this transaction (others skip it), or None."""
    row = conn.execute(
        text(TAKE_SQL),
        {"r": run_id},
    ).one_or_none()
    return None if row is None else Chunk(run_id, *row)


_PARENT_COLUMNS = {
    "tract_id": ("p.tract_id", "int4"),
    "object_id": ("p.object_id", "uuid"),
    "input_hash": ("p.input_hash", "uuid"),
    "parent_posterior_id": ("p.posterior_id", "uuid"),
    "parent_params": ("p.params", "float4"),
    "parent_params_rest": ("p.params_rest", "bytea"),  # joined into parent_params on read
    "parent_ood_flags": ("p.ood_flags", "int4"),
}
_OBJECT_COLUMNS = OBJECT_PHOTOMETRY_COLUMNS


def parents_query(
    parent_run_id: int, chunk: Chunk, photometry: bool = False
) -> tuple[str, dict[str, Any]]:
    """The statement (psycopg ``%(name)s`` style) and parameters of :func:`load_parents`."""
    columns = _PARENT_COLUMNS | (_OBJECT_COLUMNS if photometry else {})
    join = (
        "JOIN lor.objects o ON o.tract_id = p.tract_id AND o.object_id = p.object_id"
        if photometry
        else ""
    )
    aggregates = ", ".join(f"array_send(array_agg({sql}))" for sql, _ in columns.values())
    sql = f"""SELECT count(*), {aggregates}
            FROM lor.posteriors p {join}
            WHERE p.run_id = %(parent)s AND p.tract_id = %(tract)s AND p.params IS NOT NULL
              AND p.object_id BETWEEN %(first)s AND %(last)s"""
    params = {
        "parent": parent_run_id,
        "tract": chunk.tract_id,
        "first": chunk.first_object_id,
        "last": chunk.last_object_id,
    }
    return sql, params


def load_parents(
    conn: Connection, parent_run_id: int, chunk: Chunk, photometry: bool = False
) -> dict[str, Any]:
    """The parent posteriors of a range (and, with ``photometry``, their objects'
    measurements) as column arrays in one statement; uuids as :class:`UuidColumn`.

    Raises
    ------
    NotFoundError
        If the range holds fewer posteriors with params than were queued.
    """
    columns = _PARENT_COLUMNS | (_OBJECT_COLUMNS if photometry else {})
    sql, params = parents_query(parent_run_id, chunk, photometry)
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    found, *arrays = cursor.execute(sql, params, binary=True).fetchone()
    if found != chunk.objects:
        raise NotFoundError(
            f"range {chunk.chunk} of tract {chunk.tract_id} holds {found} parent posteriors "
            f"of run {parent_run_id}, {chunk.objects} were queued"
        )
    out: dict[str, Any] = {}
    for (name, (_, pg_type)), data in zip(columns.items(), arrays, strict=True):
        values = decode_array(data, pg_type)
        out[name] = UuidColumn(values) if pg_type == "uuid" else values
    if "parent_params_rest" in out:
        out["parent_params"] = join(out["parent_params"], out.pop("parent_params_rest"))
    return out


def load_objects(conn: Connection, tract_id: int, object_ids: UuidColumn) -> dict[str, Any]:
    """The measurements of a few objects of a tract, in the order of ``object_ids`` (the rows
    of a range that need the photometry path).

    Raises
    ------
    NotFoundError
        If an object version is missing.
    """
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    found, *arrays = cursor.execute(
        f"""SELECT count(*), {
            ", ".join(
                f"array_send(array_agg({sql} ORDER BY k.i))" for sql, _ in _OBJECT_COLUMNS.values()
            )
        }
            FROM unnest(CAST(%(ids)s AS uuid[])) WITH ORDINALITY AS k(object_id, i)
            JOIN lor.objects o ON o.tract_id = %(tract)s AND o.object_id = k.object_id""",
        {"ids": list(object_ids), "tract": int(tract_id)},
        binary=True,
    ).fetchone()
    if found != len(object_ids):
        raise NotFoundError(
            f"{len(object_ids) - found} object versions of tract {tract_id} missing"
        )
    return {
        name: decode_array(data, pg_type)
        for (name, (_, pg_type)), data in zip(_OBJECT_COLUMNS.items(), arrays, strict=True)
    }


def store_chunk(conn: Connection, chunk: Chunk, worker: str, rows: PosteriorRows) -> int:
    """Write a range's new posteriors by binary COPY and mark the range done; the rows
    written. Only in the transaction that took the range, which no one else can have
    stored: a worker that stored it committed its done mark with the rows."""
    written = _copy_posteriors(
        conn, chunk.run_id, worker, rows, _posterior_values(chunk.run_id, rows)
    )
    done = conn.execute(
        text(
            """UPDATE lor.prior_chunks
               SET state = 'done', attempts = attempts + 1, done_by = :w, last_error = NULL,
                   updated_at = now()
               WHERE run_id = :r AND tract_id = :t AND chunk = :c AND state = 'pending'"""
        ),
        {"r": chunk.run_id, "t": chunk.tract_id, "c": chunk.chunk, "w": worker},
    ).rowcount
    if done != 1:
        raise NotFoundError(f"range {chunk.chunk} of tract {chunk.tract_id} is not pending")
    return written


def fail_chunk(conn: Connection, chunk: Chunk, error: str, max_attempts: int) -> str | None:
    """Record a failed attempt on a range: pending again, or ``failed`` after
    ``max_attempts``; its new state. None when the range is no longer pending, or another
    transaction holds it (it took the range once this one let go: its attempt counts)."""
    return conn.execute(
        text(
            """UPDATE lor.prior_chunks
               SET attempts = attempts + 1, last_error = :e, updated_at = now(),
                   state = CASE WHEN attempts + 1 >= :max THEN 'failed' ELSE 'pending' END
               WHERE (run_id, tract_id, chunk) IN (
                   SELECT run_id, tract_id, chunk FROM lor.prior_chunks
                   WHERE run_id = :r AND tract_id = :t AND chunk = :c AND state = 'pending'
                   FOR UPDATE SKIP LOCKED)
               RETURNING state"""
        ),
        {
            "r": chunk.run_id, "t": chunk.tract_id, "c": chunk.chunk,
            "e": error[:MAX_ERROR_CHARS], "max": int(max_attempts),
        },
    ).scalar_one_or_none()  # fmt: skip


def object_counts(conn: Connection, run_id: int) -> dict[str, int]:
    """Objects of a run's ranges by state (an in-flight range counts as pending)."""
    rows = conn.execute(
        text(
            """SELECT state, sum(objects) FROM lor.prior_chunks WHERE run_id = :r
               GROUP BY state"""
        ),
        {"r": run_id},
    ).all()
    return {state: int(n) for state, n in rows}


def pending_chunks(conn: Connection, run_id: int) -> int:
    """Pending ranges of a run."""
    return conn.execute(
        text("SELECT count(*) FROM lor.prior_chunks WHERE run_id = :r AND state = 'pending'"),
        {"r": run_id},
    ).scalar_one()
