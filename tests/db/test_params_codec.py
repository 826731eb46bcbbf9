"""The stored layout of posterior parameters (migration 0010, lor.db.params_codec): the codec's
round trip and precision bound, the SQL redshift functions bit-identical on stored rows, and
the migration converting rows both ways."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import Engine, text

from lor.db.admin import temporary_database
from lor.db.engine import make_engine
from lor.db.migrate import downgrade, upgrade
from lor.db.params_codec import RELATIVE_ERROR, ParamsCodecError, join, join_rows, split
from lor.posteriors.gmm_flow import GaussianMixtureFlow
from lor.posteriors.synthetic import random_params
from lor.runs.processing import ObjectBatch, PosteriorBatch
from tests.db.test_posterior_views import BOX_HI, BOX_LO, GmmProcessor, processed_run

#: Redshift functions on the stored ``params`` of a row (alias p) or on a full array (:a).
PZ_SQL = (
    "lor.pz_pdf({p}, 0.9)",
    "lor.pz_cdf({p}, 0.7)",
    "lor.pz_prob({p}, 0.8, 1.0)",
    "lor.pz_quantile({p}, 0.5)",
    "lor.pz_quantile({p}, 0.975)",
    "lor.pz_bin_probs({p}, ARRAY[0, 0.5, 1, 4]::float8[])",
)


def _flow(k: int, d: int) -> GaussianMixtureFlow:
    return GaussianMixtureFlow(BOX_LO[:d], BOX_HI[:d], n_components=k)


@pytest.mark.parametrize("k,d", [(4, 8), (3, 8), (2, 2), (5, 3)])
def test_round_trip_keeps_the_redshift_marginal_exact_and_the_rest_within_float16(
    k: int, d: int
) -> None:
    flow = _flow(k, d)
    params = random_params(flow, 500, seed=k * 10 + d, width_range=(0.002, 3.0))
    z, rest = split(params)
    assert z.shape == (500, 4 + 3 * k) and z.dtype == np.float32
    assert rest.dtype == np.uint8 and rest.shape == (500, 2 * (len(params[0]) - 4 - 3 * k))
    assert np.all(z[:, 1] == 1)  # a gmm_flow array with D = 1
    back = join(z, rest)
    assert back.shape == params.shape and back.dtype == np.float32
    logits, means, chol = flow.unpack(params)
    b_logits, b_means, b_chol = flow.unpack(back)
    np.testing.assert_array_equal(back[:, :4], params[:, :4])
    np.testing.assert_array_equal(b_logits, logits)
    np.testing.assert_array_equal(b_means[..., 0], means[..., 0])
    np.testing.assert_array_equal(b_chol[..., 0, 0], chol[..., 0, 0])
    # the z entries in z: header (D = 1), logits, z means, L00 in the SQL functions' order
    np.testing.assert_array_equal(z[:, 4 : 4 + k], logits)
    np.testing.assert_array_equal(z[:, 4 + k : 4 + 2 * k], means[..., 0])
    np.testing.assert_array_equal(z[:, 4 + 2 * k :], chol[..., 0, 0])
    err = np.abs(back - params)
    bound = np.maximum(RELATIVE_ERROR * np.abs(params), 2.0**-25)
    assert np.all(err <= bound)
    if d > 1:
        assert err.max() > 0  # the rest is rounded: the bound is what the test checks
    np.testing.assert_array_equal(join(*split(back)), back)  # float16 values survive as-is
    np.testing.assert_array_equal(join_rows(list(z), [r.tobytes() for r in rest]), back)


def test_split_refuses_what_the_layout_cannot_hold() -> None:
    params = random_params(_flow(4, 8), 3, seed=1)
    with pytest.raises(ParamsCodecError, match="float16's range"):
        split(np.where(np.arange(params.shape[1]) == 20, 1e6, params).astype(np.float32))
    with pytest.raises(ParamsCodecError, match="header"):
        split(np.zeros((2, 184), np.float32))
    with pytest.raises(ParamsCodecError, match="floats"):
        split(params[:, :-1])
    other = params.copy()
    other[1, :2] = (60, 1)  # K = 60, D = 1 also takes 184 floats
    with pytest.raises(ParamsCodecError, match="share K and D"):
        split(other)


class RecordingProcessor(GmmProcessor):
    """GmmProcessor that keeps the float32 parameters it returned, by object id."""

    def __init__(self) -> None:
        super().__init__()
        self.made: dict[object, np.ndarray] = {}

    def process(self, batch: ObjectBatch) -> PosteriorBatch:
        out = super().process(batch)
        for i, oid in enumerate(batch.object_id):
            self.made[oid] = np.asarray(out.params[i], np.float32)
        return out


def test_sql_redshift_functions_on_stored_rows_equal_them_on_the_full_float32_array(
    engine: Engine, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    from lor.runs.lifecycle import create_run
    from lor.runs.processing import process_run
    from tests.db.test_posterior_views import register_estimator_row
    from tests.workers.support import ingest_synthetic

    ingest_synthetic(engine, tmp_path, 80, "DR1", seed=3)
    proc = RecordingProcessor()
    run = create_run(
        engine, "DR1", name="codec", estimator=register_estimator_row(engine, proc.flow)
    ).run
    process_run(engine, run.id, processor=proc, progress=False)
    stored_sql = ", ".join(s.format(p="p.params") for s in PZ_SQL)
    full_sql = ", ".join(s.format(p="CAST(:a AS real[])") for s in PZ_SQL)
    checked = 0
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                f"SELECT object_id, params, params_rest, {stored_sql}, "
                "lor.pz_prob(p, 0.8, 1.0) FROM lor.posteriors p "
                "WHERE run_id = :r AND params IS NOT NULL"
            ),
            {"r": run.id},
        ).all()
        for row in rows:
            made = proc.made[row.object_id]
            full = conn.execute(text(f"SELECT {full_sql}"), {"a": [float(v) for v in made]}).one()
            assert tuple(row[3:-1]) == tuple(full)  # bit for bit (float equality)
            assert row[-1] == full[2]  # the row form reads the stored marginal too
            back = join_rows([row.params], [row.params_rest])[0]
            assert np.all(
                np.abs(back - made) <= np.maximum(RELATIVE_ERROR * np.abs(made), 2.0**-25)
            )
            checked += 1
        conn.execute(text("CREATE TEMP TABLE full_params (object_id uuid, params real[])"))
        conn.execute(
            text("INSERT INTO full_params VALUES (:o, :a)"),
            [{"o": r.object_id, "a": [float(v) for v in proc.made[r.object_id]]} for r in rows],
        )
        nz = "lor.nz(params, 0, 3, 31 ORDER BY object_id)"
        nz_stored, nz_full = conn.execute(
            text(
                f"SELECT (SELECT {nz} FROM lor.posteriors WHERE run_id = :r), "
                f"(SELECT {nz} FROM full_params)"
            ),
            {"r": run.id},
        ).one()
    assert checked == len(rows) > 40
    assert nz_stored == nz_full and len(nz_stored) == 31


def _snapshot(engine: Engine, run_id: int) -> dict[object, tuple]:  # type: ignore[type-arg]
    """Per posterior: its stored parameter columns and the redshift functions on them."""
    sql = ", ".join(s.format(p="params") for s in PZ_SQL)
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                f"SELECT posterior_id, params, "
                f"{'params_rest' if _has_rest(conn) else 'NULL'}, {sql} "
                "FROM lor.posteriors WHERE run_id = :r"
            ),
            {"r": run_id},
        ).all()
    return {r[0]: tuple(r[1:]) for r in rows}


def _has_rest(conn) -> bool:  # type: ignore[no-untyped-def]
    return bool(
        conn.execute(
            text(
                "SELECT count(*) FROM information_schema.columns WHERE table_schema = 'lor' "
                "AND table_name = 'posteriors' AND column_name = 'params_rest'"
            )
        ).scalar_one()
    )


def test_migration_0010_converts_rows_down_and_up(server_url: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    with temporary_database(server_url, "lor_test_0010") as url:
        eng = make_engine(url)
        upgrade(eng)
        run_id = processed_run(eng, tmp_path, n=120)
        stored = _snapshot(eng, run_id)
        full = {
            pid: None if v[0] is None else join_rows([v[0]], [v[1]])[0] for pid, v in stored.items()
        }
        assert downgrade(eng, "0009") == "0009"
        down = _snapshot(eng, run_id)
        assert down.keys() == stored.keys()
        for pid, values in down.items():
            params, rest, *pz = values
            assert rest is None
            if full[pid] is None:
                assert params is None
                continue
            # one float32 array again: the codec's join, and the same redshift results
            np.testing.assert_array_equal(np.asarray(params, np.float32), full[pid])
            assert tuple(pz) == stored[pid][2:]
        with eng.connect() as conn:
            assert conn.execute(
                text("SELECT to_regclass('lor.ix_posteriors_tract_id_object_id') IS NOT NULL")
            ).scalar_one()
        upgrade(eng)
        assert _snapshot(eng, run_id) == stored  # float16 entries convert back exactly
        eng.dispose()
