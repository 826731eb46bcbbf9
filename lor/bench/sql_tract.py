"""The SQL figures of ``lor bench pipeline``, and the tract of copied posteriors they (and
``lor bench sql``) run on.

:func:`fabricate_tract` copies a processed run's posteriors (with fresh object and posterior
ids) ``rows`` times round into one new tract under a separate run and analyses the tables;
:func:`sql_figures` times ``P(z1 < z < z2) > p`` over it 3 times (median, min, max), both as
``lor.run_posteriors_z_between`` (quantile prefilter through the index) and as the plain
query that evaluates ``lor.pz_prob`` on every row of the tract; both must select the same
objects (checked again with a looser cut, whose answer is not empty).
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import Engine, text

from lor.bench.harness import MIN_REPEATS, time_figures
from lor.posteriors.base import SUMMARY_COLUMNS

SQL_TRACT = 99_999
SQL_FIRST_ID = 8_000_000_000_000_000
Z1, Z2, P_MIN = 0.8, 1.0, 0.9
#: A looser cut that selects objects even when posteriors are broad (agreement check).
WIDE = (0.5, 1.5, 0.5)


def fabricate_tract(
    engine: Engine,
    source_run: int,
    rows: int,
    field: tuple[float, float, float, float] | None = None,
) -> tuple[int, float]:
    """Copy ``source_run``'s posteriors (and their objects) ``rows`` times round into one new
    tract under a new run, with fresh ids; ANALYZE. Returns (run id, seconds).

    With ``field = (ra0, ra1, dec0, dec1)`` the copies get positions of their own, spread
    evenly over that field (R2 low-discrepancy sequence, uniform in area), instead of
    repeating the source positions: what cone-search and cross-match figures need."""
    from lor.db import run_store as store
    from lor.version import code_version

    t0 = time.perf_counter()
    cols = ", ".join(SUMMARY_COLUMNS)
    src_cols = ", ".join(f"s.{c}" for c in SUMMARY_COLUMNS)
    src = """SELECT row_number() OVER (ORDER BY p.posterior_id) - 1 AS i, p.*, o.catalog_id,
                    o.release_id, o.ra, o.dec, o.flux, o.flux_err, o.missing_mask,
                    o.nondetection_mask, o.ebv
             FROM lor.posteriors p JOIN lor.objects o USING (tract_id, object_id)
             WHERE p.run_id = :src"""
    with engine.begin() as conn:
        conn.execute(text("SET LOCAL work_mem = '256MB'"))  # hash the source rows in memory
        run = store.get_run(conn, source_run)
        versions = dict(
            zip(("emulator", "estimator", "prior", "calibration"), run.bundle, strict=True)
        )
        run_id = store.insert_run(
            conn, "bench-sql-copies", run.release_id, versions, code_version(),
            {"copied_from_run": source_run, "rows": rows},
        )  # fmt: skip
        n_src = conn.execute(
            text("SELECT count(*) FROM lor.posteriors WHERE run_id = :r"), {"r": source_run}
        ).scalar_one()
        conn.execute(
            text(
                "INSERT INTO lor.tracts (id, scheme) VALUES (:t, 'catalog') ON CONFLICT DO NOTHING"
            ),
            {"t": SQL_TRACT},
        )
        args = {"src": source_run, "n": rows, "n_src": n_src, "t": SQL_TRACT, "run": run_id}
        position = "s.ra, s.dec"
        if field is not None:
            args |= dict(zip(("ra0", "ra1", "dec0", "dec1"), field, strict=True))
            frac = "(g * {a} + 0.5 - floor(g * {a} + 0.5))::float8"
            position = (
                f"CAST(:ra0 AS float8) + (:ra1 - :ra0) * {frac.format(a=0.7548776662466927)}, "
                f"asind(sind(:dec0) + (sind(:dec1) - sind(:dec0)) * {frac.format(a=0.5698402909980532)})"
            )
        conn.execute(
            text(
                f"""INSERT INTO lor.objects (tract_id, object_id, catalog_id, release_id, ra, dec,
                        flux, flux_err, missing_mask, nondetection_mask, ebv, input_hash)
                    SELECT :t, CAST(md5('lor-bench-object:' || g) AS uuid), :first + g, s.release_id,
                        {position}, s.flux, s.flux_err, s.missing_mask, s.nondetection_mask,
                        s.ebv, s.input_hash
                    FROM generate_series(0, :n - 1) AS g JOIN ({src}) s ON s.i = g % :n_src"""
            ),
            args | {"first": SQL_FIRST_ID},
        )
        conn.execute(
            text(
                f"""INSERT INTO lor.posteriors (tract_id, posterior_id, run_id, object_id,
                        representation_name, representation_version, params, params_rest,
                        {cols}, ood_flags,
                        method, input_hash, worker_host)
                    SELECT :t, CAST(md5('lor-bench-posterior:' || g) AS uuid), :run,
                        CAST(md5('lor-bench-object:' || g) AS uuid), s.representation_name,
                        s.representation_version, s.params, s.params_rest, {src_cols},
                        s.ood_flags, s.method, s.input_hash, 'lor-bench-copy'
                    FROM generate_series(0, :n - 1) AS g JOIN ({src}) s ON s.i = g % :n_src"""
            ),
            args,
        )
        store.finish_if_done(conn, run_id)
    with engine.begin() as conn:
        for table in ("lor.objects", "lor.posteriors", "lor.tracts"):
            conn.execute(text(f"ANALYZE {table}"))
    return run_id, time.perf_counter() - t0


def _best_of(
    engine: Engine, sql: str, params: dict[str, Any], repeat: int = MIN_REPEATS,
    budget_s: float = 60.0,
) -> tuple[list[float], int]:  # fmt: skip
    """Seconds of ``repeat`` runs (fewer, but at least one, once ``budget_s`` is spent) and
    the rows returned.

    Memoize is off: the fabricated rows repeat the same ``params`` arrays, which PostgreSQL
    would otherwise cache pz_prob results for, unlike on real, all-distinct posteriors.
    """
    seconds: list[float] = []
    n = -1
    for _ in range(repeat):
        with engine.connect() as conn:
            conn.execute(text("SET enable_memoize = off"))
            t0 = time.perf_counter()
            n = len(conn.execute(text(sql), params).all())
            seconds.append(time.perf_counter() - t0)
        if sum(seconds) > budget_s:
            break
    return seconds, n


def _index_conditions(plan: str) -> str:
    return "\n".join(line for line in plan.splitlines() if "Index Cond" in line)


#: The plain form of the query: pz_prob evaluated on every row of the tract.
FULL_SCAN_QUERY = """
SELECT o.catalog_id, p.z_q50, lor.pz_prob(p.params, :z1, :z2) AS p_z
FROM lor.posteriors p JOIN lor.objects o USING (tract_id, object_id)
WHERE p.run_id = :run AND p.tract_id = :tract
  AND p.ood_flags = 0 AND lor.pz_prob(p.params, :z1, :z2) > :p
ORDER BY p_z DESC"""
#: The same question through lor.run_posteriors_z_between (quantile prefilter, z_q50 index).
PREFILTERED_QUERY = """
SELECT catalog_id, z_q50, p_z FROM lor.run_posteriors_z_between(:run, :tract, :z1, :z2, :p)
WHERE ood_flags = 0 ORDER BY p_z DESC"""


def sql_figures(engine: Engine, run_id: int, rows: int) -> dict[str, Any]:
    """Time P(z1 < z < z2) > p over the fabricated tract both ways; check they agree.

    The headline cut P(0.8 < z < 1.0) > 0.9 is strict for broad-band photo-z and may select
    no object; the looser :data:`WIDE` cut shows the same agreement on a non-empty answer.
    """
    out: dict[str, Any] = {"sql_rows": rows}
    for key, (z1, z2, p) in (("sql_prob_query", (Z1, Z2, P_MIN)), ("sql_prob_query_wide", WIDE)):
        params = {"run": run_id, "tract": SQL_TRACT, "z1": z1, "z2": z2, "p": p}
        fast_s, fast_hits = _best_of(engine, PREFILTERED_QUERY, params)
        full_s, full_hits = _best_of(engine, FULL_SCAN_QUERY, params)
        if fast_hits != full_hits:
            raise RuntimeError(f"{key}: prefiltered query found {fast_hits}, full scan {full_hits}")
        with engine.connect() as conn:
            conn.execute(text("SET enable_memoize = off"))
            plan = "\n".join(conn.execute(text("EXPLAIN " + PREFILTERED_QUERY), params).scalars())
        out |= time_figures(f"{key}_s", fast_s) | time_figures(f"{key}_full_scan_s", full_s)
        out |= {
            f"{key}_hits": fast_hits,
            f"{key}_uses_z_index": "z_q50 >= " in _index_conditions(plan),
        }
    summary_sql = """SELECT count(*) FROM lor.run_posteriors(:run)
                     WHERE tract_id = :tract AND z_q50 BETWEEN :z1 AND :z2"""
    seconds, _ = _best_of(
        engine, summary_sql, {"run": run_id, "tract": SQL_TRACT, "z1": Z1, "z2": Z2}
    )
    return out | time_figures("sql_summary_query_s", seconds)
