"""Helpers shared by the run, queue and worker tests: catalogs in, exactly-once checks out."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
from sqlalchemy import Engine, text

from lor.bench.synthetic_catalog import synthetic_object_table
from lor.catalog.ingest import ingest_catalog
from tests.pipeline.catalog_files import write_catalog


def ingest_synthetic(
    engine: Engine, tmp_path: Path, n: int, release: str = "DR1", seed: int = 1
) -> pa.Table:
    """Ingest ``n`` synthetic Rubin-style objects into ``release``; returns the table."""
    table = synthetic_object_table(n, seed=seed)
    ingest_catalog(
        engine, write_catalog(table, tmp_path / f"{release}.parquet"), release, progress=False
    )
    return table


def exactly_once(engine: Engine, run_id: int) -> dict[str, int]:
    """Posterior rows, distinct objects and items of a run, for exactly-once assertions."""
    with engine.connect() as conn:
        row = conn.execute(
            text(
                """SELECT (SELECT count(*) FROM lor.posteriors WHERE run_id = :r) AS posteriors,
                          (SELECT count(DISTINCT object_id) FROM lor.posteriors
                           WHERE run_id = :r) AS objects,
                          (SELECT count(*) FROM lor.work_items WHERE run_id = :r) AS items,
                          (SELECT count(*) FROM lor.work_items
                           WHERE run_id = :r AND state = 'done') AS done,
                          (SELECT count(*) FROM lor.work_items w WHERE w.run_id = :r
                             AND w.state = 'done' AND NOT EXISTS (
                               SELECT 1 FROM lor.posteriors p WHERE p.run_id = w.run_id
                                 AND p.tract_id = w.tract_id AND p.object_id = w.object_id))
                             AS done_without_posterior"""
            ),
            {"r": run_id},
        ).one()
    return dict(row._mapping)


def wait_for(predicate: Callable[[], bool], timeout: float, what: str, poll: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")
