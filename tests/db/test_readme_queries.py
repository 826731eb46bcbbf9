"""Every ```sql block of README.md runs as written on a migrated database with posteriors.

The database holds run 1 over objects of tract 9813 (the run and tract the README queries
name), processed with gmm_flow posteriors of which every other one is narrow around z = 0.9
with log M* ~ 11 and log sSFR = -12, so the README's examples select objects.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
from sqlalchemy import Engine

from lor.bench.synthetic_catalog import synthetic_object_table
from lor.catalog.ingest import ingest_catalog
from lor.posteriors.base import LOG_MSTAR_INDEX, REDSHIFT_INDEX
from lor.runs.lifecycle import create_run
from lor.runs.processing import ObjectBatch, PosteriorBatch, process_run
from tests.db.test_posterior_views import GmmProcessor, gmm_flow, register_estimator_row
from tests.pipeline.catalog_files import write_catalog

README = Path(__file__).resolve().parents[2] / "README.md"
README_TRACT = 9813
SQL_BLOCK = re.compile(r"^```sql[ \t]*\n(.*?)^```", re.MULTILINE | re.DOTALL)


def readme_sql_blocks() -> list[str]:
    return [block.strip() for block in SQL_BLOCK.findall(README.read_text())]


class ConcentratedProcessor(GmmProcessor):
    """GmmProcessor's posteriors; every other one narrowed to z ~ 0.9, log M* ~ 11, quiescent."""

    def process(self, batch: ObjectBatch) -> PosteriorBatch:
        out = super().process(batch)
        params = out.params.copy()
        pick = np.isfinite(params).all(axis=1) & (np.arange(len(params)) % 2 == 0)
        if not pick.any():
            return out
        flow = self.flow
        logits, means, chol = flow.unpack(params[pick].astype(np.float64))
        centre = 0.5 * (flow.box_lo + flow.box_hi)
        for dim, value, width in ((REDSHIFT_INDEX, 0.9, 0.02), (LOG_MSTAR_INDEX, 11.0, 0.1)):
            theta = centre.copy()
            theta[dim] = value
            means[:, :, dim] = flow.to_u(theta[None, :])[0, dim]  # every component there
            chol[:, :, dim, :dim] = 0.0  # uncorrelated, width (in u) on the diagonal
            chol[:, :, dim, dim] = width
        params[pick] = flow.pack(logits, means, chol)
        summaries = {c: v.copy() for c, v in out.summaries.items()}
        for column, values in flow.summaries(params[pick]).items():
            summaries.setdefault(column, np.full(len(params), np.nan))[pick] = values
        # log SFR needs the SPS model (NaN here); quiescent values let the README's mass/SFR
        # query select these objects too.
        summaries["log_sfr_q50"][pick] = summaries["log_mstar_q50"][pick] - 12.0
        return dataclasses.replace(out, params=params, summaries=summaries)


def database_for_readme(engine: Engine, tmp_path: Path, n: int = 60) -> int:
    """Ingest ``n`` objects into tract 9813 of DR1 and process them as the first run."""
    table = synthetic_object_table(n, seed=3)
    table = table.set_column(
        table.schema.get_field_index("tract"), "tract", pa.array(np.full(n, README_TRACT))
    )
    ingest_catalog(engine, write_catalog(table, tmp_path / "DR1.parquet"), "DR1", progress=False)
    flow = gmm_flow()
    run = create_run(engine, "DR1", name="readme", estimator=register_estimator_row(engine, flow))
    process_run(engine, run.run.id, processor=ConcentratedProcessor(flow), progress=False)
    return run.run.id


def test_readme_sql_blocks_run_as_written(engine: Engine, tmp_path: Path) -> None:
    blocks = readme_sql_blocks()
    assert len(blocks) >= 2, "README.md has fewer ```sql blocks than expected; check the regex"
    assert database_for_readme(engine, tmp_path) == 1  # the run id the README queries name
    failures, answered = [], 0
    raw = engine.raw_connection()  # plain DB-API: the SQL goes to the server untouched
    try:
        for sql in blocks:
            cur = raw.cursor()
            try:
                cur.execute(sql)
                answered += bool(cur.fetchall())
            except Exception as exc:  # report every failing block, not just the first
                failures.append(f"{sql}\n  -> {type(exc).__name__}: {exc}")
            finally:
                cur.close()
                raw.rollback()
    finally:
        raw.close()
    assert not failures, "README SQL blocks failed:\n\n" + "\n\n".join(failures)
    assert answered, "no README query returned rows: do its run/tract still match this test?"
