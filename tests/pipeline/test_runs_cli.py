"""``lor run create|extend``, ``lor process`` and ``lor status`` end to end."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from lor.cli.main import cli
from lor.db.engine import make_engine
from lor.runs.processing import Processors, clear_processor_cache
from tests.workers.processors import flux_processor
from tests.workers.support import exactly_once, ingest_synthetic


def test_run_commands(lor_env: str, engine, tmp_path: Path) -> None:
    ingest_synthetic(engine, tmp_path, 120)
    runner = CliRunner()
    created = runner.invoke(cli, ["run", "create", "--release", "DR1", "--batch-size", "50"])
    assert created.exit_code == 0, created.output
    assert "run 1 (run-1) release DR1" in created.output and "queued 120 objects" in created.output

    clear_processor_cache()
    refused = runner.invoke(cli, ["process", "run-1", "--no-progress"])
    assert refused.exit_code == 2 and "no estimator registered for this run" in refused.output

    status = json.loads(runner.invoke(cli, ["status", "1", "--json"]).output)
    assert status["counts"]["pending"] == 120 and status["eta_s"] is None

    injected = Processors(flux_processor)
    done = runner.invoke(cli, ["process", "run-1", "--no-progress"], obj=injected)
    assert len(injected) == 1  # the injected factory built the run's processor
    assert done.exit_code == 0, done.output
    assert "processed 120, failed 0" in done.output and "complete" in done.output
    text_status = runner.invoke(cli, ["status", "run-1"])
    assert "pending 0, claimed 0, done 120, failed 0 (total 120)" in text_status.output
    assert "ETA 0:00:00" in text_status.output

    bad = runner.invoke(cli, ["run", "extend", "run-1", "--release", "DR1"])
    assert bad.exit_code == 2 and "later release" in bad.output
    missing = runner.invoke(cli, ["status", "nope"])
    assert missing.exit_code == 2 and "no processing run with id or name 'nope'" in missing.output
    eng = make_engine(lor_env)
    assert exactly_once(eng, 1)["posteriors"] == 120
    eng.dispose()
    clear_processor_cache()
