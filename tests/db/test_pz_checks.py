"""Migration 0006 (lor/db/sql/0006_pz_checks.sql): corrupt params arrays raise clear errors, valid
ones give exactly 0004's values (issue #16: a zero sigma raised 'division by zero', a NaN
sigma returned 0, a 2-D array said 'got <NULL> and <NULL>')."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError

from lor.db.admin import temporary_database
from lor.db.engine import make_engine
from lor.db.migrate import upgrade
from tests.db.test_fast_pz import _all_grids, _cases

CALLS = (
    "lor.pz_pdf(CAST(:p AS real[]), 0.9)",
    "lor.pz_cdf(CAST(:p AS real[]), 0.9)",
    "lor.pz_prob(CAST(:p AS real[]), 0.8, 1.0)",
    "lor.pz_quantile(CAST(:p AS real[]), 0.5)",
)


def _params(sigma: float) -> list[float]:
    """A valid K = 4, D = 8 array whose first component's redshift scale is ``sigma``."""
    p = [float(v) for v in _cases()[0][0]]
    k, d = int(p[0]), int(p[1])
    p[4 + k + k * d] = sigma  # L_1[0, 0]
    return p


def test_valid_arrays_give_0004_values_bit_for_bit(server_url: str) -> None:
    cases = _cases()
    with temporary_database(server_url, "lor_test_pz_checks") as url:
        eng = make_engine(url)
        upgrade(eng, "0004")
        before = _all_grids(eng, cases)
        upgrade(eng)
        assert _all_grids(eng, cases) == before
        eng.dispose()


@pytest.mark.parametrize("call", CALLS)
@pytest.mark.parametrize("sigma", [0.0, float("nan"), float("inf")])
def test_bad_sigma_is_a_clear_error(engine: Engine, call: str, sigma: float) -> None:
    with (
        engine.connect() as conn,
        pytest.raises(DBAPIError, match="component 1 has redshift scale"),
    ):
        conn.execute(text(f"SELECT {call}"), {"p": _params(sigma)})


@pytest.mark.parametrize("call", CALLS)
def test_two_dimensional_array_is_a_clear_error(engine: Engine, call: str) -> None:
    flat = _params(0.5)
    square = np.asarray(flat[: len(flat) // 2 * 2]).reshape(2, -1).tolist()
    literal = "{" + ",".join("{" + ",".join(map(repr, row)) + "}" for row in square) + "}"
    with engine.connect() as conn, pytest.raises(DBAPIError, match="one-dimensional real"):
        conn.execute(text(f"SELECT {call}"), {"p": literal})
