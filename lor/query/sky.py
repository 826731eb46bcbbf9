"""Cone search and cross-match against stored objects (``lor.cone``, ``lor.crossmatch``).

Positions are indexed natively (``lor/db/sql/0005_nz_sky.sql``: declination zones x RA in one btree
key), so both work on the system PostgreSQL and on the embedded pgserver without q3c.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from sqlalchemy import Engine

from lor.db import selection_store
from lor.errors import LorError


class SkyQueryError(LorError):
    """A cone or cross-match request with impossible positions or radius."""


def _check_positions(ra: np.ndarray, dec: np.ndarray) -> None:
    if ra.shape != dec.shape or ra.ndim != 1:
        raise SkyQueryError(f"ra and dec must be 1-D of equal length; got {ra.shape}, {dec.shape}")
    bad = ~(np.isfinite(ra) & np.isfinite(dec) & (ra >= 0) & (ra < 360) & (np.abs(dec) <= 90))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise SkyQueryError(
            f"{int(bad.sum())} position(s) outside 0 <= ra < 360, |dec| <= 90 (first: row {i}, "
            f"ra={ra[i]}, dec={dec[i]})"
        )


def _check_radius(radius: float, unit: str, most: float) -> None:
    if not (np.isfinite(radius) and 0 < radius <= most):
        raise SkyQueryError(f"radius must be in (0, {most}] {unit}; got {radius}")


def cone(
    engine: Engine, ra: float, dec: float, radius_deg: float, run_id: int | None = None
) -> list[dict[str, Any]]:
    """Objects within ``radius_deg`` of (ra, dec) with their latest posterior (or run's)."""
    _check_positions(np.array([ra], dtype=float), np.array([dec], dtype=float))
    _check_radius(radius_deg, "deg", 180.0)
    with engine.connect() as conn:
        rows = selection_store.cone(conn, ra, dec, radius_deg, run_id)
    return [row._asdict() for row in rows]


def crossmatch(
    engine: Engine,
    ra: np.ndarray,
    dec: np.ndarray,
    radius_arcsec: float,
    run_id: int | None = None,
    nearest_only: bool = True,
    chunk: int = 20_000,
) -> pa.Table:
    """Match external positions to stored objects; ``idx`` is the 0-based input row.

    Positions go to the server in chunks of ``chunk`` (one ``lor.crossmatch`` call each).
    """
    ra = np.asarray(ra, dtype=np.float64)
    dec = np.asarray(dec, dtype=np.float64)
    _check_positions(ra, dec)
    _check_radius(radius_arcsec, "arcsec", 3600.0)
    names = list(selection_store.CROSSMATCH_COLUMNS)
    columns: dict[str, list[Any]] = {name: [] for name in names}
    with engine.connect() as conn:
        for start in range(0, ra.size, chunk):
            part = selection_store.crossmatch(
                conn, ra[start : start + chunk], dec[start : start + chunk], radius_arcsec,
                run_id, nearest_only,
            )  # fmt: skip
            for row in part:
                for name, value in zip(names, row, strict=True):
                    columns[name].append(value - 1 + start if name == "idx" else value)
    columns["posterior_id"] = [str(v) for v in columns["posterior_id"]]
    return pa.table(columns)


def read_positions(path: Path, ra_column: str, dec_column: str) -> tuple[np.ndarray, np.ndarray]:
    """RA and Dec (degrees) from a Parquet or CSV file of external positions."""
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    if not path.exists():
        raise SkyQueryError(f"no such file: {path}")
    table = pcsv.read_csv(path) if path.suffix.lower() == ".csv" else pq.read_table(path)
    missing = [c for c in (ra_column, dec_column) if c not in table.column_names]
    if missing:
        raise SkyQueryError(f"{path} has no column(s) {missing}; it has {table.column_names}")
    return (
        table.column(ra_column).to_numpy().astype(np.float64),
        table.column(dec_column).to_numpy().astype(np.float64),
    )
