"""``lor export --format hats``: a HATS catalog that LSDB reads, with the run's provenance.

The catalog is checked against the database row by row, and LSDB's own cone search on it
against lor's SQL cone search over the same objects.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import Engine, text

from lor.db.params_codec import join_rows
from lor.reporting.export import export_run
from tests.db.test_posterior_views import processed_run

lsdb = pytest.importorskip("lsdb")


def test_hats_export_reads_back_with_lsdb(engine: Engine, tmp_path: Path) -> None:
    run_id = processed_run(engine, tmp_path, n=300)
    out = tmp_path / "catalog"
    summary = export_run(engine, run_id, out, "hats", progress=False)
    assert summary.format == "hats" and summary.objects == 300

    catalog = lsdb.read_hats(out)
    frame = catalog.compute().sort_values("catalog_id")
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT catalog_id, ra, dec, z_q50, ood_flags, params, params_rest "
                "FROM lor.run_posteriors(:r) "
                "ORDER BY catalog_id"
            ),
            {"r": run_id},
        ).all()
    assert frame["catalog_id"].tolist() == [r.catalog_id for r in rows]
    np.testing.assert_array_equal(frame["ra"].to_numpy(), [r.ra for r in rows])
    np.testing.assert_array_equal(frame["ood_flags"].to_numpy(), [r.ood_flags for r in rows])
    z50 = np.array([np.nan if r.z_q50 is None else r.z_q50 for r in rows], dtype=np.float32)
    np.testing.assert_array_equal(frame["z_q50"].to_numpy(dtype=np.float32), z50)
    for got, row in zip(frame["params"], rows, strict=True):
        if row.params is None:
            assert got is None or got is pd.NA or np.all(np.isnan(np.asarray(got, float)))
        else:
            want = join_rows([row.params], [row.params_rest])[0]  # as export reads it
            np.testing.assert_array_equal(np.asarray(got, np.float32), want)
    assert frame.index.name == "_healpix_29"  # HATS' spatial index, from hats-import
    assert catalog.hc_structure.catalog_info.catalog_name == "catalog"

    props = catalog.hc_structure.catalog_info.extra_dict()
    assert props["lor_run_id"] == str(run_id)
    assert json.loads(props["lor_run"])["id"] == run_id and props["lor_version"]

    # LSDB's cone search on the catalog finds the objects lor.cone finds in the database.
    ra0, dec0 = float(np.median(frame["ra"])), float(np.median(frame["dec"]))
    with engine.connect() as conn:
        radius = conn.execute(
            text(
                "SELECT percentile_cont(0.3) WITHIN GROUP (ORDER BY lor.sky_sep_deg(:a, :d, ra, dec)) "
                "FROM lor.run_posteriors(:r)"
            ),
            {"a": ra0, "d": dec0, "r": run_id},
        ).scalar_one()
        in_sql = set(
            conn.execute(
                text("SELECT catalog_id FROM lor.cone(:a, :d, :rad, :r)"),
                {"a": ra0, "d": dec0, "rad": radius, "r": run_id},
            ).scalars()
        )
    in_lsdb = set(catalog.cone_search(ra0, dec0, radius * 3600).compute()["catalog_id"])
    assert in_lsdb == in_sql and len(in_sql) > 50
