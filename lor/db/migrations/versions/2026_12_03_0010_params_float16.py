"""Posterior parameters in fewer bytes: the redshift marginal float32, the rest float16.

See lor/db/sql/0010_params_float16.sql and lor/db/params_codec.py. ``params`` keeps the
entries the SQL redshift functions read (a gmm_flow array with D = 1, so they return the
same values bit for bit) and the new ``params_rest`` holds the others as float16. The
unique (tract_id, run_id, object_id) becomes (tract_id, object_id, run_id), which makes
ix_posteriors_tract_id_object_id redundant, and ix_posteriors_run_z_q50 goes (the
(run_id, tract_id, z_q50) index serves every query of the project that it served). The
upgrade converts every stored row with the codec (rows of another representation keep
their array whole, with an empty ``params_rest``); the downgrade joins them back into one
float32 ``params`` (the float16 entries keep their rounding) and restores the constraint,
the indexes and lor.run_posteriors.

Rows are rewritten in place by UPDATE, so the table holds the old row versions as dead
tuples until VACUUM (FULL, to give the space back) runs.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03 14:00:00.000000
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence

import numpy as np
from alembic import op
from sqlalchemy import Connection, text

from lor.db.catalog_store import copy_rows
from lor.db.copy_binary import Field, decode_array, encode_rows
from lor.db.migrate import read_sql
from lor.db.params_codec import join, split

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BATCH_ROWS = 20_000
STAGE = "lor_params_0010"


def _rewrite(
    conn: Connection,
    where: str,
    columns: dict[str, str],
    convert: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]],
    written: Sequence[Field],
) -> None:
    """Read the rows matching ``where`` in batches of :data:`BATCH_ROWS` (keyset order),
    convert their ``columns`` with ``convert`` and write the ``written`` fields back."""
    conn.execute(
        text(
            f"CREATE TEMP TABLE {STAGE} (tract_id integer, posterior_id uuid, "
            "params real[], params_rest bytea) ON COMMIT DROP"
        )
    )
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    widths = conn.execute(
        text(f"SELECT DISTINCT cardinality(params) FROM lor.posteriors WHERE {where}")
    ).scalars()
    for width in list(widths):
        last: tuple[int, uuid.UUID] = (-(2**31), uuid.UUID(int=0))
        while True:
            aggregates = ", ".join(f"array_send(array_agg({c}))" for c in columns)
            found, *arrays = cursor.execute(
                f"""SELECT count(*), {aggregates}, max(tract_id),
                           (array_agg(posterior_id))[count(*)]
                    FROM (SELECT * FROM lor.posteriors
                          WHERE {where} AND cardinality(params) = %(w)s
                            AND (tract_id, posterior_id) > (%(t)s, CAST(%(p)s AS uuid))
                          ORDER BY tract_id, posterior_id LIMIT %(n)s) s""",
                {"w": width, "t": last[0], "p": last[1], "n": BATCH_ROWS},
                binary=True,
            ).fetchone()
            if not found:
                break
            *arrays, last_tract, last_id = arrays
            last = (int(last_tract), last_id)
            values = {
                name: decode_array(data, pg_type)
                for (name, pg_type), data in zip(columns.items(), arrays, strict=True)
            }
            out = {"tract_id": values["tract_id"], "posterior_id": values["posterior_id"]}
            out |= convert(values)
            fields = [Field("tract_id", "int4"), Field("posterior_id", "uuid"), *written]
            fields = [
                Field(f.name, f.pg_type, out[f.name].shape[1]) if f.pg_type == "float4" else f
                for f in fields
            ]
            conn.execute(text(f"DELETE FROM {STAGE}"))
            copy_rows(conn, STAGE, encode_rows(fields, out), fields)
            sets = ", ".join(f"{f.name} = s.{f.name}" for f in written)
            conn.execute(
                text(
                    f"""UPDATE lor.posteriors p SET {sets} FROM {STAGE} s
                        WHERE p.tract_id = s.tract_id AND p.posterior_id = s.posterior_id"""
                )
            )
    conn.execute(text(f"DROP TABLE {STAGE}"))


def _split(values: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    z, rest = split(values["params"], "gmm_flow", "1")
    return {"params": z, "params_rest": rest}


def _join(values: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {"params": join(values["params"], values["params_rest"])}


def upgrade() -> None:
    op.execute(read_sql("0010_params_float16.sql"))
    _rewrite(
        op.get_bind(),
        "params IS NOT NULL AND representation_name = 'gmm_flow' AND representation_version = '1'",
        {"tract_id": "int4", "posterior_id": "uuid", "params": "float4"},
        _split,
        [Field("params", "float4"), Field("params_rest", "bytea")],
    )
    # other representations keep their whole array, marked by an empty params_rest
    op.execute(
        "UPDATE lor.posteriors SET params_rest = ''::bytea "
        "WHERE params IS NOT NULL AND params_rest IS NULL"
    )


def downgrade() -> None:
    _rewrite(
        op.get_bind(),
        "octet_length(params_rest) > 0",
        {"tract_id": "int4", "posterior_id": "uuid", "params": "float4", "params_rest": "bytea"},
        _join,
        [Field("params", "float4")],
    )
    op.execute(read_sql("0010_params_float16_down.sql"))
