"""lor as a RAIL stage on lor's example catalog, judged by RAIL's own evaluation stage.

The same catalog is processed by ``lor process`` into PostgreSQL: the RAIL stage must give
the posteriors lor stores, and RAIL's DistToPointEvaluator must rate them far above RAIL's
own random baseline estimator, with the PIT that lor's own posteriors give.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from sqlalchemy import Engine, text

from lor.catalog.example import EXAMPLE_CATALOG, EXAMPLE_TRUTH
from tests.hierarchy.conftest import example_run  # noqa: F401  (fixture)

rail_stage = pytest.importorskip("rail.core.stage")


def _evaluate(ensemble, z_true: np.ndarray, name: str) -> dict:  # type: ignore[no-untyped-def]
    from rail.evaluation.dist_to_point_evaluator import DistToPointEvaluator

    stage = DistToPointEvaluator.make_stage(
        name=name, metrics=["cdeloss", "pit"], force_exact=True, hdf5_groupname="",
        output_mode="return",
    )  # fmt: skip
    return stage.evaluate(ensemble, {"redshift": z_true})


def test_lor_rail_stage_on_the_example_catalog(
    example_run: tuple,  # noqa: F811
    engine: Engine,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from rail.core.data import DataStore
    from rail.estimation.algos.random_gauss import RandomGaussEstimator, RandomGaussInformer

    from lor.interop.rail import LorEstimator, LorInformer

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(DataStore, "allow_overwrite", True)
    table = pq.read_table(EXAMPLE_CATALOG)
    objects = {c: table[c].to_numpy() for c in table.column_names}
    truth = pq.read_table(EXAMPLE_TRUTH).to_pandas().set_index("objectId")
    z_true = truth.loc[objects["objectId"], "redshift"].to_numpy()

    model = LorInformer.make_stage(name="lor_inform", hdf5_groupname="", output_mode="return")
    estimator = LorEstimator.make_stage(
        name="lor_estimate",
        model=model.inform(objects),
        hdf5_groupname="",
        output_mode="return",
        chunk_size=700,
        zmin=0.0,
        zmax=4.0,
        nzbins=401,
    )  # fmt: skip  (the grid spans the posteriors' redshift box, 0.01 < z < 4)
    ensemble = estimator.estimate(objects).data
    assert ensemble.npdf == len(z_true)
    np.testing.assert_array_equal(ensemble.ancil["id"], objects["objectId"])

    # The same posteriors lor stores for these objects when it processes the catalog.
    run, _ = example_run
    with engine.connect() as conn:
        stored = dict(
            conn.execute(
                text("SELECT catalog_id, z_q50 FROM lor.run_posteriors(:r)"), {"r": run.id}
            ).all()
        )
    ours = dict(zip(ensemble.ancil["id"].tolist(), ensemble.ancil["z_q50"], strict=True))
    common = [i for i in stored if stored[i] is not None]
    assert len(common) > 1900
    diff = np.array([ours[i] - stored[i] for i in common])
    assert np.max(np.abs(diff)) < 1e-3  # float32 network, batch shapes differ

    baseline = RandomGaussEstimator.make_stage(
        name="random", model=RandomGaussInformer.make_stage(name="random_inform").inform(objects),
        hdf5_groupname="", output_mode="return", column_name="objectId",
    )  # fmt: skip
    lor_scores = _evaluate(ensemble, z_true, "eval_lor")
    random_scores = _evaluate(baseline.estimate(objects).data, z_true, "eval_random")
    cde_lor = float(lor_scores["summary"].data["cdeloss"][0])
    cde_random = float(random_scores["summary"].data["cdeloss"][0])
    assert cde_lor < cde_random - 2.0, (cde_lor, cde_random)
    # RAIL's PIT of the interpolated ensemble is lor's own PIT (the flow's CDF at the true z):
    # the qp representation carries the posteriors faithfully, whatever their calibration.
    from lor.inference.registry import load_shipped_estimator

    params = np.asarray(ensemble.ancil["lor_params"], np.float32)
    has = np.isfinite(params).all(axis=1)
    rep = load_shipped_estimator().representation
    own = np.sort(rep.z_cdf(params[has], z_true[has]))
    levels = np.array([0.16, 0.5, 0.84])
    pit = lor_scores["single_distribution_summary"].data["pit"]
    rail_cdf = np.ravel(pit.cdf(levels))
    np.testing.assert_allclose(rail_cdf, np.searchsorted(own, levels) / own.size, atol=0.02)
