"""The dashboard's JSON and PNG endpoints over a real run, and its read-only role."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from lor.dashboard.app import reader_engine
from lor.db.truth_store import load_truth
from lor.runs.heartbeat import Heartbeat
from lor.runs.processing import claim_objects
from tests.db.test_posterior_views import processed_run

PNG = b"\x89PNG"


def _calibration(engine) -> int:  # type: ignore[no-untyped-def]
    with engine.begin() as conn:
        version = conn.execute(
            text(
                """INSERT INTO lor.calibration_versions (name, method, provenance)
                   VALUES ('zp-test', 'test', '{}') RETURNING id"""
            )
        ).scalar_one()
        tracts = conn.execute(text("SELECT id FROM lor.tracts ORDER BY id LIMIT 3")).scalars()
        for t in tracts:
            for b, band in enumerate("ugrizy"):
                conn.execute(
                    text(
                        """INSERT INTO lor.calibration_terms (calibration_version_id, tract_id,
                               band, zeropoint_offset_mag, zeropoint_offset_err, noise_scale,
                               noise_scale_err)
                           VALUES (:v, :t, :b, :zp, 0.003, :s, 0.02)"""
                    ),
                    {"v": version, "t": t, "b": band, "zp": 0.01 * (b - 2), "s": 1 + 0.02 * b},
                )
    return version


def test_runs_progress_holders_failures_and_plots(engine, tmp_path: Path, dashboard) -> None:  # type: ignore[no-untyped-def]
    run_id = processed_run(engine, tmp_path, n=120)
    with engine.begin() as conn:
        ids = conn.execute(text("SELECT catalog_id FROM lor.objects LIMIT 80")).scalars().all()
        load_truth(conn, ids, [0.5 + 0.01 * i for i in range(len(ids))], "test")
        conn.execute(  # one failure, as the queue records it
            text(
                """UPDATE lor.work_items SET state = 'failed', last_error = 'ValueError: boom'
                   WHERE (tract_id, object_id) = (SELECT tract_id, object_id
                       FROM lor.work_items WHERE run_id = :r LIMIT 1)"""
            ),
            {"r": run_id},
        )
    runs = dashboard.get("/api/runs").json()
    assert [r["id"] for r in runs] == [run_id] and runs[0]["done"] == 119
    run = dashboard.get(f"/api/runs/{run_id}").json()
    assert run["counts"]["done"] == 119 and run["counts"]["failed"] == 1
    assert run["failures"][0]["error"] == "ValueError: boom" and run["failures"][0]["failed"] == 1
    assert run["with_truth"] == 80 and run["holders"] == []
    for name in ("progress", "ood", "nz", "truth"):
        response = dashboard.get(f"/plot/runs/{run_id}/{name}.png")
        assert response.status_code == 200 and response.content.startswith(PNG), name
    version = _calibration(engine)
    cals = dashboard.get("/api/calibrations").json()
    assert cals[0]["id"] == version and cals[0]["tracts"] == 3
    assert dashboard.get(f"/plot/calibrations/{version}.png").content.startswith(PNG)
    assert dashboard.get("/plot/runs/999/progress.png").status_code == 404
    assert dashboard.get("/api/runs/999").status_code == 404
    page = dashboard.get("/")
    assert page.status_code == 200 and "/static/app.js" in page.text
    assert dashboard.get("/favicon.ico").status_code == 200


def test_holders_are_shown_with_their_heartbeat(engine, tmp_path: Path, dashboard) -> None:  # type: ignore[no-untyped-def]
    from lor.runs.lifecycle import create_run
    from tests.workers.support import ingest_synthetic

    ingest_synthetic(engine, tmp_path, 30)
    run = create_run(engine, "DR1").run
    beat = Heartbeat(engine, "node7:4242", "celery").start()
    claim_objects(engine, run.id, "node7:4242", 10, lease_s=600)
    holders = dashboard.get(f"/api/runs/{run.id}").json()["holders"]
    beat.stop(forget=False)
    assert holders[0]["worker"] == "node7:4242" and holders[0]["items"] == 10
    assert holders[0]["alive"] and holders[0]["heartbeat_age_s"] < 5


def test_the_dashboard_cannot_write(database_url: str, engine) -> None:  # type: ignore[no-untyped-def]
    reader = reader_engine(database_url)
    try:
        with reader.connect() as conn:
            assert conn.execute(text("SELECT current_user")).scalar_one() == "lor_reader"
            with pytest.raises(DBAPIError, match="read-only transaction|permission denied"):
                conn.execute(text("DELETE FROM lor.objects"))
    finally:
        reader.dispose()
