"""Vectorized encoder for PostgreSQL's binary COPY format.

Building COPY rows in Python is the bottleneck of a naive loader (~1 µs per field). Here every
row of a chunk has the same byte layout (fixed-width scalars and fixed-length 1-D arrays), so
the whole chunk is one numpy structured array written with a single ``tobytes()``.
Format: https://www.postgresql.org/docs/current/sql-copy.html (binary format) and
``array_send`` for arrays.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

HEADER = b"PGCOPY\n\xff\r\n\x00" + (0).to_bytes(4, "big") + (0).to_bytes(4, "big")
TRAILER = (-1).to_bytes(2, "big", signed=True)

# PostgreSQL type OIDs for array element types.
_ELEMENT_OID = {"float4": 700, "float8": 701, "int2": 21, "int4": 23, "int8": 20}
_SCALAR_DTYPE = {
    "float4": ">f4",
    "float8": ">f8",
    "int2": ">i2",
    "int4": ">i4",
    "int8": ">i8",
    "uuid": "V16",
}


@dataclass(frozen=True)
class Field:
    """One COPY column: ``pg_type`` is a scalar type name; ``array_len`` > 0 makes it ``type[]``."""

    name: str
    pg_type: str
    array_len: int = 0


def _row_dtype(fields: Sequence[Field]) -> np.dtype:
    layout: list[tuple] = [("nfields", ">i2")]
    for f in fields:
        layout.append((f"{f.name}__len", ">i4"))
        if f.array_len:
            layout += [
                (f"{f.name}__head", ">i4", (5,)),  # ndim, has-null, element oid, dim, lower bound
                (
                    f"{f.name}__items",
                    [("len", ">i4"), ("val", _SCALAR_DTYPE[f.pg_type])],
                    (f.array_len,),
                ),
            ]
        else:
            layout.append((f.name, _SCALAR_DTYPE[f.pg_type]))
    return np.dtype(layout)


def _template(fields: Sequence[Field], dtype: np.dtype) -> np.ndarray:
    """One row with every length word and array header filled in; data left zero."""
    row = np.zeros((), dtype)
    row["nfields"] = len(fields)
    for f in fields:
        item = np.dtype(_SCALAR_DTYPE[f.pg_type]).itemsize
        if f.array_len:
            row[f"{f.name}__len"] = 20 + f.array_len * (4 + item)
            row[f"{f.name}__head"] = (1, 0, _ELEMENT_OID[f.pg_type], f.array_len, 1)
            row[f"{f.name}__items"]["len"] = item
        else:
            row[f"{f.name}__len"] = item
    return row


def encode_rows(
    fields: Sequence[Field], values: dict[str, np.ndarray], with_header: bool = True
) -> bytes:
    """Encode N rows; ``values[name]`` has shape (N,) or (N, array_len); uuids as (N, 16) uint8.

    Every row starts as a copy of a template row (all length words and array headers), so
    only the data fields are written per column.
    """
    n = len(values[fields[0].name])
    dtype = _row_dtype(fields)
    rows = np.empty(n, dtype)
    rows[...] = _template(fields, dtype)
    for f in fields:
        data = values[f.name]
        if f.array_len:
            if data.shape != (n, f.array_len):
                raise ValueError(f"{f.name}: expected shape {(n, f.array_len)}, got {data.shape}")
            rows[f"{f.name}__items"]["val"] = data
        elif f.pg_type == "uuid":
            rows[f.name] = np.ascontiguousarray(data, dtype=np.uint8).view("V16").reshape(n)
        else:
            rows[f.name] = data
    body = rows.tobytes()
    return HEADER + body + TRAILER if with_header else body
