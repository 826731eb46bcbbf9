"""The redshift SQL functions (lor/db/sql/0002_posteriors.sql) against the Python implementation,
on the real PostgreSQL: same stored float32 arrays, agreement to 1e-9 (required: 1e-6)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import ndtr
from sqlalchemy import Engine, text

from lor.posteriors import GaussianMixtureFlow
from lor.posteriors.synthetic import random_params

TOL = 1e-9
QUANTILES = np.array([0.0, 1e-4, 0.025, 0.16, 0.5, 0.84, 0.975, 0.9999, 1.0])


def _load(conn, params: np.ndarray) -> None:  # type: ignore[no-untyped-def]
    conn.execute(text("CREATE TEMP TABLE pz_case (i integer, params real[]) ON COMMIT DROP"))
    conn.execute(
        text("INSERT INTO pz_case VALUES (:i, CAST(:p AS real[]))"),
        [{"i": i, "p": [float(v) for v in row]} for i, row in enumerate(params)],
    )


def _grid_values(conn, sql: str, points: np.ndarray, n: int) -> np.ndarray:  # type: ignore[no-untyped-def]
    rows = conn.execute(
        text(
            f"SELECT c.i, g.j, {sql} FROM pz_case c "
            "CROSS JOIN unnest(CAST(:pts AS double precision[])) WITH ORDINALITY AS g(x, j)"
        ),
        {"pts": [float(v) for v in points]},
    ).all()
    out = np.full((n, points.size), np.nan)
    for i, j, value in rows:
        out[i, j - 1] = np.nan if value is None else value
    return out


def test_norm_cdf_matches_scipy(engine: Engine) -> None:
    x = np.concatenate([np.linspace(-40.0, 40.0, 4001), [-7.071, -7.0711, 7.0711, 1e-9]])
    with engine.connect() as conn:
        got = conn.execute(
            text("SELECT lor.norm_cdf(x) FROM unnest(CAST(:x AS double precision[])) AS x"),
            {"x": x.tolist()},
        ).scalars()
        got = np.array(list(got))
    assert np.abs(got - ndtr(x)).max() < 1e-15


@pytest.mark.parametrize(
    ("n_dim", "n_components", "n_objects"), [(8, 4, 200), (3, 2, 20), (2, 1, 20)]
)
def test_sql_redshift_functions_match_python(
    engine: Engine, n_dim: int, n_components: int, n_objects: int
) -> None:
    lo = np.array([0.01, 7.0, -2.0, -1.0, 0.01, 0.0, 0.0, -4.0])[:n_dim]
    hi = np.array([4.0, 12.5, 0.4, 1.3, 1.0, 3.0, 2.0, -1.0])[:n_dim]
    flow = GaussianMixtureFlow(lo, hi, n_components)
    params = random_params(flow, n_objects, seed=n_dim, width_range=(0.005, 2.0))
    rng = np.random.default_rng(n_dim)
    z = np.concatenate([[-1.0, flow.box_lo[0], flow.box_hi[0], 9.0], rng.uniform(0.01, 4.0, 26)])
    z1, z2 = rng.uniform(0.0, 4.0, 2)
    with engine.begin() as conn:
        _load(conn, params)
        pdf = _grid_values(conn, "lor.pz_pdf(c.params, g.x)", z, n_objects)
        cdf = _grid_values(conn, "lor.pz_cdf(c.params, g.x)", z, n_objects)
        prob = _grid_values(conn, "lor.pz_prob(c.params, g.x, g.x + 0.3)", z, n_objects)
        quant = _grid_values(conn, "lor.pz_quantile(c.params, g.x)", QUANTILES, n_objects)
        swapped = conn.execute(
            text("SELECT max(lor.pz_prob(params, :z2, :z1)) FROM pz_case"),
            {"z1": min(z1, z2), "z2": max(z1, z2)},
        ).scalar_one()
    grid, levels = z[None, :], QUANTILES[None, :]
    py_pdf = flow.z_pdf(params, grid)
    scale = np.maximum(1.0, np.abs(py_pdf))
    assert np.abs((pdf - py_pdf) / scale).max() < TOL
    assert np.abs(cdf - flow.z_cdf(params, grid)).max() < TOL
    assert np.abs(prob - flow.z_prob(params, grid, grid + 0.3)).max() < TOL
    assert np.abs(quant - flow.z_quantile(params, levels)).max() < TOL
    assert swapped == 0.0


def test_sql_functions_reject_malformed_arrays_and_pass_nulls(engine: Engine) -> None:
    with engine.connect() as conn:
        null = "SELECT lor.pz_cdf(CAST(NULL AS real[]), 1.0)"  # typed: 0009 adds a row form
        assert conn.execute(text(null)).scalar_one() is None
        assert (
            conn.execute(
                text("SELECT lor.pz_quantile(ARRAY[1,1,0,1,0,0,1]::real[], 1.5)")
            ).scalar_one()
            is None
        )
        with pytest.raises(Exception, match="needs 7"):
            conn.execute(text("SELECT lor.pz_cdf(ARRAY[1,1,0,1,0,0,1,5]::real[], 0.5)"))


def test_roles_may_execute_the_functions(engine: Engine) -> None:
    with engine.connect() as conn:
        for role in ("lor_reader", "lor_worker"):
            for fn in ("pz_pdf", "pz_cdf", "pz_quantile"):
                allowed = conn.execute(
                    text("SELECT has_function_privilege(:r, :f, 'EXECUTE')"),
                    {"r": role, "f": f"lor.{fn}(real[], double precision)"},
                ).scalar_one()
                assert allowed
        conn.execute(text("SET ROLE lor_reader"))
        value = conn.execute(
            text("SELECT lor.pz_prob(ARRAY[1,1,0,1,0,0,1]::real[], 0.0, 1.0)")
        ).scalar_one()
        assert value == pytest.approx(1.0)
