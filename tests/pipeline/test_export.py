"""``lor export``: Parquet and qp files round-trip the stored posteriors of a run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from sqlalchemy import Engine, text

from lor.cli.main import LorGroup
from lor.cli.runs import export_command
from lor.db.params_codec import join_rows
from lor.posteriors.base import SUMMARY_COLUMNS
from lor.posteriors.gmm_flow import GaussianMixtureFlow
from lor.reporting.export import ExportError, export_run, representation_for
from lor.runs.lifecycle import create_run, get_run
from lor.runs.processing import process_run
from tests.db.test_posterior_views import GmmProcessor, gmm_flow, processed_run
from tests.workers.processors import FluxProcessor
from tests.workers.support import ingest_synthetic

qp = pytest.importorskip("qp")


def _stored(engine: Engine, run_id: int) -> dict[int, dict]:  # type: ignore[type-arg]
    """The run's posterior rows with their objects, by catalog id (params read through the
    codec, as export reads them)."""
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                """SELECT o.catalog_id, o.tract_id, o.ra, o.dec, p.*
                   FROM lor.posteriors p JOIN lor.objects o USING (tract_id, object_id)
                   WHERE p.run_id = :r"""
            ),
            {"r": run_id},
        ).all()
    out = {r.catalog_id: r._asdict() for r in rows}
    for row in out.values():
        rest = row.pop("params_rest")
        if row["params"] is not None:
            row["params"] = join_rows([row["params"]], [rest])[0]
    return out


def test_parquet_round_trips_every_row(engine, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    run_id = processed_run(engine, tmp_path, n=230)
    out = tmp_path / "out" / "run.parquet"
    summary = export_run(engine, run_id, out, "parquet", chunk_rows=64, progress=False)
    stored = _stored(engine, run_id)
    table = pq.read_table(out)
    assert summary.objects == table.num_rows == len(stored) == 230
    assert summary.without_posterior == sum(r["params"] is None for r in stored.values()) > 0
    assert summary.skipped == 0 and not list(out.parent.glob(".*partial"))
    assert table.schema.field("params").type.value_type.bit_width == 32
    for row in table.to_pylist():
        want = stored[row["catalog_id"]]
        assert (row["tract"], row["ra"], row["dec"]) == (want["tract_id"], want["ra"], want["dec"])
        assert row["posterior_id"] == str(want["posterior_id"])
        assert row["object_id"] == str(want["object_id"])
        assert row["input_hash"] == str(want["input_hash"])
        assert (row["run_id"], row["method"], row["ood_flags"]) == (
            run_id, want["method"], want["ood_flags"],
        )  # fmt: skip
        assert row["representation_name"] == "gmm_flow" and row["worker_host"]
        assert row["created_at"] == want["created_at"]
        for col in SUMMARY_COLUMNS:  # both None (NULL) or the same float32
            assert (row[col] is None) == (want[col] is None)
            assert row[col] is None or np.float32(row[col]) == np.float32(want[col])
        if want["params"] is None:
            assert row["params"] is None and row["method"] == "none"
        else:
            np.testing.assert_array_equal(np.float32(row["params"]), np.float32(want["params"]))
    meta = json.loads(table.schema.metadata[b"lor.export"])
    assert meta["run"]["id"] == run_id and meta["run"]["name"] == "gmm"


def test_qp_round_trips_the_redshift_marginals(engine, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    run_id = processed_run(engine, tmp_path, n=150)
    out = tmp_path / "run.hdf5"
    grid = np.linspace(0.01, 4.0, 1601)
    summary = export_run(engine, run_id, out, "qp", chunk_rows=40, z_grid=grid, progress=False)
    stored = _stored(engine, run_id)
    with_params = {c: r for c, r in stored.items() if r["params"] is not None}
    assert summary.objects == len(with_params) and summary.skipped == len(stored) - len(with_params)
    assert summary.skipped > 0

    ens = qp.read(str(out))
    assert ens.npdf == len(with_params) and ens.metadata["pdf_name"][0] == b"interp"
    ids = np.asarray(ens.ancil["catalog_id"])
    assert set(ids.tolist()) == set(with_params)
    assert set(np.asarray(ens.ancil["run_id"]).tolist()) == {run_id}
    assert set(map(str, ens.ancil["representation_name"])) == {"gmm_flow"}
    assert set(map(str, ens.ancil["representation_version"])) == {"1"}
    assert [str(p) for p in ens.ancil["posterior_id"]] == [
        str(with_params[c]["posterior_id"]) for c in ids
    ]
    flow = gmm_flow()
    params = np.array([with_params[c]["params"] for c in ids], np.float32)
    np.testing.assert_allclose(ens.ancil["grid_mass"], 1.0, atol=1e-3)
    z = np.linspace(0.05, 3.9, 37)
    np.testing.assert_allclose(ens.cdf(z), flow.z_cdf(params, z[None, :]), atol=2e-3)
    mid = grid[::50]
    pdf = flow.z_pdf(params, mid[None, :])
    np.testing.assert_allclose(
        ens.pdf(mid), pdf / np.asarray(ens.ancil["grid_mass"])[:, None], rtol=1e-6, atol=1e-9
    )

    import h5py

    with h5py.File(out) as fh:
        meta = json.loads(fh.attrs["lor.export"])
    assert meta["run"]["id"] == run_id
    assert meta["representation"] == {"name": "gmm_flow", "version": "1"}


def test_qp_default_grid_spans_the_redshift_box(engine, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    run_id = processed_run(engine, tmp_path, n=40)
    out = tmp_path / "run.hdf5"
    export_run(engine, run_id, out, "qp", progress=False)
    xvals = np.asarray(qp.read(str(out)).metadata["xvals"]).ravel()
    assert xvals[0] == pytest.approx(0.01, rel=1e-6) and xvals[-1] == pytest.approx(4.0)
    assert len(xvals) == 401


def test_representation_from_the_header_without_an_estimator(engine, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ingest_synthetic(engine, tmp_path, 30)
    run = create_run(engine, "DR1").run  # pins no estimator
    flow = gmm_flow()
    process_run(engine, run.id, processor=GmmProcessor(flow), progress=False)
    out = tmp_path / "noest.hdf5"
    summary = export_run(engine, run.id, out, "qp", progress=False)
    stored = _stored(engine, run.id)
    ens = qp.read(str(out))
    ids = np.asarray(ens.ancil["catalog_id"])
    params = np.array([stored[c]["params"] for c in ids], np.float32)
    z = np.linspace(0.1, 3.5, 9)
    np.testing.assert_allclose(ens.cdf(z), flow.z_cdf(params, z[None, :]), atol=5e-3)
    assert summary.objects == len(ids)
    with engine.connect() as conn:
        rep = representation_for(conn, get_run(engine, run.id), "gmm_flow", "1", params[0])
    assert isinstance(rep, GaussianMixtureFlow) and rep.n_components == flow.n_components


def test_runs_that_qp_cannot_export(engine, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ingest_synthetic(engine, tmp_path, 20)
    run = create_run(engine, "DR1").run
    process_run(engine, run.id, processor=FluxProcessor(), progress=False)
    with pytest.raises(ExportError, match="test-flux"):
        export_run(engine, run.id, tmp_path / "flux.hdf5", "qp", progress=False)
    assert not list(tmp_path.glob("*flux.hdf5*"))
    for name in ("flux.fits", "flux.h5"):
        with pytest.raises(ExportError, match=r"\*\.hdf5"):
            export_run(engine, run.id, tmp_path / name, "qp", progress=False)
    with pytest.raises(ExportError, match="format"):
        export_run(engine, run.id, tmp_path / "flux.csv", "csv", progress=False)
    # Parquet exports any representation, and an empty run as an empty table.
    export_run(engine, run.id, tmp_path / "flux.parquet", progress=False)
    assert pq.read_table(tmp_path / "flux.parquet").num_rows == 20
    empty = create_run(engine, "DR1", config={"batch_size": 7}).run  # same bundle: queues nothing
    export_run(engine, empty.id, tmp_path / "empty.parquet", progress=False)
    assert pq.read_table(tmp_path / "empty.parquet").num_rows == 0
    with pytest.raises(ExportError, match="no posteriors"):
        export_run(engine, empty.id, tmp_path / "empty.hdf5", "qp", progress=False)


def test_export_command(lor_env: str, engine, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    run_id = processed_run(engine, tmp_path, n=25)
    runner = CliRunner()
    # As lor.cli.main registers it (lor.cli.runs.register), on the LorGroup error handling.
    cli = LorGroup(commands={"export": export_command})
    out = tmp_path / "cli.parquet"
    done = runner.invoke(cli, ["export", "gmm", "--format", "parquet", "--out", str(out)])
    assert done.exit_code == 0, done.output
    assert f"run {run_id} (gmm)" in done.output and "25 objects" in done.output
    assert pq.read_table(out).num_rows == 25
    qp_out = tmp_path / "cli.hdf5"
    done = runner.invoke(
        cli, ["export", str(run_id), "--format", "qp", "--out", str(qp_out), "--z-points", "201"]
    )
    assert done.exit_code == 0, done.output
    assert len(np.asarray(qp.read(str(qp_out)).metadata["xvals"]).ravel()) == 201
    missing = runner.invoke(cli, ["export", "nope", "--out", str(out)])
    assert missing.exit_code == 2 and "no processing run" in missing.output
