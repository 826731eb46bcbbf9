"""Ingestion against the real PostgreSQL: formats, idempotency, releases, rejects, bad files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from sqlalchemy import text

from lor.bench.synthetic_catalog import synthetic_object_table
from lor.catalog.ingest import CatalogColumns, ingest_catalog
from lor.errors import IngestError
from lor.units import abmag_to_njy
from tests.pipeline.catalog_files import write_catalog

N = 300


def _counts(engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {
            t: conn.execute(text(f"SELECT count(*) FROM lor.{t}")).scalar_one()
            for t in ("objects", "releases", "ingests", "ingest_rejects", "tracts", "band_sets")
        }


def _object_keys(engine) -> set[tuple]:
    with engine.connect() as conn:
        return set(
            conn.execute(text("SELECT tract_id, object_id, input_hash FROM lor.objects")).all()
        )


@pytest.mark.parametrize("suffix", ["parquet", "csv", "fits", "h5", "hdf5"])
def test_every_format_gives_identical_objects(engine, tmp_path: Path, suffix: str) -> None:
    table = synthetic_object_table(N, seed=5)
    reference = write_catalog(table, tmp_path / "ref.parquet")
    ingest_catalog(engine, reference, "R1", progress=False)
    keys = _object_keys(engine)
    path = write_catalog(table, tmp_path / f"cat.{suffix}")
    summary = ingest_catalog(engine, path, "R1", progress=False)
    assert (summary.rows_read, summary.rows_new, summary.rows_unchanged) == (N, 0, N)
    assert _object_keys(engine) == keys


def test_same_file_twice_stores_each_object_once(engine, tmp_path: Path) -> None:
    path = write_catalog(synthetic_object_table(N, seed=1), tmp_path / "a.parquet")
    first = ingest_catalog(engine, path, "DR1", progress=False, chunk_rows=70)
    second = ingest_catalog(engine, path, "DR1", progress=False, chunk_rows=70)
    assert (first.rows_new, first.rows_unchanged) == (N, 0)
    assert (second.rows_new, second.rows_changed, second.rows_unchanged) == (0, 0, N)
    counts = _counts(engine)
    assert counts["objects"] == N and counts["releases"] == 1 and counts["ingests"] == 2
    with engine.connect() as conn:
        stored = conn.execute(
            text("SELECT flux, flux_err FROM lor.objects WHERE catalog_id = :c"),
            {"c": int(synthetic_object_table(N, seed=1)["objectId"][7].as_py())},
        ).one()
    table = synthetic_object_table(N, seed=1)
    np.testing.assert_allclose(stored.flux[3], table["i_cModelFlux"][7].as_py(), rtol=1e-6)
    np.testing.assert_allclose(stored.flux_err[0], table["u_cModelFluxErr"][7].as_py(), rtol=1e-6)


def test_later_release_stores_only_new_and_changed(engine, tmp_path: Path) -> None:
    base = synthetic_object_table(N, seed=2)
    ingest_catalog(engine, write_catalog(base, tmp_path / "dr1.parquet"), "DR1", progress=False)
    # DR2: same objects, 40 with re-measured g flux, plus 25 new objects.
    g = base["g_cModelFlux"].to_numpy().copy()
    g[:40] *= 1.05
    dr2 = base.set_column(base.schema.get_field_index("g_cModelFlux"), "g_cModelFlux", pa.array(g))
    extra = synthetic_object_table(25, seed=3, first_id=9_000_000_000_000)
    dr2 = pa.concat_tables([dr2, extra])
    summary = ingest_catalog(
        engine, write_catalog(dr2, tmp_path / "dr2.parquet"), "DR2", progress=False
    )
    assert (summary.rows_new, summary.rows_changed, summary.rows_unchanged) == (25, 40, N - 40)
    with engine.connect() as conn:
        n_dr1 = conn.execute(text("SELECT count(*) FROM lor.objects_as_of('DR1')")).scalar_one()
        n_dr2 = conn.execute(text("SELECT count(*) FROM lor.objects_as_of('DR2')")).scalar_one()
        n_rows = conn.execute(text("SELECT count(*) FROM lor.objects")).scalar_one()
        superseded = conn.execute(
            text("SELECT count(*) FROM lor.objects WHERE superseded_release_id IS NOT NULL")
        ).scalar_one()
    assert (n_dr1, n_dr2, n_rows, superseded) == (N, N + 25, N + 40 + 25, 40)


def test_bad_rows_go_to_rejects_with_reasons(engine, tmp_path: Path) -> None:
    table = synthetic_object_table(N, seed=4)
    cols = {c: table[c].to_numpy().copy() for c in table.column_names}
    cols["coord_ra"][0] = np.nan
    cols["r_cModelFluxErr"][1] = -3.0
    cols["i_cModelFlux"][2] = np.inf
    cols["coord_dec"][3] = 95.0
    cols["objectId"][4] = cols["objectId"][5]
    for band in "ugrizy":
        cols[f"{band}_cModelFlux"][6] = np.nan
    cols["z_cModelFlux"][7] = np.nan  # one missing band: kept, flagged in missing_mask
    cols["tract"][8] = -1
    path = write_catalog(pa.table(cols), tmp_path / "bad.parquet")
    summary = ingest_catalog(engine, path, "DR1", progress=False)
    assert summary.rows_rejected == 7 and summary.rows_new == N - 7
    assert summary.reject_reasons == {
        "non-finite position": 1,
        "band r: non-positive flux error": 1,
        "band i: infinite flux": 1,
        "position outside 0<=ra<360, |dec|<=90": 1,
        "duplicate id in file": 1,
        "no usable band": 1,
        "invalid tract (missing, negative or not an integer)": 1,
    }
    with engine.connect() as conn:
        rows = dict(conn.execute(text("SELECT row_number, reason FROM lor.ingest_rejects")).all())
        mask = conn.execute(
            text("SELECT missing_mask, flux[5] AS z FROM lor.objects WHERE catalog_id = :c"),
            {"c": int(cols["objectId"][7])},
        ).one()
    assert rows[1] == "band r: non-positive flux error" and rows[5] == "duplicate id in file"
    assert mask.missing_mask == 1 << 4 and np.isnan(mask.z)


def test_malformed_file_changes_nothing(engine, tmp_path: Path) -> None:
    good = write_catalog(synthetic_object_table(N, seed=6), tmp_path / "good.parquet")
    ingest_catalog(engine, good, "DR1", progress=False)
    before = _counts(engine)
    truncated = tmp_path / "broken.parquet"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(IngestError, match="not a readable parquet file"):
        ingest_catalog(engine, truncated, "DR2", progress=False)
    garbage = tmp_path / "garbage.fits"
    garbage.write_bytes(b"SIMPLE  = this is not a fits file" * 10)
    with pytest.raises(IngestError, match="fits"):
        ingest_catalog(engine, garbage, "DR2", progress=False)
    csv = tmp_path / "ragged.csv"
    header = ",".join(synthetic_object_table(2).column_names)
    csv.write_text(header + "\n" + "1,2,3\n" * 5)
    with pytest.raises(IngestError):
        ingest_catalog(engine, csv, "DR2", progress=False)
    assert _counts(engine) == before


def test_failure_midway_rolls_back_everything(engine, tmp_path: Path) -> None:
    """Chunks already COPYed are rolled back when a later chunk turns out bad."""
    table = synthetic_object_table(N, seed=7)
    cols = {c: table[c].to_numpy() for c in table.column_names}
    cols["objectId"] = cols["objectId"].astype(np.float64)  # ids as floats: a type error
    bad = pa.concat_tables(
        [table.slice(0, 200), pa.table(cols).slice(200).cast(table.schema, safe=False)]
    )
    path = write_catalog(table.slice(0, 200), tmp_path / "first.parquet")
    before = _counts(engine)
    # a CSV whose last rows carry text in a flux column fails after earlier chunks were written
    rows = [",".join(map(str, r.values())) for r in bad.to_pylist()]
    rows[-1] = rows[-1].replace(rows[-1].split(",")[5], "oops", 1)
    csv = tmp_path / "late_error.csv"
    csv.write_text(",".join(bad.column_names) + "\n" + "\n".join(rows) + "\n")
    with pytest.raises(IngestError):
        ingest_catalog(engine, csv, "DR1", progress=False, chunk_rows=50)
    assert _counts(engine) == before
    assert ingest_catalog(engine, path, "DR1", progress=False).rows_new == 200


def test_missing_columns_and_wrong_units_are_clear_errors(engine, tmp_path: Path) -> None:
    table = synthetic_object_table(N, seed=8)
    path = write_catalog(table.drop_columns(["g_cModelFluxErr"]), tmp_path / "nog.parquet")
    with pytest.raises(IngestError, match="g_cModelFluxErr"):
        ingest_catalog(engine, path, "DR1", progress=False)
    mags = {c: table[c].to_numpy() for c in table.column_names}
    for band in "ugrizy":
        mags[f"{band}_cModelFlux"] = np.full(N, 24.0) + np.random.default_rng(0).normal(0, 1, N)
        mags[f"{band}_cModelFluxErr"] = np.full(N, 0.1)
    path = write_catalog(pa.table(mags), tmp_path / "mags.parquet")
    with pytest.raises(IngestError, match="--units abmag"):
        ingest_catalog(engine, path, "DR1", progress=False)
    assert _counts(engine)["objects"] == 0


def test_magnitude_catalog_without_tracts(engine, tmp_path: Path) -> None:
    rng = np.random.default_rng(9)
    n = 100
    mag = {b: rng.uniform(20, 26, n) for b in "ugrizy"}
    err = {b: np.full(n, 0.05) for b in "ugrizy"}
    mag["u"][0], err["u"][0] = 99.0, 27.5  # non-detection with a 1-sigma limit
    mag["y"][1], err["y"][1] = -99.0, -99.0  # not observed
    mag["g"][2] = np.nan
    cols = {"id": np.arange(n), "ra": rng.uniform(150, 150.5, n), "dec": rng.uniform(2, 2.5, n)}
    cols |= {f"mag_{b}": mag[b] for b in "ugrizy"} | {f"magerr_{b}": err[b] for b in "ugrizy"}
    path = write_catalog(pa.table(cols), tmp_path / "cosmos.csv")
    spec = CatalogColumns(
        id="id",
        ra="ra",
        dec="dec",
        tract=None,
        flux="mag_{band}",
        flux_err="magerr_{band}",
        units="abmag",
    )
    summary = ingest_catalog(engine, path, "COSMOS", spec, progress=False)
    assert summary.rows_new == n and summary.tract_scheme == "healpix-nest-32"
    with engine.connect() as conn:
        rows = {
            r.catalog_id: r
            for r in conn.execute(
                text(
                    "SELECT catalog_id, tract_id, flux, flux_err, missing_mask, nondetection_mask FROM lor.objects"
                )
            )
        }
        scheme = conn.execute(text("SELECT DISTINCT scheme FROM lor.tracts")).scalars().all()
    assert scheme == ["healpix-nest-32"]
    from lor.catalog.tracts import healpix_tracts

    expected = healpix_tracts(cols["ra"], cols["dec"])
    assert [rows[i].tract_id for i in range(n)] == expected.tolist()
    r0, r1, r2, r3 = rows[0], rows[1], rows[2], rows[3]
    assert (
        r0.nondetection_mask == 1
        and r0.flux[0] == 0
        and r0.flux_err[0] == pytest.approx(abmag_to_njy(27.5), rel=1e-6)
    )
    assert r1.missing_mask == 1 << 5 and np.isnan(r1.flux[5])
    assert r2.missing_mask == 1 << 1
    assert r3.flux[3] == pytest.approx(abmag_to_njy(mag["i"][3]), rel=1e-6)
    assert r3.flux_err[3] == pytest.approx(
        abmag_to_njy(mag["i"][3]) * np.log(10) / 2.5 * 0.05, rel=1e-5
    )


def test_tract_schemes_do_not_mix(engine, tmp_path: Path) -> None:
    """Catalog tract ids that collide with HEALPix-derived ones are refused, not merged."""
    from lor.catalog.tracts import healpix_tracts

    table = synthetic_object_table(50, seed=10)
    pix = healpix_tracts(table["coord_ra"].to_numpy(), table["coord_dec"].to_numpy())
    with_tracts = table.set_column(
        table.schema.get_field_index("tract"), "tract", pa.array(pix.astype(np.int64))
    )
    ingest_catalog(
        engine, write_catalog(with_tracts, tmp_path / "a.parquet"), "DR1", progress=False
    )
    before = _counts(engine)
    without = table.drop_columns(["tract"]).slice(0, 10)
    with pytest.raises(IngestError, match="same tract scheme"):
        ingest_catalog(
            engine, write_catalog(without, tmp_path / "b.parquet"), "DR1", progress=False
        )
    assert _counts(engine) == before
