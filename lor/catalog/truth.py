"""``lor truth``: load known redshifts (simulation truth, spectroscopy) into ``lor.truth``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sqlalchemy import Engine

from lor.catalog.files import CatalogReader
from lor.db.truth_store import load_truth
from lor.errors import IngestError

CHUNK_ROWS = 200_000


def ingest_truth(
    engine: Engine,
    path: Path,
    source: str | None = None,
    id_column: str = "objectId",
    z_column: str = "redshift",
    fmt: str | None = None,
) -> int:
    """Load a file's (id, redshift) columns, one transaction; returns rows loaded.

    Rows with a non-finite or negative redshift are refused as a whole file (truth with holes
    would bias every check made against it).
    """
    path = Path(path)
    loaded = 0
    with CatalogReader(path, fmt) as reader, engine.begin() as conn:
        reader.require([id_column, z_column])
        for chunk in reader.chunks([id_column, z_column], CHUNK_ROWS):
            ids = chunk.columns[id_column]
            z = np.asarray(chunk.columns[z_column], np.float64)
            if ids.dtype.kind not in "iu":
                raise IngestError(f"id column {id_column!r} must hold integers, not {ids.dtype}")
            bad = ~np.isfinite(z) | (z < 0)
            if bad.any():
                row = int(chunk.start_row + np.flatnonzero(bad)[0])
                raise IngestError(f"{path.name}: row {row} has redshift {z[bad][0]!r}")
            loaded += load_truth(conn, ids.tolist(), z.tolist(), source or path.name)
    return loaded
