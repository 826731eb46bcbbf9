"""``lor bench ingest``: lor's ingest rate against plain COPY of the same rows, in one run.

Each of the repeats (:mod:`lor.bench.harness`) ingests into a fresh database.

Runs in a throwaway database on the configured server (or the embedded one), so it never
touches real data. The baseline is the fastest way to put the same rows into PostgreSQL with
no lor logic: one binary COPY of the already-encoded rows into an unindexed, unpartitioned
table with the same columns. A second baseline COPYs them into a table shaped like
``lor.objects`` (partitions and indexes), isolating what the indexes cost.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import text

from lor.bench.harness import MIN_REPEATS, bench_report, rate_figures, time_figures
from lor.bench.synthetic_catalog import write_synthetic_parquet
from lor.catalog.files import CatalogReader
from lor.catalog.ingest import CatalogColumns, ingest_catalog, prepare_chunk
from lor.db import catalog_store as store
from lor.db.admin import temporary_database
from lor.db.copy_binary import Field, encode_rows
from lor.db.engine import make_engine, resolve_database_url
from lor.db.migrate import upgrade


def _encoded_rows(path: Path, chunk_rows: int) -> tuple[list[bytes], list[Field]]:
    cols = CatalogColumns()
    fields = store.object_fields(len(cols.bands), with_ebv=False)
    payloads = []
    with CatalogReader(path) as reader:
        wanted = [cols.id, cols.ra, cols.dec, *cols.flux_columns(), *cols.err_columns(), "tract"]
        for chunk in reader.chunks(wanted, chunk_rows):
            staged, _ = prepare_chunk(chunk, cols, True)
            staged["release_id"] = np.full(len(staged["catalog_id"]), 1, np.int32)
            payloads.append(encode_rows(fields, {f.name: staged[f.name] for f in fields}))
    return payloads, fields


def _one_repeat(server: str, path: Path, rows: int, chunk_rows: int) -> dict[str, float]:
    """One repeat in a fresh database: lor's ingest, its re-ingest, the two plain COPYs."""
    with temporary_database(server, "lor_bench") as url:
        engine = make_engine(url)
        upgrade(engine)
        t0 = time.perf_counter()
        summary = ingest_catalog(engine, path, "BENCH", chunk_rows=chunk_rows, progress=False)
        seconds = {"lor": time.perf_counter() - t0}
        t0 = time.perf_counter()
        again = ingest_catalog(engine, path, "BENCH", chunk_rows=chunk_rows, progress=False)
        seconds["reingest"] = time.perf_counter() - t0
        if summary.rows_new != rows or again.rows_unchanged != rows:
            raise RuntimeError(f"benchmark ingest was not exact: {summary} / {again}")
        payloads, fields = _encoded_rows(path, chunk_rows)
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
                seconds[name] = time.perf_counter() - t0
        with engine.connect() as conn:
            seconds["tracts"] = conn.execute(text("SELECT count(*) FROM lor.tracts")).scalar_one()
        engine.dispose()
    return seconds


def run_ingest_benchmark(
    rows: int = 1_000_000, chunk_rows: int = 250_000, repeats: int = MIN_REPEATS
) -> dict[str, Any]:
    """Each repeat ingests the same file into a fresh database and COPYs the same rows."""
    server = resolve_database_url()
    with bench_report("ingest", repeats) as out, tempfile.TemporaryDirectory() as tmp:
        path = write_synthetic_parquet(Path(tmp) / "objects.parquet", rows, seed=1)
        runs = [_one_repeat(server, path, rows, chunk_rows) for _ in range(repeats)]
        lor_s = [r["lor"] for r in runs]
        plain_s = [r["plain"] for r in runs]
        out |= rate_figures("objects_per_s", rows, lor_s)
        out |= rate_figures("plain_copy_objects_per_s", rows, plain_s)
        out |= rate_figures("reingest_unchanged_objects_per_s", rows, [r["reingest"] for r in runs])
        out |= time_figures("lor_ingest_s", lor_s)
        out |= time_figures("plain_copy_s", plain_s)
        out |= time_figures("copy_into_objects_shape_s", [r["indexed"] for r in runs])
        ratios = [p / s for p, s in zip(plain_s, lor_s, strict=True)]
        out |= {
            "ratio_to_copy": statistics.median(ratios),
            "ratio_to_copy_min": min(ratios),
            "ratio_to_copy_max": max(ratios),
            "ratio_to_copy_repeats": ratios,
            "data": f"{rows} synthetic Rubin Object-table rows (6 bands, nJy, 10-yr depth "
            f"noise), Parquet, {int(runs[0]['tracts'])} tracts; each repeat a fresh database",
            "rows": rows,
            "chunk_rows": chunk_rows,
            "server": "embedded pgserver" if "host=/" in server else "LOR_DATABASE_URL",
        }
    return out
