"""``lor demo``: the main job end to end on the example catalog shipped in the repo."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from sqlalchemy import text

from lor.config import get_settings
from lor.db.engine import make_engine
from lor.db.migrate import upgrade
from lor.pipeline.ingest import ingest_catalog

EXAMPLE_CATALOG = (
    Path(__file__).resolve().parents[1] / "data" / "example" / "example_objects.parquet"
)
DEMO_RELEASE = "example-DR1"


def run_demo(out: Path | None = None, echo: Callable[[str], None] = print) -> dict[str, object]:
    """Set up the schema, ingest the example catalog and query it back."""
    settings = get_settings()
    out = out or settings.home / "demo"
    out.mkdir(parents=True, exist_ok=True)
    engine = make_engine()
    echo(f"database: {engine.url.render_as_string()}")
    echo(f"schema at revision {upgrade(engine)}")
    summary = ingest_catalog(engine, EXAMPLE_CATALOG, DEMO_RELEASE)
    echo(
        f"ingested {EXAMPLE_CATALOG.name}: read {summary.rows_read}, new {summary.rows_new}, "
        f"unchanged {summary.rows_unchanged}, rejected {summary.rows_rejected}"
    )
    query = """
        SELECT tract_id, count(*) AS n,
               round(avg(lor.njy_to_abmag(flux[lor.band_index(release_id, 'i')]))::numeric, 2) AS mean_i_mag
        FROM lor.objects_as_of(:release) GROUP BY tract_id ORDER BY tract_id"""
    with engine.connect() as conn:
        rows = conn.execute(text(query), {"release": DEMO_RELEASE}).all()
    echo("SQL: objects per tract with mean i-band AB magnitude")
    for row in rows:
        echo(f"  tract {row.tract_id}: {row.n} objects, <i> = {row.mean_i_mag}")
    engine.dispose()
    return {"ingest": summary.as_dict(), "tracts": [tuple(r) for r in rows]}
