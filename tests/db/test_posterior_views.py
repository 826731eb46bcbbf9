"""Posterior views and functions (lor/db/sql/0003_posterior_views.sql) on the real PostgreSQL.

Runs are processed by :class:`GmmProcessor`, which writes valid gmm_flow posteriors (so the
redshift SQL functions apply) and no posterior for every fifth object.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from sqlalchemy import Engine, text

from lor.bench.sql_tract import SQL_FIRST_ID, SQL_TRACT, fabricate_tract
from lor.catalog.ingest import ingest_catalog
from lor.db.admin import temporary_database
from lor.db.engine import make_engine
from lor.db.migrate import downgrade, upgrade
from lor.posteriors import GaussianMixtureFlow
from lor.posteriors.synthetic import random_params
from lor.runs.lifecycle import create_run, extend_run
from lor.runs.processing import ObjectBatch, PosteriorBatch, process_run
from tests.pipeline.catalog_files import write_catalog
from tests.workers.support import ingest_synthetic

BOX_LO = np.array([0.01, 7.0, -2.0, -1.0, 0.01, 0.0, 0.0, -4.0])
BOX_HI = np.array([4.0, 12.5, 0.4, 1.3, 1.0, 3.0, 2.0, -1.0])
FLAG_NO_POSTERIOR = 1


def gmm_flow() -> GaussianMixtureFlow:
    """The production box (D=8) with K=3."""
    return GaussianMixtureFlow(BOX_LO, BOX_HI, n_components=3)


class GmmProcessor:
    """Seeded gmm_flow posteriors with their summaries; objects with ``object_id.int % 5 == 0``
    (and all-NaN rows) get no posterior (NULL params, method 'none', flag 1)."""

    def __init__(self, flow: GaussianMixtureFlow | None = None, seed: int = 0) -> None:
        self.flow = flow or gmm_flow()
        self.seed = seed

    def process(self, batch: ObjectBatch) -> PosteriorBatch:
        n = len(batch)
        seed = self.seed + (batch.object_id[0].int % 2**31 if n else 0)
        params = random_params(self.flow, n, seed=seed, width_range=(0.05, 0.8))
        unlucky = np.array([o.int % 5 == 0 for o in batch.object_id], bool)
        none = unlucky | ~np.isfinite(batch.flux).any(axis=1)
        summaries = {c: np.full(n, np.nan) for c in ("z_mean", "z_q16", "z_q50", "z_q84")}
        if (~none).any():
            stats = self.flow.summaries(params[~none])
            summaries = {c: np.full(n, np.nan) for c in stats}
            for c, v in stats.items():
                summaries[c][~none] = v
        params[none] = np.nan
        return PosteriorBatch(
            params=params,
            summaries=summaries,
            ood_flags=np.where(none, FLAG_NO_POSTERIOR, 0).astype(np.int32),
            method=np.where(none, "none", "amortized"),
            representation_name=self.flow.name,
            representation_version=self.flow.version,
        )


def register_estimator_row(engine: Engine, flow: GaussianMixtureFlow, sha_seed: int = 1) -> int:
    """An estimator model version recording ``flow`` as its representation (no artifact)."""
    import json

    rep = {"name": flow.name, "version": flow.version, "config": flow.config()}
    with engine.begin() as conn:
        band_set = conn.execute(text("SELECT id FROM lor.band_sets ORDER BY id LIMIT 1")).scalar()
        return conn.execute(
            text(
                """INSERT INTO lor.model_versions (kind, family_name, family_version,
                       artifact_sha256, artifact_uri, band_set_id, param_names,
                       training_ranges, metrics, config)
                   VALUES ('estimator', 'test-gmm', '1', :sha, '/nowhere', :bs, '{z}',
                           CAST(:ranges AS jsonb), '{}', '{}') RETURNING id"""
            ),
            {
                "sha": f"{sha_seed:064x}",
                "bs": band_set,
                "ranges": json.dumps({"representation": rep}),
            },
        ).scalar_one()


def processed_run(engine: Engine, tmp_path: Path, n: int = 200, seed: int = 1) -> int:
    """Ingest ``n`` synthetic objects into DR1, run GmmProcessor over them; the run id."""
    ingest_synthetic(engine, tmp_path, n, "DR1", seed=seed)
    flow = gmm_flow()
    estimator = register_estimator_row(engine, flow)
    run = create_run(engine, "DR1", name="gmm", estimator=estimator).run
    process_run(engine, run.id, processor=GmmProcessor(flow), progress=False)
    return run.id


def _rows(engine: Engine, sql: str, **params: object) -> list:  # type: ignore[type-arg]
    with engine.connect() as conn:
        return conn.execute(text(sql), params).all()


def test_run_posteriors_one_row_per_object_with_the_object_joined(engine, tmp_path) -> None:  # type: ignore[no-untyped-def]
    run_id = processed_run(engine, tmp_path)
    rows = _rows(engine, "SELECT * FROM lor.run_posteriors(:r)", r=run_id)
    truth = {
        r.object_id: r
        for r in _rows(engine, "SELECT object_id, catalog_id, ra, dec, tract_id FROM lor.objects")
    }
    assert len(rows) == 200 == len({r.catalog_id for r in rows})
    for row in rows:
        obj = truth[row.object_id]
        assert (row.catalog_id, row.ra, row.dec, row.tract_id) == (
            obj.catalog_id, obj.ra, obj.dec, obj.tract_id,
        )  # fmt: skip
        assert row.run_id == run_id and row.representation_name == "gmm_flow"
        assert (row.params is None) == (row.method == "none")
    assert any(r.params is None for r in rows) and any(r.params is not None for r in rows)
    assert _rows(engine, "SELECT * FROM lor.run_posteriors(:r)", r=run_id + 99) == []


def test_run_posteriors_keeps_the_newest_version_of_a_changed_object(engine, tmp_path) -> None:  # type: ignore[no-untyped-def]
    base = ingest_synthetic(engine, tmp_path, 60, "DR1", seed=4)
    flow = gmm_flow()
    run = create_run(engine, "DR1", estimator=register_estimator_row(engine, flow)).run
    process_run(engine, run.id, processor=GmmProcessor(flow), progress=False)
    g = base["g_cModelFlux"].to_numpy().copy()
    g[:10] *= 1.05
    dr2 = base.set_column(base.schema.get_field_index("g_cModelFlux"), "g_cModelFlux", pa.array(g))
    ingest_catalog(engine, write_catalog(dr2, tmp_path / "dr2.parquet"), "DR2", progress=False)
    changed = set(base["objectId"].to_numpy()[:10].tolist())
    extend_run(engine, run.id, "DR2")
    sql = """SELECT r.catalog_id, o.release_id, o.superseded_release_id
             FROM lor.run_posteriors(:r) r JOIN lor.objects o USING (tract_id, object_id)"""

    pending = _rows(engine, sql, r=run.id)  # new versions not processed yet: old rows stay
    assert len(pending) == 60
    assert {r.catalog_id for r in pending if r.superseded_release_id is not None} == changed

    process_run(engine, run.id, processor=GmmProcessor(flow), progress=False)
    done = _rows(engine, sql, r=run.id)
    assert len(done) == 60 == len({r.catalog_id for r in done})
    assert all(r.superseded_release_id is None for r in done)
    dr2_id = _rows(engine, "SELECT id FROM lor.releases WHERE name = 'DR2'")[0].id
    assert {r.catalog_id for r in done if r.release_id == dr2_id} == changed


def test_latest_posteriors_prefers_the_newest_run(engine, tmp_path) -> None:  # type: ignore[no-untyped-def]
    first = processed_run(engine, tmp_path, n=80)
    flow = gmm_flow()
    # Another estimator makes another model bundle, so every object is queued again.
    second = create_run(engine, "DR1", estimator=register_estimator_row(engine, flow, 2)).run
    assert second.id != first
    process_run(engine, second.id, processor=GmmProcessor(flow, seed=7), progress=False)
    latest = _rows(engine, "SELECT catalog_id, run_id, posterior_id FROM lor.latest_posteriors")
    assert len(latest) == 80 == len({r.catalog_id for r in latest})
    assert {r.run_id for r in latest} == {second.id}
    tract = latest[0]
    one = _rows(
        engine,
        "SELECT run_id FROM lor.latest_posteriors WHERE tract_id = :t AND catalog_id = :c",
        t=_rows(
            engine,
            "SELECT tract_id FROM lor.posteriors WHERE posterior_id = :p",
            p=tract.posterior_id,
        )[0].tract_id,
        c=tract.catalog_id,
    )
    assert [r.run_id for r in one] == [second.id]


@pytest.mark.parametrize("p_min", [0.9, 0.6, 0.3])
def test_z_between_equals_the_brute_force_probability_cut(engine, tmp_path, p_min: float) -> None:  # type: ignore[no-untyped-def]
    run_id = processed_run(engine, tmp_path, n=400, seed=5)
    tracts = _rows(
        engine,
        "SELECT tract_id, count(*) FROM lor.posteriors WHERE run_id = :r GROUP BY 1 ORDER BY 2 DESC",
        r=run_id,
    )
    hits = 0
    for z1, z2 in ((0.3, 1.5), (1.0, 2.5), (0.05, 3.9)):
        for tract in tracts[:3]:
            brute = _rows(
                engine,
                """SELECT o.catalog_id, lor.pz_prob(p.params, :z1, :z2) AS p
                   FROM lor.posteriors p JOIN lor.objects o USING (tract_id, object_id)
                   WHERE p.run_id = :r AND p.tract_id = :t
                     AND lor.pz_prob(p.params, :z1, :z2) > :p_min""",
                r=run_id, t=tract.tract_id, z1=z1, z2=z2, p_min=p_min,
            )  # fmt: skip
            fast = _rows(
                engine,
                "SELECT catalog_id, p_z FROM lor.run_posteriors_z_between(:r, :t, :z1, :z2, :p_min)",
                r=run_id, t=tract.tract_id, z1=z1, z2=z2, p_min=p_min,
            )  # fmt: skip
            assert sorted(fast) == pytest.approx(sorted(brute))
            hits += len(fast)
    assert hits > 0


def _plan(engine: Engine, sql: str, **params: object) -> tuple[str, list[str]]:
    """The plan and its index conditions."""
    with engine.connect() as conn:
        plan = "\n".join(conn.execute(text("EXPLAIN " + sql), params).scalars())
    return plan, [line for line in plan.splitlines() if "Index Cond" in line]


def test_functions_are_inlined_and_use_the_indexes(engine, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """On 20000 analysed rows in one tract (copies, as lor bench pipeline makes them)."""
    run_id = processed_run(engine, tmp_path, n=100)
    copies, _ = fabricate_tract(engine, run_id, 20_000)
    tract = SQL_TRACT
    plan, conditions = _plan(
        engine, f"SELECT * FROM lor.run_posteriors(:r) WHERE tract_id = {tract}", r=copies
    )
    assert "Function Scan" not in plan  # inlined: the filter reaches the tables
    # A tract that fills its partition may be read by a plain scan; either way the tract
    # condition must reach the table (an index or a filter), not wait outside a function.
    reached = [line for line in plan.splitlines() if "Cond:" in line or "Filter:" in line]
    assert any(f"tract_id = {tract}" in line for line in reached)
    sql = f"SELECT * FROM lor.run_posteriors_z_between(:r, {tract}, 0.8, 1.0, 0.9)"
    plan, conditions = _plan(engine, sql, r=copies)
    assert "Function Scan" not in plan
    assert any("z_q50 >= " in line for line in conditions)  # the prefilter reaches an index
    sql = f"SELECT * FROM lor.latest_posteriors WHERE catalog_id = {SQL_FIRST_ID + 7}"
    plan, conditions = _plan(engine, sql)
    assert any("catalog_id = " in line for line in conditions)  # filtered before DISTINCT ON
    assert any("object_id = " in line and "run_id" not in line for line in conditions)
    with engine.connect() as conn:
        one = conn.execute(text(sql)).all()
    assert len(one) == 1 and one[0].run_id == copies


def test_readers_and_workers_may_query(engine, tmp_path) -> None:  # type: ignore[no-untyped-def]
    run_id = processed_run(engine, tmp_path, n=20)
    with engine.connect() as conn:
        for role in ("lor_reader", "lor_worker"):
            conn.execute(text(f"SET ROLE {role}"))
            n = conn.execute(
                text("SELECT count(*) FROM lor.run_posteriors(:r)"), {"r": run_id}
            ).scalar_one()
            m = conn.execute(text("SELECT count(*) FROM lor.latest_posteriors")).scalar_one()
            conn.execute(
                text("SELECT * FROM lor.run_posteriors_z_between(:r, 1, 0.1, 0.2, 0.9)"),
                {"r": run_id},
            ).all()
            assert n == m == 20
            conn.execute(text("RESET ROLE"))
        comments = conn.execute(
            text(
                """SELECT count(*) FILTER (WHERE col_description(a.attrelid, a.attnum) IS NULL)
                   FROM pg_attribute a
                   WHERE a.attrelid = 'lor.latest_posteriors'::regclass AND a.attnum > 0"""
            )
        ).scalar_one()
        assert comments == 0
        assert conn.execute(
            text("SELECT obj_description('lor.latest_posteriors'::regclass)")
        ).scalar_one()


def test_downgrade_drops_and_upgrade_restores(server_url: str) -> None:
    with temporary_database(server_url, "lor_test_views") as url:
        eng = make_engine(url)
        upgrade(eng)
        assert downgrade(eng, "0002") == "0002"
        with eng.connect() as conn:
            left = conn.execute(
                text(
                    """SELECT (SELECT count(*) FROM pg_proc WHERE proname LIKE 'run_posteriors%'),
                              to_regclass('lor.latest_posteriors'),
                              to_regclass('lor.ix_posteriors_run_id_tract_id_z_q50'),
                              to_regclass('lor.ix_posteriors_tract_id_object_id')"""
                )
            ).one()
        assert tuple(left) == (0, None, None, None)
        upgrade(eng)
        with eng.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM lor.latest_posteriors")).scalar() == 0
        eng.dispose()
