"""Migration 0004 (lor/db/sql/0004_fast_pz.sql): the one-pass redshift functions equal 0002's bit
for bit, the normal CDF is inlined, the new prefilter tiers drop nothing, and the downgrade
puts the 0002/0003 definitions back."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import Connection, Engine, text

from lor.db.admin import temporary_database
from lor.db.engine import make_engine
from lor.db.migrate import downgrade, upgrade
from lor.posteriors import GaussianMixtureFlow
from lor.posteriors.synthetic import random_params
from tests.db.test_posterior_views import processed_run

BOX_LO = np.array([0.01, 7.0, -2.0, -1.0, 0.01, 0.0, 0.0, -4.0])
BOX_HI = np.array([4.0, 12.5, 0.4, 1.3, 1.0, 3.0, 2.0, -1.0])
Z = [-1.0, 0.01, 0.0100001, 0.5, 0.9, 1.7, 3.2, 3.99999, 4.0, 9.0]
Q = [0.0, 1e-4, 0.025, 0.16, 0.5, 0.84, 0.975, 0.9999, 1.0, 1.5]
#: Every public redshift function over a grid (g.x): inside, at and beyond the box edges.
GRID_SQL = """
SELECT c.i, g.j, lor.pz_pdf(c.params, g.x), lor.pz_cdf(c.params, g.x),
       lor.pz_prob(c.params, g.x, g.x + 0.3), lor.pz_prob(c.params, g.x - 2, g.x + 2),
       lor.pz_prob(c.params, g.x + 0.3, g.x), lor.norm_cdf(10 * g.x - 20)
FROM pz_case c CROSS JOIN unnest(CAST(:z AS double precision[])) WITH ORDINALITY AS g(x, j)
UNION ALL
SELECT c.i, 100 + g.j, lor.pz_quantile(c.params, g.x), NULL, NULL, NULL, NULL, NULL
FROM pz_case c CROSS JOIN unnest(CAST(:q AS double precision[])) WITH ORDINALITY AS g(x, j)
ORDER BY 1, 2"""


def _cases() -> list[np.ndarray]:
    out = []
    for n_dim, n_components in ((8, 4), (3, 2), (2, 1)):
        flow = GaussianMixtureFlow(BOX_LO[:n_dim], BOX_HI[:n_dim], n_components)
        out.append(random_params(flow, 40, seed=n_dim, width_range=(0.002, 3.0)))
    return out


def _grid(conn: Connection, params: np.ndarray) -> list[tuple]:  # type: ignore[type-arg]
    conn.execute(text("CREATE TEMP TABLE pz_case (i integer, params real[]) ON COMMIT DROP"))
    conn.execute(
        text("INSERT INTO pz_case VALUES (:i, CAST(:p AS real[]))"),
        [{"i": i, "p": [float(v) for v in row]} for i, row in enumerate(params)],
    )
    rows = conn.execute(text(GRID_SQL), {"z": Z, "q": Q}).all()
    conn.execute(text("DROP TABLE pz_case"))
    return [tuple(r) for r in rows]


def _all_grids(engine: Engine, cases: list[np.ndarray]) -> list[list[tuple]]:  # type: ignore[type-arg]
    with engine.begin() as conn:
        return [_grid(conn, params) for params in cases]


def test_fast_functions_equal_0002_bit_for_bit_and_downgrade_restores(server_url: str) -> None:
    cases = _cases()
    with temporary_database(server_url, "lor_test_fast_pz") as url:
        eng = make_engine(url)
        upgrade(eng, "0003")
        before = _all_grids(eng, cases)
        assert upgrade(eng, "0004") == "0004"
        assert _all_grids(eng, cases) == before  # floats compared exactly (NaN-free grid)
        assert downgrade(eng, "0003") == "0003"
        assert _all_grids(eng, cases) == before
        with eng.connect() as conn:
            left = conn.execute(
                text(
                    """SELECT to_regprocedure('lor.norm_tail(double precision)'),
                              to_regprocedure('lor.run_has_newer_posterior(integer, bigint, integer)'),
                              (SELECT l.lanname FROM pg_proc p JOIN pg_language l
                                 ON l.oid = p.prolang
                               WHERE p.oid = 'lor.norm_cdf(double precision)'::regprocedure)"""
                )
            ).one()
        assert tuple(left) == (None, None, "plpgsql")
        assert upgrade(eng, "0004") == "0004"
        eng.dispose()


def test_normal_cdf_is_inlined_into_the_pz_functions(engine: Engine) -> None:
    """Only the pz_* functions themselves are called: no nested function calls per row."""
    params = [float(v) for v in _cases()[0][0]]
    with engine.begin() as conn:
        # A table, not literals: constant arguments would be folded at planning.
        conn.execute(
            text("CREATE TEMP TABLE pz_one ON COMMIT DROP AS SELECT CAST(:p AS real[]) p"),
            {"p": params},
        )
        conn.execute(text("SET LOCAL track_functions = 'all'"))
        conn.execute(
            text(
                """SELECT lor.pz_pdf(p, 0.9), lor.pz_cdf(p, 0.9), lor.pz_prob(p, 0.8, 1.0),
                          lor.pz_quantile(p, 0.5), lor.norm_cdf(p[5])
                   FROM pz_one"""
            )
        )
        calls = dict(
            conn.execute(
                text(
                    "SELECT funcname, calls FROM pg_stat_xact_user_functions "
                    "WHERE schemaname = 'lor'"
                )
            ).all()
        )
    assert calls == {"pz_pdf": 1, "pz_cdf": 1, "pz_prob": 1, "pz_quantile": 1}


@pytest.mark.parametrize("p_min", [0.98, 0.1, 0.02])
def test_new_prefilter_tiers_drop_nothing(engine: Engine, tmp_path: Path, p_min: float) -> None:
    """p_min >= 0.975 (z_q025/z_q975) and p_min < 0.5 (z_q16/z_q84, z_q025/z_q975 bounds)."""
    run_id = processed_run(engine, tmp_path, n=300, seed=11)
    hits = 0
    with engine.connect() as conn:
        tracts = conn.execute(
            text("SELECT DISTINCT tract_id FROM lor.posteriors WHERE run_id = :r"), {"r": run_id}
        ).scalars()
        for tract in tracts:
            for z1, z2 in ((0.05, 3.9), (0.3, 1.5), (2.0, 3.0)):
                args = {"r": run_id, "t": tract, "z1": z1, "z2": z2, "p": p_min}
                brute = conn.execute(
                    text(
                        """SELECT o.catalog_id, lor.pz_prob(p.params, :z1, :z2)
                           FROM lor.posteriors p JOIN lor.objects o USING (tract_id, object_id)
                           WHERE p.run_id = :r AND p.tract_id = :t
                             AND lor.pz_prob(p.params, :z1, :z2) > :p"""
                    ),
                    args,
                ).all()
                fast = conn.execute(
                    text(
                        "SELECT catalog_id, p_z "
                        "FROM lor.run_posteriors_z_between(:r, :t, :z1, :z2, :p)"
                    ),
                    args,
                ).all()
                assert sorted(map(tuple, fast)) == sorted(map(tuple, brute))
                hits += len(fast)
    assert hits > 0
