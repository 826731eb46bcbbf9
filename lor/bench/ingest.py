"""``lor bench ingest``: lor's ingest rate against plain COPY of the same rows, in one run.

Runs in a throwaway database on the configured server (or the embedded one), so it never
touches real data. The baseline is the fastest way to put the same rows into PostgreSQL with
no lor logic: one binary COPY of the already-encoded rows into an unindexed, unpartitioned
table with the same columns. A second baseline COPYs them into a table shaped like
``lor.objects`` (partitions and indexes), isolating what the indexes cost.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import text

from lor.bench.synthetic_catalog import write_synthetic_parquet
from lor.db import catalog_store as store
from lor.db.admin import temporary_database
from lor.db.copy_binary import encode_rows
from lor.db.engine import make_engine, resolve_database_url
from lor.db.migrate import upgrade
from lor.pipeline.catalog_io import CatalogReader
from lor.pipeline.ingest import CatalogColumns, _prepare_chunk, ingest_catalog


def _encoded_rows(path: Path, chunk_rows: int) -> tuple[list[bytes], list]:  # type: ignore[type-arg]
    cols = CatalogColumns()
    fields = store.object_fields(len(cols.bands), with_ebv=False)
    payloads = []
    with CatalogReader(path) as reader:
        wanted = [cols.id, cols.ra, cols.dec, *cols.flux_columns(), *cols.err_columns(), "tract"]
        for chunk in reader.chunks(wanted, chunk_rows):
            staged, _ = _prepare_chunk(chunk, cols, True)
            staged["release_id"] = np.full(len(staged["catalog_id"]), 1, np.int32)
            payloads.append(encode_rows(fields, {f.name: staged[f.name] for f in fields}))
    return payloads, fields


def run_ingest_benchmark(rows: int = 1_000_000, chunk_rows: int = 250_000) -> dict[str, Any]:
    server = resolve_database_url()
    with tempfile.TemporaryDirectory() as tmp, temporary_database(server, "lor_bench") as url:
        path = write_synthetic_parquet(Path(tmp) / "objects.parquet", rows, seed=1)
        engine = make_engine(url)
        upgrade(engine)

        t0 = time.perf_counter()
        summary = ingest_catalog(engine, path, "BENCH", chunk_rows=chunk_rows, progress=False)
        lor_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        again = ingest_catalog(engine, path, "BENCH", chunk_rows=chunk_rows, progress=False)
        reingest_s = time.perf_counter() - t0

        payloads, fields = _encoded_rows(path, chunk_rows)
        timings = {}
        for name, ddl in (
            ("plain", "CREATE TABLE copy_plain (LIKE lor.objects)"),
            ("indexed", "CREATE TABLE copy_indexed (LIKE lor.objects INCLUDING ALL)"),
        ):
            with engine.begin() as conn:
                conn.execute(text(ddl))
            with engine.begin() as conn:
                t0 = time.perf_counter()
                for payload in payloads:
                    store.copy_rows(conn, f"copy_{name}", payload, fields)
                timings[name] = time.perf_counter() - t0
        with engine.connect() as conn:
            n_tracts = conn.execute(text("SELECT count(*) FROM lor.tracts")).scalar_one()
        engine.dispose()
    if summary.rows_new != rows or again.rows_unchanged != rows:
        raise RuntimeError(f"benchmark ingest was not exact: {summary} / {again}")
    return {
        "benchmark": "ingest",
        "data": f"{rows} synthetic Rubin Object-table rows (6 bands, nJy, 10-yr depth noise), "
        f"Parquet, {n_tracts} tracts",
        "rows": rows,
        "objects_per_s": rows / lor_s,
        "ratio_to_copy": timings["plain"] / lor_s,
        "lor_ingest_s": lor_s,
        "plain_copy_s": timings["plain"],
        "plain_copy_objects_per_s": rows / timings["plain"],
        "copy_into_objects_shape_s": timings["indexed"],
        "reingest_unchanged_objects_per_s": rows / reingest_s,
        "chunk_rows": chunk_rows,
        "cpu_count": os.cpu_count(),
        "server": "embedded pgserver" if "host=/" in server else "LOR_DATABASE_URL",
    }
