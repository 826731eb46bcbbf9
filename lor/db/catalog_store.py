"""Catalog slice of the store: band sets, releases, tracts, ingests and object versions.

Functions take an open SQLAlchemy ``Connection`` inside the caller's transaction, so an ingest
either lands completely or leaves the database exactly as it was.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sqlalchemy import Connection, func, insert, select, text, update

from lor import bands as band_sets
from lor.db.copy_binary import Field, decode_array
from lor.db.models import BandSet, Ingest, IngestReject, Release
from lor.errors import IngestError, NotFoundError

LSST_BANDS = band_sets.LSST_BANDS
LSST_BAND_SET = band_sets.DEFAULT_BAND_SET

STAGE_TABLE = "ingest_stage"


def object_fields(n_bands: int, with_ebv: bool) -> list[Field]:
    """Columns written by binary COPY (to ``lor.objects`` or the staging table), in order.

    A NULL E(B-V) is written by leaving the column out, so rows are split by that.
    """
    fields = [
        Field("release_id", "int4"),
        Field("tract_id", "int4"),
        Field("object_id", "uuid"),
        Field("catalog_id", "int8"),
        Field("ra", "float8"),
        Field("dec", "float8"),
        Field("flux", "float4", n_bands),
        Field("flux_err", "float4", n_bands),
        Field("missing_mask", "int2"),
        Field("nondetection_mask", "int2"),
        Field("input_hash", "uuid"),
    ]
    return fields + [Field("ebv", "float4")] if with_ebv else fields


def get_or_create_band_set(conn: Connection, band_set: band_sets.BandSet) -> int:
    """The id of ``band_set`` in ``lor.band_sets``, stored with its definition if new.

    A stored set of that name must have the same definition (bands, curves, depths, error
    model): one name, one band set. A row from before migration 0011 (no definition) with
    the same bands and curves gets the definition.
    """
    row = conn.execute(
        select(BandSet.id, BandSet.bands, BandSet.filters, BandSet.definition_sha256).where(
            BandSet.name == band_set.name
        )
    ).one_or_none()
    record, sha = band_set.as_record(), band_set.sha256
    if row is not None:
        if row.definition_sha256 == sha:
            return row.id
        same_bands = (
            tuple(row.bands) == band_set.band_names and tuple(row.filters) == band_set.filter_names
        )
        if row.definition_sha256 is None and same_bands:
            conn.execute(
                update(BandSet)
                .where(BandSet.id == row.id)
                .values(
                    definition=record,
                    definition_sha256=sha,
                    reference_band=band_set.reference_band,
                )
            )
            return row.id
        raise IngestError(
            f"band set {band_set.name!r} is stored with another definition (bands "
            f"{list(row.bands)}, definition sha256 {row.definition_sha256}); this one has bands "
            f"{list(band_set.band_names)}, sha256 {sha}. Give a changed band set a new name."
        )
    return conn.execute(
        insert(BandSet)
        .values(
            name=band_set.name,
            bands=list(band_set.band_names),
            filters=list(band_set.filter_names),
            reference_band=band_set.reference_band,
            definition=record,
            definition_sha256=sha,
        )
        .returning(BandSet.id)
    ).scalar_one()


def band_set_definition(conn: Connection, band_set_id: int) -> band_sets.BandSet | None:
    """The stored band set (None for a pre-0011 row that never got a definition)."""
    record = conn.execute(
        select(BandSet.definition).where(BandSet.id == band_set_id)
    ).scalar_one_or_none()
    return None if record is None else band_sets.BandSet.from_record(record)


def objects_row_estimate(conn: Connection) -> float:
    """The planner's row count of ``lor.objects`` (sum over its partitions; 0 before the
    first ANALYZE)."""
    return float(
        conn.execute(
            text(
                "SELECT coalesce(sum(greatest(c.reltuples, 0)), 0) FROM pg_inherits i "
                "JOIN pg_class c ON c.oid = i.inhrelid "
                "WHERE i.inhparent = CAST('lor.objects' AS regclass)"
            )
        ).scalar_one()
    )


def objects_fewer_than(conn: Connection, n: int) -> bool:
    """Whether ``lor.objects`` holds fewer than ``n`` rows (a scan of at most ``n`` rows: it
    costs less than loading a file of ``n`` rows, whatever the table's size)."""
    return (
        conn.execute(
            text("SELECT count(*) FROM (SELECT 1 FROM lor.objects LIMIT :n) t"), {"n": n}
        ).scalar_one()
        < n
    )


def stored_catalog_ids(conn: Connection) -> np.ndarray:
    """The catalog ids of every stored object version, sorted and unique (int64), fetched as
    one binary array: a bulk load routes each row by them, the table's index being gone."""
    payload = conn.execute(
        text("SELECT array_send(array_agg(catalog_id)) FROM lor.objects")
    ).scalar_one()
    if payload is None:
        return np.empty(0, np.int64)
    return np.unique(decode_array(bytes(payload), "int8"))


def can_rebuild_object_indexes(conn: Connection) -> bool:
    """Whether this session may drop and rebuild the indexes of ``lor.objects``: it owns the
    table, and no foreign key references it (its key could not be dropped)."""
    return conn.execute(
        text(
            "SELECT pg_has_role(c.relowner, 'USAGE') AND NOT EXISTS "
            "(SELECT 1 FROM pg_constraint WHERE confrelid = c.oid) "
            "FROM pg_class c WHERE c.oid = CAST('lor.objects' AS regclass)"
        )
    ).scalar_one()


def drop_object_indexes(conn: Connection) -> list[str]:
    """Take ``lor.objects`` exclusively (until commit) and drop its indexes; returns the
    statements that build them again, comments included.

    The statements are the server's own definitions of the indexes as they stand (primary
    key as a constraint, ``ON ONLY`` dropped so the index is built on every partition), so
    an index a later migration adds or changes comes back as that migration left it.
    """
    conn.execute(text("LOCK TABLE lor.objects IN ACCESS EXCLUSIVE MODE"))
    rows = conn.execute(
        text(
            """SELECT
                 CASE WHEN con.oid IS NULL
                   THEN format('DROP INDEX %s', i.indexrelid::regclass)
                   ELSE format('ALTER TABLE lor.objects DROP CONSTRAINT %I', con.conname)
                 END AS drop_sql,
                 CASE WHEN con.oid IS NULL
                   THEN regexp_replace(pg_get_indexdef(i.indexrelid), ' ON ONLY ', ' ON ')
                   ELSE format('ALTER TABLE lor.objects ADD CONSTRAINT %I %s', con.conname,
                               pg_get_constraintdef(con.oid))
                 END AS create_sql,
                 CASE WHEN obj_description(i.indexrelid, 'pg_class') IS NOT NULL
                   THEN format('COMMENT ON INDEX %s IS %L', i.indexrelid::regclass,
                               obj_description(i.indexrelid, 'pg_class'))
                 END AS index_comment,
                 CASE WHEN obj_description(con.oid, 'pg_constraint') IS NOT NULL
                   THEN format('COMMENT ON CONSTRAINT %I ON lor.objects IS %L', con.conname,
                               obj_description(con.oid, 'pg_constraint'))
                 END AS constraint_comment
               FROM pg_index i
               LEFT JOIN pg_constraint con
                 ON con.conindid = i.indexrelid AND con.conrelid = i.indrelid
               WHERE i.indrelid = CAST('lor.objects' AS regclass)
               ORDER BY con.oid IS NULL, i.indexrelid"""
        )
    ).all()
    rebuild = []
    for row in rows:
        _execute_ddl(conn, row.drop_sql)
        rebuild.append(row.create_sql)
        rebuild += [c for c in (row.index_comment, row.constraint_comment) if c is not None]
    return rebuild


BUILD_MAINTENANCE_WORK_MEM = "256MB"
"""Sort memory for building the indexes of ``lor.objects`` after a bulk load."""


def build_object_indexes(conn: Connection, statements: Sequence[str]) -> None:
    """Run the statements of :func:`drop_object_indexes`: each index is built by one sort
    per partition instead of row by row."""
    conn.execute(
        text("SELECT set_config('maintenance_work_mem', :mem, true)"),
        {"mem": BUILD_MAINTENANCE_WORK_MEM},
    )
    for statement in statements:
        _execute_ddl(conn, statement)


def _execute_ddl(conn: Connection, statement: str) -> None:
    """A statement the server wrote (index definitions, quoted comments), run as it is:
    through the driver with no parameters, so neither ``:name`` nor ``%`` in a comment is
    read as a placeholder."""
    conn.connection.driver_connection.execute(statement)  # type: ignore[union-attr]


def analyze_objects(conn: Connection) -> None:
    """Fresh planner statistics of ``lor.objects``."""
    conn.execute(text("ANALYZE lor.objects"))


def get_or_create_release(conn: Connection, name: str, band_set_id: int) -> int:
    conn.execute(text("LOCK TABLE lor.releases IN SHARE ROW EXCLUSIVE MODE"))
    row = conn.execute(
        select(Release.id, Release.band_set_id).where(Release.name == name)
    ).one_or_none()
    if row is not None:
        if row.band_set_id != band_set_id:
            raise IngestError(f"release {name!r} uses another band set (id {row.band_set_id})")
        return row.id
    seq = conn.execute(select(func.coalesce(func.max(Release.sequence), 0) + 1)).scalar_one()
    return conn.execute(
        insert(Release)
        .values(name=name, sequence=seq, band_set_id=band_set_id)
        .returning(Release.id)
    ).scalar_one()


def release_id(conn: Connection, name: str) -> int:
    rid = conn.execute(select(Release.id).where(Release.name == name)).scalar_one_or_none()
    if rid is None:
        known = conn.execute(select(Release.name).order_by(Release.sequence)).scalars().all()
        raise NotFoundError(f"no release named {name!r}; known releases: {known}")
    return rid


def start_ingest(
    conn: Connection, release: int, path: str, sha256: str, options: dict[str, Any], version: str
) -> int:
    return conn.execute(
        insert(Ingest)
        .values(
            release_id=release,
            source_path=path,
            source_sha256=sha256,
            options=options,
            rows_read=0,
            rows_new=0,
            rows_changed=0,
            rows_unchanged=0,
            rows_rejected=0,
            lor_version=version,
        )
        .returning(Ingest.id)
    ).scalar_one()


def finish_ingest(conn: Connection, ingest_id: int, counts: dict[str, int]) -> None:
    conn.execute(update(Ingest).where(Ingest.id == ingest_id).values(**counts))


def create_stage(conn: Connection) -> None:
    conn.execute(
        text(
            f"""CREATE TEMP TABLE {STAGE_TABLE} (
                release_id integer, tract_id integer, object_id uuid, catalog_id bigint,
                ra double precision, dec double precision, flux real[], flux_err real[],
                missing_mask smallint, nondetection_mask smallint, ebv real, input_hash uuid
            ) ON COMMIT DROP"""
        )
    )


def copy_rows(
    conn: Connection, table: str, payload: bytes | memoryview, fields: Sequence[Field]
) -> None:
    """Binary COPY of an encoded payload into ``table`` (``lor.objects`` or the stage)."""
    cols = ", ".join(f.name for f in fields)
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    with cursor.copy(f"COPY {table} ({cols}) FROM STDIN (FORMAT BINARY)") as copy:
        copy.write(payload)


def lock_ingestion(conn: Connection) -> None:
    """Serialize ingests (transaction-scoped advisory lock): the id-range fast path relies on it."""
    conn.execute(text("SELECT pg_advisory_xact_lock(hashtext('lor.ingest'))"))


def any_object_in_id_range(conn: Connection, lo: int, hi: int) -> bool:
    """Whether any stored object has a catalog id in [lo, hi] (one index probe per partition)."""
    return conn.execute(
        text("SELECT EXISTS (SELECT 1 FROM lor.objects WHERE catalog_id BETWEEN :lo AND :hi)"),
        {"lo": lo, "hi": hi},
    ).scalar_one()


def check_tract_scheme(conn: Connection, scheme: str) -> None:
    """Refuse a file whose tract scheme differs from the one the database already uses.

    Any tract of another scheme counts, not only colliding ids: catalog tracts and HEALPix
    pixels rarely share ids, and a re-ingest of the same objects under the other scheme
    stored every one again as "changed" in new tracts.
    """
    clash = conn.execute(
        text(
            "SELECT scheme, count(*) AS n, min(id) AS first FROM lor.tracts "
            "WHERE scheme <> :scheme GROUP BY scheme LIMIT 1"
        ),
        {"scheme": scheme},
    ).one_or_none()
    if clash is not None:
        hint = (
            "give the catalog's tract column (--tract-column)"
            if clash.scheme == "catalog"
            else "pass --tract-column none"
        )
        raise IngestError(
            f"this database's {clash.n} tracts use scheme {clash.scheme!r} (e.g. tract "
            f"{clash.first}), this file would use {scheme!r}: use the same tract scheme for "
            f"every file ({hint})"
        )


def register_tracts(conn: Connection, tract_ids: Sequence[int], scheme: str) -> None:
    """Add tracts; refuse to mix tract schemes in one database."""
    ids = [int(t) for t in tract_ids]
    check_tract_scheme(conn, scheme)
    conn.execute(
        text(
            "INSERT INTO lor.tracts (id, scheme) SELECT unnest(CAST(:ids AS integer[])), :scheme "
            "ON CONFLICT (id) DO NOTHING"
        ),
        {"ids": ids, "scheme": scheme},
    )


def merge_stage(conn: Connection, indexed: bool = True) -> tuple[int, int, int]:
    """Store the staged new and changed object versions; returns (new, changed, unchanged).

    Changed = a current version with the same catalog id but different measurements exists:
    it is marked superseded by this release, and the new version is inserted. Supersession
    runs before the insert so a first ingest joins against nothing. Versions already stored
    are left out by an anti-join; ``indexed=False`` (a bulk load, indexes dropped, the table
    held exclusively) has no unique index for ``ON CONFLICT`` to fall back on.
    """
    staged = conn.execute(text(f"SELECT count(*) FROM {STAGE_TABLE}")).scalar_one()
    if not staged:  # all rows went straight in: nothing to join (a bulk load's anti-join
        return 0, 0, 0  # would scan the whole, unindexed table)
    conn.execute(text(f"ANALYZE {STAGE_TABLE}"))
    changed = conn.execute(
        text(
            f"""UPDATE lor.objects o SET superseded_release_id = s.release_id
                FROM {STAGE_TABLE} s
                WHERE o.catalog_id = s.catalog_id AND o.superseded_release_id IS NULL
                  AND o.object_id <> s.object_id"""
        )
    ).rowcount
    inserted = conn.execute(
        text(
            f"""INSERT INTO lor.objects (tract_id, object_id, catalog_id, release_id, ra, dec,
                    flux, flux_err, missing_mask, nondetection_mask, ebv, input_hash)
                SELECT tract_id, object_id, catalog_id, release_id, ra, dec, flux, flux_err,
                       missing_mask, nondetection_mask, ebv, input_hash
                FROM {STAGE_TABLE} s
                WHERE NOT EXISTS (SELECT 1 FROM lor.objects o
                                  WHERE o.tract_id = s.tract_id AND o.object_id = s.object_id)
                {"ON CONFLICT (tract_id, object_id) DO NOTHING" if indexed else ""}"""
        )
    ).rowcount
    return inserted - changed, changed, staged - inserted


def insert_rejects(conn: Connection, ingest_id: int, rejects: list[dict[str, Any]]) -> int:
    """Record rejected rows; returns how many were new.

    A row already recorded, with the same reason, by an earlier ingest of the same file
    (sha256) into the same release is not recorded again: re-ingesting a file is idempotent
    for its rejects as for its objects.
    """
    if not rejects:
        return 0
    known = {
        (row_number, reason)
        for row_number, reason in conn.execute(
            text(
                """SELECT r.row_number, r.reason FROM lor.ingest_rejects r
                   JOIN lor.ingests i ON i.id = r.ingest_id
                   JOIN lor.ingests me ON me.id = :id
                   WHERE i.id <> me.id AND i.source_sha256 = me.source_sha256
                     AND i.release_id = me.release_id"""
            ),
            {"id": ingest_id},
        )
    }
    rejects = [r for r in rejects if (r["row_number"], r["reason"]) not in known]
    if not rejects:
        return 0
    rows = [
        {
            "ingest_id": ingest_id,
            "row_number": r["row_number"],
            "catalog_id": r.get("catalog_id"),
            "reason": r["reason"],
            "raw": r["raw"],
        }
        for r in rejects
    ]
    conn.execute(insert(IngestReject), rows)
    return len(rows)
