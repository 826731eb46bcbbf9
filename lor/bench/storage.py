"""What a stored posterior costs on disk, for ``lor bench pipeline`` (``bytes_per_posterior``)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, text


def storage_figures(engine: Engine, objects: float = 3.7e10) -> dict[str, Any]:
    """Bytes per stored posterior row (heap with TOAST, and every index) over all of
    ``lor.posteriors``' partitions, and the projection to ``objects`` posteriors (TB); the
    mean tuple (``pg_column_size`` of the row, header included) and of each column, to show
    where the bytes go."""
    with engine.connect() as conn:
        rows, heap, indexes = conn.execute(
            text(
                """SELECT (SELECT count(*) FROM lor.posteriors),
                          sum(pg_table_size(i.inhrelid)), sum(pg_indexes_size(i.inhrelid))
                   FROM pg_inherits i WHERE i.inhparent = CAST('lor.posteriors' AS regclass)"""
            )
        ).one()
        by_index = conn.execute(
            text(
                """SELECT p.relname, sum(pg_relation_size(c.oid))
                   FROM pg_inherits i JOIN pg_index x ON x.indrelid = i.inhrelid
                   JOIN pg_class c ON c.oid = x.indexrelid
                   JOIN pg_inherits ip ON ip.inhrelid = c.oid
                   JOIN pg_class p ON p.oid = ip.inhparent
                   WHERE i.inhparent = CAST('lor.posteriors' AS regclass)
                   GROUP BY p.relname ORDER BY 2 DESC"""
            )
        ).all()
        tuple_bytes, main_pages = conn.execute(
            text(
                """SELECT (SELECT avg(pg_column_size(p.*)) FROM lor.posteriors p),
                          (SELECT sum(pg_relation_size(i.inhrelid, 'main')) / 8192
                           FROM pg_inherits i
                           WHERE i.inhparent = CAST('lor.posteriors' AS regclass))"""
            )
        ).one()
        columns = (
            conn.execute(
                text(
                    """SELECT a.attname FROM pg_attribute a
                   WHERE a.attrelid = CAST('lor.posteriors' AS regclass) AND a.attnum > 0
                     AND NOT a.attisdropped ORDER BY a.attnum"""
                )
            )
            .scalars()
            .all()
        )
        sizes = conn.execute(
            text(
                "SELECT "
                + ", ".join(f"avg(pg_column_size(p.{c}))" for c in columns)
                + " FROM lor.posteriors p"
            )
        ).one()
    per_row = (int(heap) + int(indexes)) / max(int(rows), 1)
    return {
        "bytes_per_posterior": per_row,
        "bytes_per_posterior_heap": int(heap) / max(int(rows), 1),
        "bytes_per_posterior_indexes": int(indexes) / max(int(rows), 1),
        "bytes_per_posterior_by_index": {name: int(b) / max(int(rows), 1) for name, b in by_index},
        "bytes_per_posterior_tuple": float(tuple_bytes or 0),
        "posteriors_per_heap_page": int(rows) / max(float(main_pages or 0), 1.0),
        "bytes_per_posterior_by_column": {
            c: float(v) for c, v in zip(columns, sizes, strict=True) if v is not None
        },
        "storage_rows": int(rows),
        "projected_tb_per_run": per_row * objects / 1e12,
        "projected_objects": objects,
    }
