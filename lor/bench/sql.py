"""``lor bench sql`` and ``lor bench export``: science queries and exports on 1e6 posteriors.

Data: a catalog simulated with the shipped emulator (10-year depth) is ingested and processed
by the shipped estimator (real posteriors), then copied ``rows`` times round into one tract
with positions of their own spread over a ~9 deg^2 field (``fabricate_tract`` of
:mod:`lor.bench.sql_tract`), about LSST's gold-sample density (~30 per arcmin^2). Figures:

- ``nz_query_s``: ``lor.nz(params, 0, 3, 301)`` over a 10% sample of the tract (~1e5
  objects, ``catalog_id % 10 = 0``);
- ``cone_query_ms``: ``lor.cone(ra, dec, 0.1)`` (objects with their latest posterior's
  summaries) at 20 random centres in the field, ``cone_query_all_columns_ms`` with every
  column (params too), and ``cone_objects_ms`` for the index search alone;
- ``crossmatch_objects_per_s``: ``lor.crossmatch`` of 1e5 external positions (stored
  positions moved by ~0.3 arcsec; 10% moved by 10 arcsec, mostly unmatched), radius 1 arcsec;
- ``pz_prob_query_s``: README's P(0.8 < z < 1.0) > 0.9 query over the tract as written, and
  ``pz_prob_query_prefiltered_s`` through ``lor.run_posteriors_z_between``;
- export: ``hats_objects_per_s``, ``qp_objects_per_s`` (and Parquet for reference).

Every timing is the median of ``repeats`` runs with min and max; the 1-minute load average
before and after is reported (the machine is shared).
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import Engine, text

from lor.bench.pipeline import (
    RELEASE,
    bench_priors,
    create_bench_run,
    write_simulated_catalog,
)
from lor.bench.sql_tract import SQL_TRACT, fabricate_tract
from lor.db.admin import temporary_database
from lor.db.engine import make_engine, resolve_database_url
from lor.db.migrate import upgrade
from lor.version import code_version

#: (ra0, ra1, dec0, dec1): about 9 deg^2 around (51.7, -30).
FIELD = (50.0, 53.464, -31.5, -28.5)
NZ_GRID = (0.0, 3.0, 301)
README_QUERY = """
SELECT catalog_id, z_q50, lor.pz_prob(params, 0.8, 1.0) AS p
FROM lor.run_posteriors(:run)
WHERE tract_id = :tract AND ood_flags = 0 AND lor.pz_prob(params, 0.8, 1.0) > 0.9"""
PREFILTERED_QUERY = """SELECT catalog_id, z_q50, p_z
FROM lor.run_posteriors_z_between(:run, :tract, 0.8, 1.0, 0.9) WHERE ood_flags = 0"""
#: README's cone: summaries of every object within 0.1 deg (SELECT * adds the params arrays,
#: which the Python client parses: ``cone_query_all_columns_ms``).
CONE_QUERY = """SELECT catalog_id, sep_deg, z_q50, log_mstar_q50 FROM lor.cone(:ra, :dec, 0.1)"""
NZ_QUERY = """SELECT lor.nz(params, :zmin, :zmax, :n), count(params)
FROM lor.run_posteriors(:run) WHERE tract_id = :tract AND catalog_id % 10 = 0"""

Echo = Callable[[str], None]


def _stats(name: str, seconds: list[float], scale: float = 1.0) -> dict[str, float]:
    """Median, min and max of repeated timings (times ``scale``)."""
    values = [s * scale for s in seconds]
    return {
        name: statistics.median(values),
        f"{name}_min": min(values),
        f"{name}_max": max(values),
    }


def _timed(fn: Callable[[], Any], repeats: int) -> tuple[list[float], Any]:
    seconds, result = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        seconds.append(time.perf_counter() - t0)
    return seconds, result


def prepare_posteriors(
    engine: Engine, tmp: Path, rows: int, source_objects: int, echo: Echo
) -> tuple[int, dict[str, float]]:
    """Simulate, ingest and process ``source_objects``, copy them into ``rows`` posteriors
    with their own positions over :data:`FIELD`; returns (run id, seconds per step)."""
    from lor.catalog.ingest import ingest_catalog
    from lor.reporting.demo import register_shipped_models
    from lor.runs.processing import clear_processor_cache, limit_compute_threads, process_run

    limit_compute_threads()
    took: dict[str, float] = {}
    t0 = time.perf_counter()
    path = write_simulated_catalog(tmp / "objects.parquet", source_objects, 5)
    ingest_catalog(engine, path, RELEASE, progress=False)
    models = register_shipped_models(engine)
    prior = bench_priors(engine, ("sql",))["sql"]
    run_id = create_bench_run(engine, "bench-sql-source", models, prior, 2000)
    process_run(engine, run_id, progress=False)
    clear_processor_cache()
    took["prepare_source_s"] = time.perf_counter() - t0
    echo(f"processed {source_objects} simulated objects ({took['prepare_source_s']:.1f} s)")
    sql_run, took["fabricate_s"] = fabricate_tract(engine, run_id, rows, field=FIELD)
    echo(f"copied them into {rows} posteriors in tract {SQL_TRACT} ({took['fabricate_s']:.1f} s)")
    return sql_run, took


def _cone_centres(n: int, rng: np.random.Generator) -> np.ndarray:
    ra0, ra1, dec0, dec1 = FIELD
    return np.column_stack(
        [rng.uniform(ra0 + 0.2, ra1 - 0.2, n), rng.uniform(dec0 + 0.2, dec1 - 0.2, n)]
    )


def sql_figures(engine: Engine, run_id: int, repeats: int, n_external: int, echo: Echo) -> dict:
    """The timings of the module docstring on a prepared database."""
    from lor.query.sky import crossmatch

    out: dict[str, Any] = {}
    rng = np.random.default_rng(15)
    args = {"run": run_id, "tract": SQL_TRACT}
    nz_args = args | dict(zip(("zmin", "zmax", "n"), NZ_GRID, strict=True))
    with engine.connect() as conn:
        seconds, (nz, count) = _timed(lambda: conn.execute(text(NZ_QUERY), nz_args).one(), repeats)
        out |= _stats("nz_query_s", seconds) | {"nz_objects": int(count)}
        out["nz_integral"] = float(np.trapezoid(nz, np.linspace(*NZ_GRID)))
        echo(f"n(z) of {count} objects on {NZ_GRID[2]} points: {statistics.median(seconds):.2f} s")

        centres = _cone_centres(max(repeats, 20), rng)
        cone_sql = text(CONE_QUERY)
        all_sql = text("SELECT * FROM lor.cone(:ra, :dec, 0.1)")
        objects_sql = text("SELECT count(*) FROM lor.cone_objects(:ra, :dec, 0.1)")
        conn.execute(cone_sql, {"ra": centres[0, 0], "dec": centres[0, 1]}).all()  # warm-up
        cone_s, all_s, obj_s, found = [], [], [], []
        for ra, dec in centres:
            for sql, seconds in ((cone_sql, cone_s), (all_sql, all_s), (objects_sql, obj_s)):
                t0 = time.perf_counter()
                rows = conn.execute(sql, {"ra": ra, "dec": dec}).all()
                seconds.append(time.perf_counter() - t0)
                if sql is cone_sql:
                    found.append(len(rows))
        out |= _stats("cone_query_ms", cone_s, 1e3) | _stats("cone_objects_ms", obj_s, 1e3)
        out |= _stats("cone_query_all_columns_ms", all_s, 1e3)
        out |= {"cone_queries": len(centres), "cone_objects_median": float(np.median(found))}
        plan = "\n".join(
            conn.execute(
                text("EXPLAIN " + CONE_QUERY),
                {"ra": 51.7, "dec": -30.0},
            ).scalars()
        )
        out["cone_uses_sky_index"] = "sky_zone_ra_idx" in plan
        out["cone_plan_jit"] = "JIT" in plan
        echo(f"cone r=0.1 deg: {np.median(found):.0f} objects, {out['cone_query_ms']:.1f} ms")

        ra, dec = (
            np.array(v)
            for v in zip(
                *conn.execute(
                    text(
                        "SELECT ra, dec FROM lor.objects WHERE tract_id = :tract "
                        "ORDER BY md5(object_id::text) LIMIT :n"
                    ),
                    {"tract": SQL_TRACT, "n": n_external},
                ).all(),
                strict=True,
            )
        )
        nudge = rng.normal(0, 0.3 / 3600, (2, ra.size))
        ra, dec = np.mod(ra + nudge[0] / np.cos(np.radians(dec)), 360), dec + nudge[1]
        lost = rng.random(ra.size) < 0.1  # mostly no object within 1 arcsec of these
        ra[lost] = np.mod(ra[lost] + 10 / 3600 / np.cos(np.radians(dec[lost])), 360)

        for key, sql in (
            ("pz_prob_query", README_QUERY),
            ("pz_prob_query_prefiltered", PREFILTERED_QUERY),
        ):
            conn.execute(text("SET enable_memoize = off"))  # copies repeat params arrays
            seconds, hits = _timed(
                lambda sql=sql: len(conn.execute(text(sql), args).all()), repeats
            )
            out |= _stats(f"{key}_s", seconds) | {f"{key}_hits": hits}
            echo(f"{key}: {hits} objects, {statistics.median(seconds):.2f} s")
    seconds, table = _timed(lambda: crossmatch(engine, ra, dec, 1.0, run_id), repeats)
    out |= _stats("crossmatch_s", seconds)
    out["crossmatch_objects_per_s"] = ra.size / out["crossmatch_s"]
    out["crossmatch_objects_per_s_min"] = ra.size / out["crossmatch_s_max"]
    out["crossmatch_objects_per_s_max"] = ra.size / out["crossmatch_s_min"]
    out |= {"crossmatch_positions": int(ra.size), "crossmatch_matched": table.num_rows}
    echo(f"cross-match {ra.size} positions: {out['crossmatch_objects_per_s']:.0f}/s")
    with engine.connect() as conn:
        out["sky_index_mb"] = conn.execute(
            text(
                "SELECT sum(pg_relation_size(i.indexrelid)) / 1e6 FROM pg_index i "
                "JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relname LIKE 'objects_p%sky_zone_ra%'"
            )
        ).scalar_one()
    return out


def export_figures(engine: Engine, run_id: int, repeats: int, tmp: Path, echo: Echo) -> dict:
    """Objects per second of ``lor export`` as HATS, qp and (reference) Parquet."""
    from lor.reporting.export import export_run

    out: dict[str, Any] = {}
    for fmt, name in (("parquet", "run.parquet"), ("qp", "run.hdf5"), ("hats", "run_hats")):
        seconds, summary = _timed(
            lambda fmt=fmt, name=name: export_run(engine, run_id, tmp / name, fmt, progress=False),
            repeats,
        )
        rates = sorted(summary.objects / s for s in seconds)
        out |= {
            f"{fmt}_objects_per_s": statistics.median(rates),
            f"{fmt}_objects_per_s_min": rates[0],
            f"{fmt}_objects_per_s_max": rates[-1],
            f"{fmt}_objects": summary.objects,
        }
        echo(f"export {fmt}: {out[f'{fmt}_objects_per_s']:.0f} objects/s")
    return out


def run_benchmark(
    kind: str, rows: int, source_objects: int, repeats: int, n_external: int, echo: Echo = print
) -> dict[str, Any]:
    """``kind`` is ``sql`` or ``export``; see the module docstring."""
    load_start = os.getloadavg()[0]
    out: dict[str, Any] = {"benchmark": kind, "git_commit": code_version(), "repeats": repeats}
    server = resolve_database_url()
    with (
        tempfile.TemporaryDirectory() as tmp,
        temporary_database(server, "lor_bench") as url,
    ):
        engine = make_engine(url)
        upgrade(engine)
        run_id, took = prepare_posteriors(engine, Path(tmp), rows, source_objects, echo)
        out |= took
        if kind == "sql":
            out |= sql_figures(engine, run_id, repeats, n_external, echo)
        else:
            out |= export_figures(engine, run_id, repeats, Path(tmp), echo)
        engine.dispose()
    out |= {
        "rows": rows, "source_objects": source_objects, "cpu_count": os.cpu_count(),
        "load_avg_1m_start": load_start, "load_avg_1m_end": os.getloadavg()[0],
        "server": "embedded pgserver" if "host=/" in server else "LOR_DATABASE_URL",
        "data": (
            f"{source_objects} objects simulated with the shipped emulator (LSST 10-year, "
            f"i < 25.3), processed by the shipped estimator, copied into {rows} posteriors in "
            f"one tract with positions spread over {FIELD} (~9 deg^2); n(z) grid {NZ_GRID}"
        ),
    }  # fmt: skip
    return out
