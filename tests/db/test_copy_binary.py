"""The vectorized binary COPY encoder round-trips through a real PostgreSQL."""

from __future__ import annotations

import uuid

import numpy as np
from sqlalchemy import text

from lor.db.catalog_store import copy_rows
from lor.db.copy_binary import Field, encode_rows


def test_round_trip(engine) -> None:
    rng = np.random.default_rng(3)
    n = 50
    values = {
        "a": rng.integers(-(2**62), 2**62, n),
        "b": rng.normal(size=n),
        "c": rng.normal(size=(n, 3)).astype(np.float32),
        "d": rng.integers(0, 255, (n, 16)).astype(np.uint8),
        "e": rng.integers(-30000, 30000, n).astype(np.int16),
    }
    values["c"][0, 1] = np.nan
    fields = [
        Field("a", "int8"),
        Field("b", "float8"),
        Field("c", "float4", 3),
        Field("d", "uuid"),
        Field("e", "int2"),
    ]
    with engine.begin() as conn:
        conn.execute(
            text(
                "CREATE TEMP TABLE rt (a bigint, b double precision, c real[], d uuid, e smallint)"
            )
        )
        copy_rows(conn, "rt", encode_rows(fields, values), fields)
        rows = conn.execute(text("SELECT a, b, c, d, e FROM rt")).all()
    assert len(rows) == n
    for i, row in enumerate(rows):
        assert row.a == values["a"][i] and row.b == values["b"][i] and row.e == values["e"][i]
        np.testing.assert_array_equal(np.array(row.c, np.float32), values["c"][i])
        assert row.d == uuid.UUID(bytes=values["d"][i].tobytes())
