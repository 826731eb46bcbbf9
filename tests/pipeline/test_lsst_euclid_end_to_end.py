"""The lsst-euclid band set end to end: its shipped models registered, its example catalog
and an LSST-only catalog (the missing-band path) ingested, a run created and processed with
the real estimator, posteriors queried in SQL and exported."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from sqlalchemy import text

from lor.catalog.example import example_paths
from lor.catalog.ingest import CatalogColumns, ingest_catalog
from lor.emulators.registry import SHIPPED_DIR, SHIPPED_EMULATORS, register_emulator
from lor.errors import ConfigError
from lor.inference.flags import Flag
from lor.inference.registry import SHIPPED_ESTIMATORS, register_estimator
from lor.reporting.export import export_run
from lor.runs.lifecycle import create_run
from lor.runs.processing import clear_processor_cache, process_run

BAND_SET = "lsst-euclid"


def test_lsst_euclid_catalogs_process_end_to_end(lor_env: str, engine, tmp_path: Path) -> None:
    clear_processor_cache()
    emu_name, emu_sha = SHIPPED_EMULATORS[BAND_SET]
    est_name, est_sha = SHIPPED_ESTIMATORS[BAND_SET]
    emulator = register_emulator(engine, SHIPPED_DIR / emu_name, emu_sha)
    estimator = register_estimator(engine, SHIPPED_DIR / est_name, est_sha)

    catalog, truth = example_paths(BAND_SET)
    full = ingest_catalog(engine, catalog, "LE-DR1", CatalogColumns(band_set=BAND_SET),
                          progress=False)  # fmt: skip
    assert full.rows_rejected == 1  # the example's all-NaN row
    # The same objects' LSST columns alone, as a later release: the Euclid bands go missing.
    table = pq.read_table(catalog)
    lsst_only = table.select([c for c in table.column_names if "_E_" not in c])
    path = tmp_path / "lsst_only.parquet"
    pq.write_table(lsst_only, path)
    ingest_catalog(engine, path, "LE-DR2", CatalogColumns(band_set=BAND_SET,
                   bands=tuple("ugrizy")), progress=False)  # fmt: skip

    with engine.connect() as conn:  # band positions in SQL follow each release's band set
        index = dict(
            conn.execute(text("SELECT name, lor.band_index(id, 'H_E') FROM lor.releases")).all()
        )
        h_flux = conn.execute(
            text(
                "SELECT count(*) FILTER (WHERE o.flux[lor.band_index(o.release_id, 'H_E')] > 0)"
                " FROM lor.objects_as_of('LE-DR1') o"
            )
        ).scalar_one()
    assert index == {"LE-DR1": 10, "LE-DR2": 10} and h_flux > 1900
    # An lsst release cannot take these models.
    lsst_path = tmp_path / "lsst.parquet"
    pq.write_table(lsst_only, lsst_path)
    ingest_catalog(engine, lsst_path, "L-DR1", progress=False)
    with pytest.raises(ConfigError, match="band set"):
        create_run(engine, "L-DR1", estimator=estimator)

    results = {}
    for release in ("LE-DR1", "LE-DR2"):
        run = create_run(engine, release, name=f"run-{release}").run
        assert (run.emulator_version_id, run.estimator_version_id) == (emulator, estimator)
        counts = process_run(engine, run.id, progress=False)
        assert counts.failed == 0 and counts.done > 0
        with engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT o.catalog_id, p.z_q50, p.ood_flags, lor.pz_prob(p.params, 0.0, 10.0)"
                    " AS p_all FROM lor.posteriors p JOIN lor.objects o"
                    " ON o.object_id = p.object_id AND o.tract_id = p.tract_id"
                    " WHERE p.run_id = :r ORDER BY o.catalog_id"
                ),
                {"r": run.id},
            ).all()
        assert len(rows) == counts.done
        out = export_run(engine, run.id, tmp_path / f"{release}.parquet", progress=False)
        assert out.objects == len(rows) and out.without_posterior == 0
        results[release] = rows

    z_true = dict(zip(*(pq.read_table(truth)[c].to_numpy() for c in ("objectId", "redshift")),
                      strict=True))  # fmt: skip
    for release, rows in results.items():
        ids = np.array([r.catalog_id for r in rows])
        z50 = np.array([r.z_q50 for r in rows], np.float64)
        zt = np.array([z_true[i] for i in ids])
        usable = np.isfinite(z50)
        dz = np.abs(z50[usable] - zt[usable]) / (1 + zt[usable])
        assert np.median(dz) < 0.15, (release, np.median(dz))
        p_all = np.array([r.p_all for r in rows], np.float64)[usable]
        np.testing.assert_allclose(p_all, 1.0, atol=1e-3)
        missing = np.array([r.ood_flags & Flag.MISSING_BANDS != 0 for r in rows])
        if release == "LE-DR2":  # every object lacks its Euclid bands
            assert missing.all()
    # Euclid bands sharpen redshifts: the ten-band release does better than LSST alone.
    nmad = {}
    for release, rows in results.items():
        ids = np.array([r.catalog_id for r in rows])
        z50 = np.array([r.z_q50 for r in rows], np.float64)
        zt = np.array([z_true[i] for i in ids])
        ok = np.isfinite(z50)
        d = (z50[ok] - zt[ok]) / (1 + zt[ok])
        nmad[release] = 1.4826 * np.median(np.abs(d - np.median(d)))
    assert nmad["LE-DR1"] < nmad["LE-DR2"], nmad
    clear_processor_cache()
