"""An ingest that loads a good part of ``lor.objects`` leaves the planner statistics of it."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import text

from lor.bench.synthetic_catalog import synthetic_object_table
from lor.catalog.ingest import ingest_catalog
from tests.pipeline.catalog_files import write_catalog


def _estimated_rows(engine) -> float:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        return float(
            conn.execute(
                text(
                    "SELECT sum(greatest(c.reltuples, 0)) FROM pg_inherits i "
                    "JOIN pg_class c ON c.oid = i.inhrelid "
                    "WHERE i.inhparent = CAST('lor.objects' AS regclass)"
                )
            ).scalar_one()
        )


def test_first_ingest_analyzes_objects_and_an_unchanged_one_does_not(
    engine, tmp_path: Path
) -> None:
    path = write_catalog(synthetic_object_table(400, seed=3), tmp_path / "a.parquet")
    assert _estimated_rows(engine) == 0  # never analyzed: the planner knows nothing
    ingest_catalog(engine, path, "R1", progress=False)
    assert _estimated_rows(engine) == 400
    with engine.connect() as conn:
        analyzed = conn.execute(
            text("SELECT max(last_analyze) FROM pg_stat_user_tables WHERE schemaname = 'lor' "
                 "AND relname LIKE 'objects_p%'")
        ).scalar_one()  # fmt: skip
    again = ingest_catalog(engine, path, "R1", progress=False)
    assert again.rows_unchanged == 400
    with engine.connect() as conn:
        after = conn.execute(
            text("SELECT max(last_analyze) FROM pg_stat_user_tables WHERE schemaname = 'lor' "
                 "AND relname LIKE 'objects_p%'")
        ).scalar_one()  # fmt: skip
    assert analyzed is not None and after == analyzed


def test_statistics_leave_out_flux_arrays_and_keep_the_sky_zones(engine, tmp_path: Path) -> None:
    """Migration 0013: no element statistics of the flux arrays (most of ANALYZE's time, no
    query uses them); the zones of the sky index, which cone plans rely on, are kept."""
    path = write_catalog(synthetic_object_table(400, seed=4), tmp_path / "a.parquet")
    ingest_catalog(engine, path, "R1", progress=False)
    with engine.connect() as conn:
        columns = set(
            conn.execute(
                text(
                    "SELECT attname FROM pg_stats WHERE schemaname = 'lor' "
                    "AND tablename IN ('objects', 'objects_p00', 'ix_objects_sky', "
                    "'objects_p00_sky_zone_ra_idx')"
                )
            ).scalars()
        )
    assert {"ra", "dec", "catalog_id", "sky_zone"} <= columns
    assert not {"flux", "flux_err"} & columns
