"""Truth slice of the store: known redshifts by catalog id (``lor.truth``).

Loaded from simulation truth or spectroscopy; read wherever posteriors are checked against
them (the run dashboard's photo-z, PIT and coverage). Functions take an open ``Connection``.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Connection, text


def load_truth(
    conn: Connection, catalog_ids: Sequence[int], redshifts: Sequence[float], source: str
) -> int:
    """Insert or replace the true redshift of each catalog id; returns rows written."""
    return conn.execute(
        text(
            """INSERT INTO lor.truth (catalog_id, redshift, source)
               SELECT * FROM unnest(CAST(:ids AS bigint[]), CAST(:z AS real[])), CAST(:s AS text)
               ON CONFLICT (catalog_id) DO UPDATE
               SET redshift = excluded.redshift, source = excluded.source, loaded_at = now()"""
        ),
        {"ids": [int(i) for i in catalog_ids], "z": [float(z) for z in redshifts], "s": source},
    ).rowcount
