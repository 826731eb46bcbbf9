"""A run's models must share its release's band set: ``lor run create`` refuses others, and
the default (latest) models are the latest of the release's band set."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import text

from lor.bands import load_band_set
from lor.bench.synthetic_catalog import synthetic_object_table
from lor.catalog.ingest import CatalogColumns, ingest_catalog
from lor.db import catalog_store
from lor.errors import ConfigError
from lor.runs.lifecycle import create_run, extend_run
from tests.pipeline.catalog_files import write_catalog


def _model(conn, kind: str, band_set_id: int, i: int) -> int:  # type: ignore[no-untyped-def]
    return conn.execute(
        text(
            """INSERT INTO lor.model_versions (kind, family_name, family_version,
                   artifact_sha256, artifact_uri, band_set_id, param_names,
                   training_ranges, metrics, config)
               VALUES (:kind, 'test-family', '1', :sha, '/nowhere', :bs, '{z}',
                       '{}', '{}', '{}') RETURNING id"""
        ),
        {"kind": kind, "sha": f"{i:064x}", "bs": band_set_id},
    ).scalar_one()


def test_run_create_refuses_models_of_another_band_set(
    lor_env: str, engine, tmp_path: Path
) -> None:
    path = write_catalog(synthetic_object_table(50, seed=3), tmp_path / "dr1.parquet")
    ingest_catalog(engine, path, "DR1", progress=False)  # band set lsst
    with engine.begin() as conn:
        lsst = catalog_store.get_or_create_band_set(conn, load_band_set("lsst"))
        both = catalog_store.get_or_create_band_set(conn, load_band_set("lsst-euclid"))
        emu_lsst, est_lsst = _model(conn, "emulator", lsst, 1), _model(conn, "estimator", lsst, 2)
        # Registered later, so the newest of their kind overall: never a default for DR1.
        emu_both, est_both = _model(conn, "emulator", both, 3), _model(conn, "estimator", both, 4)

    for given in ({"emulator": emu_both}, {"estimator": est_both}):
        with pytest.raises(ConfigError, match="band set 'lsst'.*'lsst-euclid'"):
            create_run(engine, "DR1", **given)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM lor.processing_runs")).scalar_one() == 0

    run = create_run(engine, "DR1").run
    assert (run.emulator_version_id, run.estimator_version_id) == (emu_lsst, est_lsst)

    # CLI: the same refusal, as a clear error and a non-zero exit.
    from lor.cli.main import cli

    result = CliRunner().invoke(
        cli, ["run", "create", "--release", "DR1", "--estimator", str(est_both)]
    )
    assert result.exit_code != 0
    assert "lsst-euclid" in (result.output + str(result.exception))

    # A later release of another band set cannot extend the run.
    ingest_catalog(
        engine,
        write_catalog(
            synthetic_object_table(20, seed=4, band_set="lsst-euclid"), tmp_path / "dr2.parquet"
        ),
        "DR2",
        CatalogColumns(band_set="lsst-euclid"),
        progress=False,
    )
    with pytest.raises(ConfigError, match="band set 'lsst-euclid'"):
        extend_run(engine, run, "DR2")
    both_run = create_run(engine, "DR2").run
    assert (both_run.emulator_version_id, both_run.estimator_version_id) == (emu_both, est_both)
