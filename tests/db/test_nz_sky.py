"""n(z), tomographic bins, cone search and cross-match (lor/db/sql/0005_nz_sky.sql) on real PostgreSQL.

n(z) is held to the Python representation (GaussianMixtureFlow.z_pdf averaged over objects)
to 1e-9; cones and cross-matches to a brute-force search with astropy's separations.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord
from sqlalchemy import Engine, text

from lor.bench.synthetic_catalog import synthetic_object_table
from lor.catalog.ingest import ingest_catalog
from lor.db.params_codec import join_rows
from lor.posteriors.synthetic import random_params
from lor.query import nz as nzq
from lor.query import sky
from lor.runs.lifecycle import create_run
from lor.runs.processing import process_run
from tests.db.test_posterior_views import GmmProcessor, gmm_flow, register_estimator_row
from tests.pipeline.catalog_files import write_catalog

TOL = 1e-9


def _run_at(engine: Engine, tmp_path: Path, ra: np.ndarray, dec: np.ndarray) -> int:
    """Objects at the given positions, processed with seeded gmm_flow posteriors."""
    table = synthetic_object_table(len(ra), seed=11)
    for name, values in (("coord_ra", ra), ("coord_dec", dec)):
        table = table.set_column(table.schema.get_field_index(name), name, pa.array(values))
    ingest_catalog(engine, write_catalog(table, tmp_path / "sky.parquet"), "DR1", progress=False)
    flow = gmm_flow()
    run = create_run(engine, "DR1", name="nz", estimator=register_estimator_row(engine, flow)).run
    process_run(engine, run.id, processor=GmmProcessor(flow), progress=False)
    return run.id


def _posteriors(engine: Engine, run_id: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT catalog_id, z_q50, params, params_rest FROM lor.run_posteriors(:r) "
                "WHERE params IS NOT NULL ORDER BY catalog_id"
            ),
            {"r": run_id},
        ).all()
    ids = np.array([r.catalog_id for r in rows])
    params = join_rows([r.params for r in rows], [r.params_rest for r in rows])
    return ids, np.array([r.z_q50 for r in rows]), params


@pytest.fixture
def nz_run(engine: Engine, tmp_path: Path) -> int:
    rng = np.random.default_rng(3)
    return _run_at(engine, tmp_path, rng.uniform(10, 11, 150), rng.uniform(-5, -4, 150))


@pytest.mark.parametrize("grid", [(0.0, 3.0, 301), (0.3, 1.7, 57), (-1.0, 5.0, 40)])
def test_nz_equals_the_stacked_python_density(engine: Engine, nz_run: int, grid: tuple) -> None:
    _, _, params = _posteriors(engine, nz_run)
    with engine.connect() as conn:
        got, z, count = conn.execute(
            text(
                "SELECT lor.nz(params, :a, :b, :n), lor.nz_grid(:a, :b, :n), count(params) "
                "FROM lor.run_posteriors(:r)"
            ),
            {"a": grid[0], "b": grid[1], "n": grid[2], "r": nz_run},
        ).one()
    assert count == len(params) > 100  # rows without a posterior (NULL params) not counted
    np.testing.assert_allclose(z, np.linspace(*grid), rtol=0, atol=1e-15)
    want = nzq.stacked_pdf(gmm_flow(), params, np.asarray(z))
    assert np.max(np.abs(np.asarray(got) - want)) < TOL
    assert np.max(want) > 0.1  # not a comparison of zeros


def test_nz_jackknife_and_tomographic_bins_match_python(engine: Engine, nz_run: int) -> None:
    ids, z50, params = _posteriors(engine, nz_run)
    flow, edges = gmm_flow(), [0.0, 0.8, 1.5, 4.0]
    result = nzq.run_nz(engine, nz_run, None, 0.0, 3.0, 61, "median", edges)
    with engine.connect() as conn:
        groups = np.array(
            conn.execute(
                text("SELECT lor.nz_group(c) FROM unnest(CAST(:ids AS bigint[])) AS c"),
                {"ids": ids.tolist()},
            )
            .scalars()
            .all()
        )
        by_prob = np.array(
            conn.execute(
                text(
                    "SELECT lor.pz_bin(params, CAST(:e AS float8[])) FROM lor.run_posteriors(:r) "
                    "WHERE params IS NOT NULL ORDER BY catalog_id"
                ),
                {"e": edges, "r": nz_run},
            )
            .scalars()
            .all()
        )
    assert len(set(groups)) > 20 and groups.min() >= 0 and groups.max() <= 31
    in_bin = np.digitize(z50, edges)
    assert [b.bin for b in result.bins] == sorted(set(in_bin))
    for b in result.bins:
        pick = in_bin == b.bin
        assert b.n_objects == pick.sum()
        per_group = [(g, pick & (groups == g)) for g in np.unique(groups[pick])]
        nz_g = np.array([nzq.stacked_pdf(flow, params[m], result.z) for _, m in per_group])
        want, err = nzq.jackknife(nz_g, np.array([m.sum() for _, m in per_group]))
        assert np.max(np.abs(b.nz - want)) < TOL
        assert np.max(np.abs(b.nz_err - err)) < TOL and np.max(err) > 0
    cdf = flow.z_cdf(params, np.asarray(edges)[None, :])
    assert np.array_equal(by_prob, np.argmax(np.diff(cdf, axis=1), axis=1) + 1)
    png = nzq.plot_nz(result, Path(engine.url.database or "x").with_suffix(".png").absolute())
    assert png.stat().st_size > 10_000
    png.unlink()


def test_nz_refuses_bad_requests(engine: Engine, nz_run: int) -> None:
    with pytest.raises(nzq.NzError, match="grid"):
        nzq.run_nz(engine, nz_run, zmin=1.0, zmax=1.0)
    with pytest.raises(nzq.NzError, match="edges"):
        nzq.run_nz(engine, nz_run, assign="median", edges=[1.0, 0.5])
    with pytest.raises(Exception, match="read-only"):  # a where clause cannot write
        nzq.run_nz(engine, nz_run, where="nextval('lor.processing_runs_id_seq') > 0")
    with engine.connect() as conn, pytest.raises(Exception, match="params has 5 floats"):
        conn.execute(text("SELECT lor.nz(CAST('{1,2,0,4,0}' AS real[]), 0, 3, 11)"))


def _truth(ra: np.ndarray, dec: np.ndarray, ra0: float, dec0: float, r_deg: float) -> set[int]:
    sep = SkyCoord(ra * u.deg, dec * u.deg).separation(SkyCoord(ra0 * u.deg, dec0 * u.deg))
    return set(np.flatnonzero(sep.deg <= r_deg).tolist())


@pytest.mark.parametrize("centre", [(0.02, 10.0), (359.97, -20.0), (180.0, 89.95), (120.0, -0.01)])
def test_cone_finds_exactly_the_objects_within_the_radius(
    engine: Engine, tmp_path: Path, centre: tuple[float, float]
) -> None:
    ra0, dec0 = centre
    rng = np.random.default_rng(7)
    n, r = 600, 0.1
    # Objects in a 0.3-deg box around the centre (RA wraps at 0/360; the pole case wraps all RA).
    dec = np.clip(dec0 + rng.uniform(-0.3, 0.3, n), -90, 90)
    ra = np.mod(ra0 + rng.uniform(-0.3, 0.3, n) / max(np.cos(np.radians(dec0)), 0.05), 360)
    if dec0 > 89:
        ra = rng.uniform(0, 360, n)
    run_id = _run_at(engine, tmp_path, ra, dec)
    with engine.connect() as conn:
        ids = np.array(
            conn.execute(
                text("SELECT catalog_id FROM lor.run_posteriors(:r) ORDER BY catalog_id"),
                {"r": run_id},
            )
            .scalars()
            .all()
        )
        found = conn.execute(
            text("SELECT catalog_id, sep_deg FROM lor.cone_objects(:a, :d, :r)"),
            {"a": ra0, "d": dec0, "r": r},
        ).all()
        # 600 rows in 16 partitions: with ingest's statistics a sequential scan of each tiny
        # partition is cheapest, so ask which index the planner uses when scans are ruled out
        conn.execute(text("SET LOCAL enable_seqscan = off"))
        plan = "\n".join(
            conn.execute(
                text("EXPLAIN SELECT * FROM lor.cone(:a, :d, :r)"),
                {"a": ra0, "d": dec0, "r": r},
            )
            .scalars()
            .all()
        )
    first = int(synthetic_object_table(1, seed=11)["objectId"][0].as_py())
    want = _truth(ra, dec, ra0, dec0, r)
    assert {c - first for c, _ in found} == want and len(want) > 20
    with_posterior = {int(c) - first for c in ids}
    rows = sky.cone(engine, ra0, dec0, r)
    assert {row["catalog_id"] - first for row in rows} == want & with_posterior
    assert [row["sep_deg"] for row in rows] == sorted(row["sep_deg"] for row in rows)
    assert "sky_zone_ra_idx" in plan and "Seq Scan on objects" not in plan, plan


def test_crossmatch_returns_the_nearest_object_of_each_position(
    engine: Engine, tmp_path: Path
) -> None:
    rng = np.random.default_rng(9)
    ra, dec = rng.uniform(30, 30.5, 400), rng.uniform(5, 5.5, 400)
    run_id = _run_at(engine, tmp_path, ra, dec)
    first = int(synthetic_object_table(1, seed=11)["objectId"][0].as_py())
    pick = rng.choice(400, 120, replace=False)
    offset = rng.normal(0, 0.3, (2, 120)) / 3600  # ~0.3 arcsec scatter
    ext_ra, ext_dec = ra[pick] + offset[0] / np.cos(np.radians(dec[pick])), dec[pick] + offset[1]
    ext_ra, ext_dec = np.append(ext_ra, 200.0), np.append(ext_dec, 0.0)  # one with no match
    table = sky.crossmatch(engine, ext_ra, ext_dec, 2.0, run_id=run_id)
    got = dict(zip(table["idx"].to_pylist(), table["catalog_id"].to_pylist(), strict=True))
    cat = SkyCoord(ra * u.deg, dec * u.deg)
    j, sep, _ = SkyCoord(ext_ra * u.deg, ext_dec * u.deg).match_to_catalog_sky(cat)
    with engine.connect() as conn:
        has_post = set(
            conn.execute(
                text("SELECT catalog_id - :f FROM lor.run_posteriors(:r)"),
                {"f": first, "r": run_id},
            )
            .scalars()
            .all()
        )
    want = {i: int(j[i]) + first for i in range(len(ext_ra)) if sep[i].arcsec <= 2.0}
    want = {i: c for i, c in want.items() if c - first in has_post}
    assert got == want and len(want) > 80
    np.testing.assert_allclose(
        table["sep_arcsec"].to_numpy(), sep.arcsec[table["idx"].to_numpy()], atol=1e-6
    )
    with pytest.raises(sky.SkyQueryError, match="radius"):
        sky.crossmatch(engine, ext_ra, ext_dec, -1.0)
    with pytest.raises(sky.SkyQueryError, match="outside"):
        sky.cone(engine, 361.0, 0.0, 0.1)


def test_cli_nz_cone_and_xmatch(lor_env: str, engine: Engine, tmp_path: Path) -> None:
    import json

    import pyarrow.parquet as pq
    from click.testing import CliRunner

    from lor.cli.main import cli

    rng = np.random.default_rng(5)
    ra, dec = rng.uniform(70, 70.3, 200), rng.uniform(-10, -9.7, 200)
    run_id = _run_at(engine, tmp_path, ra, dec)
    runner = CliRunner()
    png, truth = tmp_path / "nz.png", tmp_path / "truth.parquet"
    ids = synthetic_object_table(200, seed=11)["objectId"]
    pq.write_table(pa.table({"objectId": ids, "redshift": rng.uniform(0, 3, 200)}), truth)
    res = runner.invoke(
        cli, ["nz", str(run_id), "--where", "ood_flags = 0", "--grid", "0,3,31",
              "--bins", "0,1,4", "--plot", str(png), "--truth", str(truth)],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    summary = json.loads(res.output.strip().splitlines()[-1])
    assert sum(b["n_objects"] for b in summary["bins"]) > 100 and png.stat().st_size > 10_000
    res = runner.invoke(cli, ["cone", "--run", str(run_id), "--", "70.15", "-9.85", "0.05"])
    assert res.exit_code == 0 and "objects within 0.05 deg" in res.output, res.output
    pq.write_table(pa.table({"ra": ra[:20], "dec": dec[:20]}), tmp_path / "pos.parquet")
    out = tmp_path / "matches.parquet"
    res = runner.invoke(cli, ["xmatch", str(tmp_path / "pos.parquet"), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert pq.read_table(out)["idx"].to_pylist() == list(range(20))
    res = runner.invoke(cli, ["nz", str(run_id), "--grid", "3,0,31"])
    assert res.exit_code == 2 and "zmin < zmax" in res.output


def test_embedded_postgresql_16_has_the_same_sky_index_and_nz(tmp_path: Path) -> None:
    """The embedded default (pgserver's PostgreSQL 16, no extensions) runs 0005 natively."""
    import subprocess
    import sys

    env = {"LOR_HOME": str(tmp_path / "home"), "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
           "HOME": str(tmp_path)}  # fmt: skip
    script = "from lor.cli.main import cli; import sys; sys.argv=['lor']+sys.argv[1:]; cli()"

    def lor(*args: str) -> subprocess.CompletedProcess:  # type: ignore[type-arg]
        return subprocess.run([sys.executable, "-c", script, *args], env=env,
                              capture_output=True, text=True, timeout=300)  # fmt: skip

    table = synthetic_object_table(3000, seed=4)  # ra 50-60, dec -40..-30
    path = write_catalog(table, tmp_path / "c.parquet")
    try:
        assert lor("db", "upgrade").returncode == 0
        assert lor("ingest", str(path), "--release", "DR1").returncode == 0
        url = lor("db", "url").stdout.strip()
        flow = gmm_flow()
        p = random_params(flow, 3, seed=2, width_range=(0.05, 0.8))
        rows = ", ".join("('{" + ",".join(repr(float(v)) for v in r) + "}'::real[])" for r in p)
        sql = f"""SELECT current_setting('server_version_num');
            SELECT count(*) FROM lor.cone_objects(55, -35, 0.3);
            EXPLAIN SELECT * FROM lor.cone(55, -35, 0.3);
            SELECT array_to_string(lor.nz(x, 0, 3, 31), ',') FROM (VALUES {rows}) AS v(x);"""
        out = subprocess.run(["psql", url, "-At", "-c", sql], capture_output=True, text=True,
                             timeout=120)  # fmt: skip
        assert out.returncode == 0, out.stderr
        lines = out.stdout.strip().splitlines()
        assert lines[0].startswith("16")
        ra, dec = table["coord_ra"].to_numpy(), table["coord_dec"].to_numpy()
        assert int(lines[1]) == len(_truth(ra, dec, 55.0, -35.0, 0.3)) > 0
        assert any("sky_zone_ra_idx" in line for line in lines[2:-1])
        got = np.array([float(v) for v in lines[-1].split(",")])
        want = nzq.stacked_pdf(flow, p, np.linspace(0, 3, 31))
        assert np.max(np.abs(got - want)) < TOL
    finally:
        lor("db", "stop")
