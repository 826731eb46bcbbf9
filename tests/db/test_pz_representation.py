"""Migration 0009: the row forms of the redshift SQL functions check each row's posterior
representation, equal the real[] forms on gmm_flow rows, and raise on any other."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, text

from tests.db.test_posterior_views import processed_run

ROW_AND_ARRAY = (
    ("lor.pz_pdf(p, 0.9)", "lor.pz_pdf(p.params, 0.9)"),
    ("lor.pz_cdf(p, 0.9)", "lor.pz_cdf(p.params, 0.9)"),
    ("lor.pz_prob(p, 0.8, 1.0)", "lor.pz_prob(p.params, 0.8, 1.0)"),
    ("lor.pz_quantile(p, 0.5)", "lor.pz_quantile(p.params, 0.5)"),
    ("lor.pz_bin(p, ARRAY[0, 0.5, 1, 4]::float8[])", "lor.pz_bin(p.params, ARRAY[0, 0.5, 1, 4]::float8[])"),
    ("lor.pz_bin_probs(p, ARRAY[0, 1, 4]::float8[])", "lor.pz_bin_probs(p.params, ARRAY[0, 1, 4]::float8[])"),
)  # fmt: skip


def _relabel(engine: Engine, run_id: int, name: str, version: str) -> int:
    """Stamp a few of the run's rows with another representation; how many."""
    with engine.begin() as conn:
        return conn.execute(
            text(
                """UPDATE lor.posteriors SET representation_name = :n, representation_version = :v
                   WHERE posterior_id IN (SELECT posterior_id FROM lor.posteriors
                                          WHERE run_id = :r AND params IS NOT NULL LIMIT 3)"""
            ),
            {"r": run_id, "n": name, "v": version},
        ).rowcount


def test_row_forms_equal_array_forms_on_gmm_flow_rows(engine, tmp_path) -> None:  # type: ignore[no-untyped-def]
    run_id = processed_run(engine, tmp_path, n=60)
    with engine.connect() as conn:
        for row_form, array_form in ROW_AND_ARRAY:
            for table in ("lor.posteriors p WHERE p.run_id = :r", "lor.run_posteriors(:r) p"):
                pairs = conn.execute(
                    text(f"SELECT {row_form}, {array_form}, p.params IS NULL FROM {table}"),
                    {"r": run_id},
                ).all()
                assert len(pairs) == 60
                assert all(a == b for a, b, _ in pairs), row_form
                # no posterior (NULL params): NULL, as the STRICT array forms give
                assert all((a is None) == missing for a, _, missing in pairs), row_form
                assert any(missing for *_, missing in pairs)


@pytest.mark.parametrize("name,version", [("gmm_flow", "2"), ("normalizing_spline", "1")])
def test_row_forms_refuse_another_representation(engine, tmp_path, name, version) -> None:  # type: ignore[no-untyped-def]
    run_id = processed_run(engine, tmp_path, n=40)
    assert _relabel(engine, run_id, name, version) == 3
    with engine.connect() as conn:
        for row_form, _ in ROW_AND_ARRAY:
            with pytest.raises(
                Exception, match=f"pz: posterior representation '{name}' version '{version}'"
            ):
                conn.execute(
                    text(f"SELECT {row_form} FROM lor.run_posteriors(:r) p"), {"r": run_id}
                ).all()
            conn.rollback()
        # the gmm_flow rows still read
        n = conn.execute(
            text(
                "SELECT count(lor.pz_prob(p, 0.0, 5.0)) FROM lor.posteriors p "
                "WHERE p.run_id = :r AND p.representation_name = 'gmm_flow' "
                "AND p.representation_version = '1'"
            ),
            {"r": run_id},
        ).scalar_one()
        assert n > 0


def test_z_between_checks_the_rows_it_evaluates(engine, tmp_path) -> None:  # type: ignore[no-untyped-def]
    run_id = processed_run(engine, tmp_path, n=40)
    sql = text(
        "SELECT count(z.*) FROM (SELECT DISTINCT tract_id FROM lor.posteriors WHERE run_id = :r) t"
        " CROSS JOIN LATERAL lor.run_posteriors_z_between(:r, t.tract_id, 0.0, 5.0, 0.0) z"
    )
    with engine.connect() as conn:
        assert conn.execute(sql, {"r": run_id}).scalar_one() > 0
    _relabel(engine, run_id, "other", "1")
    with (
        engine.connect() as conn,
        pytest.raises(Exception, match="pz: posterior representation 'other'"),
    ):
        conn.execute(sql, {"r": run_id}).scalar_one()


def test_the_check_and_roles(engine: Engine) -> None:
    with engine.connect() as conn:
        check = "SELECT lor.pz_representation_check(CAST(:n AS text), CAST(:v AS text))"
        assert conn.execute(text(check), {"n": "gmm_flow", "v": "1"}).scalar_one() is True
        for n, v in (("gmm_flow", None), (None, "1"), ("GMM_FLOW", "1")):
            with pytest.raises(Exception, match="pz: posterior representation"):
                conn.execute(text(check), {"n": n, "v": v})
            conn.rollback()
        for role in ("lor_reader", "lor_worker"):
            allowed = conn.execute(
                text(
                    "SELECT has_function_privilege(:r, 'lor.pz_prob(record, float8, float8)', 'EXECUTE')"
                ),
                {"r": role},
            ).scalar_one()
            assert allowed
