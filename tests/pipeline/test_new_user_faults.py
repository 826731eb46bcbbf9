"""The faults a new user hit (issue #16), each reproduced as it was met from a fresh clone."""

from __future__ import annotations

import os
from collections import namedtuple
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from click.testing import CliRunner
from sqlalchemy import text

from lor.bench.synthetic_catalog import synthetic_object_table
from lor.catalog.example import EXAMPLE_TRUTH
from lor.catalog.ingest import CatalogColumns, ingest_catalog
from lor.cli.main import LorGroup
from lor.cli.runs import export_command
from lor.errors import IngestError
from lor.reporting.demo import _plot_photoz
from tests.db.test_posterior_views import processed_run
from tests.pipeline.catalog_files import write_catalog


def _counts(engine) -> dict[str, int]:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        return {
            t: conn.execute(text(f"SELECT count(*) FROM lor.{t}")).scalar_one()
            for t in ("objects", "tracts", "ingest_rejects")
        }


def test_tract_schemes_never_mix_even_without_colliding_ids(engine, tmp_path: Path) -> None:
    """`--release A` with tracts, then the same file `--release B --tract-column none`."""
    path = write_catalog(synthetic_object_table(49, seed=3), tmp_path / "base.csv")
    ingest_catalog(engine, path, "A", progress=False)
    before = _counts(engine)
    with pytest.raises(IngestError, match="same tract scheme.*--tract-column"):
        ingest_catalog(engine, path, "B", CatalogColumns(tract=None), progress=False)
    assert _counts(engine) == before  # nothing stored again as "changed" in HEALPix tracts


def test_flux_beyond_float32_is_rejected_not_stored_as_infinity(engine, tmp_path: Path) -> None:
    table = synthetic_object_table(30, seed=4)
    cols = {c: table[c].to_numpy().copy() for c in table.column_names}
    cols["r_cModelFlux"][5] = 1e39
    cols["i_cModelFluxErr"][6] = 1e40
    summary = ingest_catalog(
        engine, write_catalog(pa.table(cols), tmp_path / "big.parquet"), "DR1", progress=False
    )
    assert summary.rows_rejected == 2
    assert summary.reject_reasons == {
        "band r: infinite flux (beyond float32)": 1,
        "band i: infinite flux error (beyond float32)": 1,
    }
    with engine.connect() as conn:
        inf = conn.execute(
            text(
                "SELECT count(*) FROM lor.objects WHERE 'Infinity' = ANY(flux) "
                "OR 'Infinity' = ANY(flux_err) OR '-Infinity' = ANY(flux)"
            )
        ).scalar_one()
    assert inf == 0


def test_one_row_of_magnitudes_as_fluxes_is_refused(engine, tmp_path: Path) -> None:
    table = synthetic_object_table(1, seed=5)
    cols = {c: table[c].to_numpy().copy() for c in table.column_names}
    for band, mag in zip("ugrizy", (24.1, 23.5, 23.0, 22.8, 22.6, 22.5), strict=True):
        cols[f"{band}_cModelFlux"] = np.array([mag])
        cols[f"{band}_cModelFluxErr"] = np.array([0.05])
    path = write_catalog(pa.table(cols), tmp_path / "one.parquet")
    with pytest.raises(IngestError, match="look like AB magnitudes"):
        ingest_catalog(engine, path, "DR1", progress=False)
    assert _counts(engine)["objects"] == 0


def test_reingest_does_not_duplicate_rejects(engine, tmp_path: Path) -> None:
    table = synthetic_object_table(40, seed=6)
    cols = {c: table[c].to_numpy().copy() for c in table.column_names}
    cols["g_cModelFluxErr"][[2, 9]] = -1.0
    path = write_catalog(pa.table(cols), tmp_path / "rej.parquet")
    for _ in range(3):
        assert ingest_catalog(engine, path, "DR1", progress=False).rows_rejected == 2
    assert _counts(engine)["ingest_rejects"] == 2


def test_demo_plot_skips_objects_of_other_catalogs(tmp_path: Path) -> None:
    """`lor demo` on a database holding other objects: their ids are not in the truth table."""
    import pyarrow.parquet as pq

    ids = pq.read_table(EXAMPLE_TRUTH, columns=["objectId"])["objectId"].to_pylist()[:50]
    row = namedtuple("row", "catalog_id z_q50 z_q16 z_q84 ood_flags")
    rng = np.random.default_rng(0)
    rows = [row(i, z, z - 0.05, z + 0.05, f) for i, z, f in
            zip(ids, rng.uniform(0.1, 3, 50), rng.choice([0, 0, 0, 8], 50), strict=True)]  # fmt: skip
    rows += [row(10**15 + k, 1.0, 0.9, 1.1, 0) for k in range(5)]  # another catalog's objects
    out = _plot_photoz(rows, tmp_path / "p.png")
    assert out.stat().st_size > 10_000


def test_export_qp_needs_no_hdf5_name(engine, tmp_path: Path, lor_env: str) -> None:
    run_id = processed_run(engine, tmp_path, n=40)
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        result = CliRunner().invoke(
            LorGroup(commands={"export": export_command}),
            ["export", str(run_id), "--format", "qp", "--no-progress"],
        )
    finally:
        os.chdir(cwd)
    assert result.exit_code == 0, result.output
    assert (tmp_path / f"{run_id}.hdf5").stat().st_size > 0
