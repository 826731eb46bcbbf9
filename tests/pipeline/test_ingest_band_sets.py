"""Ingest by band set: a catalog with some of the release's bands takes the missing-band path;
a catalog with more bands than the release's gives only the release's; the stored band set
carries its definition; one name means one definition."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import text

from lor.bands import load_band_set
from lor.bench.synthetic_catalog import synthetic_object_table
from lor.catalog.ingest import CatalogColumns, ingest_catalog
from lor.db import catalog_store
from lor.errors import IngestError
from tests.pipeline.catalog_files import write_catalog

N = 200


def _objects(engine, release: str) -> list:
    with engine.connect() as conn:
        return conn.execute(
            text(
                "SELECT catalog_id, flux, flux_err, missing_mask FROM lor.objects_as_of(:r)"
                " ORDER BY catalog_id"
            ),
            {"r": release},
        ).all()


def test_lsst_catalog_into_lsst_euclid_release_marks_euclid_bands_missing(
    engine, tmp_path: Path
) -> None:
    table = synthetic_object_table(N, seed=11)  # ugrizy columns only
    path = write_catalog(table, tmp_path / "lsst.parquet")
    with pytest.raises(IngestError, match="I_E"):  # all ten bands expected by default
        ingest_catalog(engine, path, "LE1", CatalogColumns(band_set="lsst-euclid"), progress=False)
    cols = CatalogColumns(band_set="lsst-euclid", bands=tuple("ugrizy"))
    summary = ingest_catalog(engine, path, "LE1", cols, progress=False)
    assert (summary.rows_new, summary.rows_rejected) == (N, 0)
    rows = _objects(engine, "LE1")
    assert len(rows) == N
    euclid_bits = sum(1 << b for b in range(6, 10))
    assert {r.missing_mask & euclid_bits for r in rows} == {euclid_bits}
    flux = np.array([r.flux for r in rows], np.float64)
    assert flux.shape == (N, 10) and np.isnan(flux[:, 6:]).all()
    np.testing.assert_allclose(
        flux[:, 3], table["i_cModelFlux"].to_numpy()[np.argsort(table["objectId"])], rtol=1e-6
    )
    with engine.connect() as conn:
        stored = conn.execute(
            text(
                "SELECT b.name, b.bands, b.filters, b.reference_band, b.definition,"
                " b.definition_sha256 FROM lor.releases r JOIN lor.band_sets b"
                " ON b.id = r.band_set_id WHERE r.name = 'LE1'"
            )
        ).one()
    band_set = load_band_set("lsst-euclid")
    assert stored.name == "lsst-euclid" and tuple(stored.bands) == band_set.band_names
    assert tuple(stored.filters) == band_set.filter_names and stored.reference_band == "i"
    assert stored.definition == band_set.as_record()
    assert stored.definition_sha256 == band_set.sha256


def test_lsst_euclid_catalog_into_lsst_release_keeps_the_release_bands(
    engine, tmp_path: Path
) -> None:
    table = synthetic_object_table(N, seed=12, band_set="lsst-euclid")
    assert "H_E_cModelFlux" in table.column_names
    path = write_catalog(table, tmp_path / "both.parquet")
    ingest_catalog(engine, path, "L1", progress=False)  # default band set: lsst
    rows = _objects(engine, "L1")
    flux = np.array([r.flux for r in rows], np.float64)
    assert flux.shape == (N, 6) and {r.missing_mask for r in rows} == {0}
    # The same file into an lsst-euclid release keeps all ten bands, none missing.
    ingest_catalog(engine, path, "LE1", CatalogColumns(band_set="lsst-euclid"), progress=False)
    rows = _objects(engine, "LE1")
    both = np.array([r.flux for r in rows], np.float64)
    assert both.shape == (N, 10) and {r.missing_mask for r in rows} == {0}
    np.testing.assert_array_equal(both[:, :6], flux)
    with pytest.raises(IngestError, match="another band set"):
        ingest_catalog(engine, path, "L1", CatalogColumns(band_set="lsst-euclid"), progress=False)


def test_one_band_set_name_one_definition(engine) -> None:
    lsst = load_band_set("lsst")
    with engine.begin() as conn:
        first = catalog_store.get_or_create_band_set(conn, lsst)
        assert catalog_store.get_or_create_band_set(conn, lsst) == first
        assert catalog_store.band_set_definition(conn, first) == lsst
    changed = type(lsst)(lsst.name, lsst.bands[:5], "i")
    with pytest.raises(IngestError, match="another definition"), engine.begin() as conn:
        catalog_store.get_or_create_band_set(conn, changed)


def test_pre_0011_row_gets_its_definition(engine) -> None:
    """A band set stored before migration 0011 (no definition) is completed on first use."""
    lsst = load_band_set("lsst")
    with engine.begin() as conn:
        old = conn.execute(
            text(
                "INSERT INTO lor.band_sets (name, bands, filters) VALUES ('lsst', :b, :f)"
                " RETURNING id"
            ),
            {"b": list(lsst.band_names), "f": list(lsst.filter_names)},
        ).scalar_one()
        assert catalog_store.band_set_definition(conn, old) is None
        assert catalog_store.get_or_create_band_set(conn, lsst) == old
        assert catalog_store.band_set_definition(conn, old) == lsst


def test_bands_outside_the_band_set_are_refused() -> None:
    with pytest.raises(IngestError, match="not in band set"):
        CatalogColumns(band_set="lsst", bands=("u", "H_E"))
    with pytest.raises(IngestError, match="unknown band set"):
        CatalogColumns(band_set="nope")
