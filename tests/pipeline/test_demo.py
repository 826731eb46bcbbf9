"""``lor demo`` end to end against the test database, twice (the second run reuses the first)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import text

from lor.reporting.demo import run_demo
from lor.runs.processing import clear_processor_cache


def test_demo_runs_end_to_end_and_is_repeatable(lor_env: str, engine, tmp_path: Path) -> None:
    clear_processor_cache()
    first = run_demo(tmp_path / "out", echo=lambda _: None)
    assert first["ingest"]["rows_new"] == 1999 and first["ingest"]["rows_rejected"] == 1
    assert first["posteriors"] == 1999 and first["hits"] > 0
    assert Path(first["plot"]).stat().st_size > 10_000
    second = run_demo(tmp_path / "out", echo=lambda _: None)
    assert second["ingest"]["rows_unchanged"] == 1999 and second["posteriors"] == 0
    assert second["hits"] == first["hits"]
    with engine.connect() as conn:
        per_object = conn.execute(
            text(
                "SELECT max(n) FROM (SELECT count(*) AS n FROM lor.posteriors GROUP BY object_id) c"
            )
        ).scalar_one()
        methods = set(conn.execute(text("SELECT DISTINCT method FROM lor.posteriors")).scalars())
    assert per_object == 1 and methods == {"amortized"}
    clear_processor_cache()
