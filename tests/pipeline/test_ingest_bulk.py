"""Bulk ingest (``lor.objects``' indexes dropped, rows loaded, indexes built after) stores
exactly what a row-by-row ingest stores, and leaves the indexes as they were."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from sqlalchemy import text

import lor.db.catalog_store as store
from lor.bench.synthetic_catalog import synthetic_object_table
from lor.catalog.ingest import ingest_catalog
from tests.pipeline.catalog_files import write_catalog

N = 300
ALWAYS, NEVER = 0, 10**12
"""``bulk_min_rows`` that makes any file outgrowing the table bulk, and none."""

INDEXES = """SELECT c.relname, pg_get_indexdef(i.indexrelid) AS def,
                    obj_description(i.indexrelid, 'pg_class') AS comment, i.indisvalid
             FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
             WHERE i.indrelid = CAST('lor.objects' AS regclass)
                OR i.indrelid IN (SELECT inhrelid FROM pg_inherits
                                  WHERE inhparent = CAST('lor.objects' AS regclass))
             ORDER BY c.relname"""


def _indexes(engine) -> list[tuple]:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(INDEXES))]


def _index_oids(engine) -> set[int]:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        return set(
            conn.execute(
                text(
                    "SELECT indexrelid::int FROM pg_index WHERE indrelid = 'lor.objects'::regclass"
                )
            ).scalars()
        )


def _objects(engine) -> list[tuple]:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        return [
            tuple(r)
            for r in conn.execute(
                text(
                    "SELECT tract_id, object_id, catalog_id, release_id, superseded_release_id, "
                    "ra, dec, flux, flux_err, missing_mask, nondetection_mask, ebv, input_hash "
                    "FROM lor.objects ORDER BY tract_id, object_id"
                )
            )
        ]


def _releases(tmp_path: Path) -> tuple[Path, Path]:
    """DR1 (N objects) and DR2: 40 of them re-measured, all others unchanged, 2N new."""
    base = synthetic_object_table(N, seed=2)
    g = base["g_cModelFlux"].to_numpy().copy()
    g[:40] *= 1.05
    dr2 = base.set_column(base.schema.get_field_index("g_cModelFlux"), "g_cModelFlux", pa.array(g))
    extra = synthetic_object_table(2 * N, seed=3, first_id=9_000_000_000_000)
    return (
        write_catalog(base, tmp_path / "dr1.parquet"),
        write_catalog(pa.concat_tables([dr2, extra]), tmp_path / "dr2.parquet"),
    )


def _load_both(engine, tmp_path: Path, bulk_min_rows: int) -> list[tuple]:  # type: ignore[no-untyped-def]
    dr1, dr2 = _releases(tmp_path)
    first = ingest_catalog(engine, dr1, "DR1", progress=False, bulk_min_rows=bulk_min_rows)
    second = ingest_catalog(engine, dr2, "DR2", progress=False, bulk_min_rows=bulk_min_rows)
    again = ingest_catalog(engine, dr2, "DR2", progress=False, bulk_min_rows=bulk_min_rows)
    assert (first.rows_new, first.rows_changed, first.rows_unchanged) == (N, 0, 0)
    assert (second.rows_new, second.rows_changed, second.rows_unchanged) == (2 * N, 40, N - 40)
    assert (again.rows_new, again.rows_changed, again.rows_unchanged) == (0, 0, 3 * N)
    return _objects(engine)


def test_bulk_and_row_by_row_store_the_same_rows(engine, tmp_path: Path) -> None:
    """DR1 into the empty table (bulk: COPY straight in), DR2 three times its size over it
    (bulk: staged, merged by anti-join), then DR2 again (no bulk: the table is bigger)."""
    indexes = _indexes(engine)
    stored = _load_both(engine, tmp_path, ALWAYS)
    assert _indexes(engine) == indexes  # same names, definitions, comments; all valid
    with engine.begin() as conn:
        conn.execute(
            text("TRUNCATE lor.objects, lor.releases, lor.ingests RESTART IDENTITY CASCADE")
        )
    assert _load_both(engine, tmp_path, NEVER) == stored
    assert len(stored) == 3 * N + 40


def test_only_a_file_that_outgrows_the_table_rebuilds_its_indexes(engine, tmp_path: Path) -> None:
    dr1, dr2 = _releases(tmp_path)
    built = _index_oids(engine)
    ingest_catalog(engine, dr1, "DR1", progress=False, bulk_min_rows=ALWAYS)
    rebuilt = _index_oids(engine)
    assert not rebuilt & built
    ingest_catalog(engine, dr1, "DR1", progress=False, bulk_min_rows=ALWAYS)  # N rows over N
    assert _index_oids(engine) == rebuilt
    ingest_catalog(engine, dr2, "DR2", progress=False, bulk_min_rows=3 * N + 1)  # too small
    assert _index_oids(engine) == rebuilt


def test_a_failed_bulk_load_leaves_rows_and_indexes(
    engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dr1, dr2 = _releases(tmp_path)
    ingest_catalog(engine, dr1, "DR1", progress=False, bulk_min_rows=NEVER)
    rows, indexes = _objects(engine), _indexes(engine)

    def fail(*args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        raise RuntimeError("after the COPY, before the indexes are built")

    monkeypatch.setattr(store, "register_tracts", fail)
    with pytest.raises(RuntimeError, match="before the indexes"):
        ingest_catalog(engine, dr2, "DR2", progress=False, bulk_min_rows=ALWAYS)
    assert _objects(engine) == rows and _indexes(engine) == indexes


def test_index_comment_with_placeholder_characters_survives(engine, tmp_path: Path) -> None:
    """Comments come back verbatim, ``:name`` and ``%`` included (no driver placeholders)."""
    comment = "Positions: 100% of rows; see :cone and %(x)s"
    with engine.begin() as conn:
        old = conn.execute(
            text("SELECT obj_description('lor.ix_objects_sky'::regclass, 'pg_class')")
        ).scalar_one()
        conn.execute(text("SELECT set_config('lor.c', :c, true)"), {"c": comment})
        conn.execute(text("DO $$ BEGIN EXECUTE format('COMMENT ON INDEX lor.ix_objects_sky "
                          "IS %L', current_setting('lor.c')); END $$"))  # fmt: skip
    try:
        dr1, _ = _releases(tmp_path)
        ingest_catalog(engine, dr1, "DR1", progress=False, bulk_min_rows=ALWAYS)
        with engine.connect() as conn:
            assert (
                conn.execute(
                    text("SELECT obj_description('lor.ix_objects_sky'::regclass, 'pg_class')")
                ).scalar_one()
                == comment
            )
    finally:
        with engine.begin() as conn:
            conn.execute(text("SELECT set_config('lor.c', :c, true)"), {"c": old})
            conn.execute(text("DO $$ BEGIN EXECUTE format('COMMENT ON INDEX lor.ix_objects_sky "
                              "IS %L', current_setting('lor.c')); END $$"))  # fmt: skip


def test_bulk_rows_match_the_catalog(engine, tmp_path: Path) -> None:
    """What a bulk COPY stored is the catalog's photometry (not only equal to itself)."""
    table = synthetic_object_table(N, seed=9)
    path = write_catalog(table, tmp_path / "a.parquet")
    ingest_catalog(engine, path, "R1", progress=False, bulk_min_rows=ALWAYS)
    with engine.connect() as conn:
        stored = conn.execute(
            text("SELECT catalog_id, flux FROM lor.objects ORDER BY catalog_id")
        ).all()
    assert [r.catalog_id for r in stored] == table["objectId"].to_pylist()
    np.testing.assert_allclose(
        [r.flux[3] for r in stored], table["i_cModelFlux"].to_numpy(), rtol=1e-6
    )
