"""The vectorized binary COPY encoder round-trips through a real PostgreSQL."""

from __future__ import annotations

import uuid

import numpy as np
import pytest
from sqlalchemy import text

from lor.db.catalog_store import copy_rows
from lor.db.copy_binary import CopyLayoutError, Field, UuidColumn, decode_array, encode_rows


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


def test_text_fields_and_aggregated_arrays_round_trip(engine) -> None:
    """Text of one length per chunk goes in by COPY; columns come back as one binary array
    each (``array_send(array_agg(...))``), decoded in shape, uuids as 16 bytes."""
    rng = np.random.default_rng(4)
    n = 30
    values = {
        "t": np.full(n, "héllo".encode()),
        "v": rng.normal(size=(n, 4)).astype(np.float32),
        "u": rng.integers(0, 255, (n, 16)).astype(np.uint8),
        "i": np.arange(n, dtype=np.int32),
    }
    fields = [Field("t", "text"), Field("v", "float4", 4), Field("u", "uuid"), Field("i", "int4")]
    with engine.begin() as conn:
        conn.execute(text("CREATE TEMP TABLE rt2 (t text, v real[], u uuid, i integer)"))
        copy_rows(conn, "rt2", encode_rows(fields, values), fields)
        assert conn.execute(text("SELECT DISTINCT t FROM rt2")).scalar_one() == "héllo"
        cursor = conn.connection.driver_connection.cursor()
        row = cursor.execute(
            "SELECT array_send(array_agg(v ORDER BY i)), array_send(array_agg(u ORDER BY i)), "
            "array_send(array_agg(i ORDER BY i)), array_send(ARRAY[1, NULL]::int[]) FROM rt2",
            binary=True,
        ).fetchone()
    np.testing.assert_array_equal(decode_array(row[0], "float4"), values["v"])
    ids = UuidColumn(decode_array(row[1], "uuid"))
    assert list(ids) == [uuid.UUID(bytes=b.tobytes()) for b in values["u"]]
    assert ids[3] == uuid.UUID(bytes=values["u"][3].tobytes()) and ids[[3, 1]] == [ids[3], ids[1]]
    np.testing.assert_array_equal(decode_array(row[2], "int4"), values["i"])
    with pytest.raises(CopyLayoutError):
        decode_array(row[3], "int4")  # a NULL element
    with pytest.raises(CopyLayoutError):
        decode_array(row[2], "float4")  # another element type
    with pytest.raises(ValueError, match="one length"):
        encode_rows([Field("t", "text")], {"t": np.array([b"a", b"bb"])})


@pytest.mark.parametrize("width", [0, 1, 7, 336])
def test_bytea_fields_and_aggregated_bytea_round_trip(engine, width: int) -> None:  # type: ignore[no-untyped-def]
    """Fixed-width bytea (params_rest): COPY in, ``array_send(array_agg(...))`` out; bytes
    ending in zeros survive (numpy's ``S`` strings would drop them)."""
    rng = np.random.default_rng(width)
    data = rng.integers(0, 255, (40, width)).astype(np.uint8)
    if width:
        data[:, -1] = 0
    fields = [Field("i", "int4"), Field("b", "bytea")]
    with engine.begin() as conn:
        conn.execute(text("CREATE TEMP TABLE rb (i integer, b bytea)"))
        copy_rows(
            conn, "rb", encode_rows(fields, {"i": np.arange(40, dtype=np.int32), "b": data}), fields
        )
        stored = conn.execute(text("SELECT b FROM rb ORDER BY i")).scalars().all()
        cursor = conn.connection.driver_connection.cursor()
        (payload,) = cursor.execute(
            "SELECT array_send(array_agg(b ORDER BY i)) FROM rb", binary=True
        ).fetchone()
    assert stored == [row.tobytes() for row in data]
    np.testing.assert_array_equal(decode_array(payload, "bytea"), data)
