"""CLI faults of the issue #14 review, each reproduced through the command line on a real
database: a clean message and a non-zero exit code instead of a traceback, refused bad input
before minutes of work, and every run setting reachable from the command line."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import Engine, text

from lor.cli.main import cli
from lor.errors import ConfigError
from lor.runs.lifecycle import check_run_config, create_run
from tests.workers.support import ingest_synthetic


@pytest.fixture
def bare_run(lor_env: str, engine: Engine, tmp_path: Path) -> Iterator[dict[str, int]]:
    """The shipped models and interim prior registered, 20 objects ingested as DR1 and a run
    ``base`` over them created (nothing processed)."""
    from lor.reporting.demo import register_shipped_models

    ids = register_shipped_models(engine)
    ingest_synthetic(engine, tmp_path, 20)
    ids["run"] = create_run(engine, "DR1", name="base", prior=ids["prior"]).run.id
    yield ids


def _clean_failure(result: Result) -> None:
    """Exit code 2 with the message on the output, not an exception's traceback."""
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert isinstance(result.exception, SystemExit), result.exception
    assert result.output.startswith("error: ") and "Traceback" not in result.output


def test_calibrate_refuses_an_unknown_hyperparameter_before_loading_models(
    engine: Engine, bare_run: dict[str, int]
) -> None:
    """Was: the models loaded, then a ValueError traceback. The stored artifacts are made
    unloadable (wrong sha256), so only a check made before loading them gives this message."""
    with engine.begin() as conn:
        conn.execute(text("UPDATE lor.model_versions SET artifact_sha256 = repeat('0', 64)"))
    result = CliRunner().invoke(cli, ["calibrate", "base", "--free", "nope"])
    _clean_failure(result)
    assert "choose free hyperparameters from" in result.output and "nope" in result.output


def test_calibrate_without_posteriors_is_a_clean_error(bare_run: dict[str, int]) -> None:
    """Was: a ValueError traceback after the models loaded."""
    from lor.inference.prior_registry import estimator_prior
    from lor.inference.registry import load_shipped_estimator

    free = sorted(estimator_prior(load_shipped_estimator().spec).hyperparameters)[0]
    result = CliRunner().invoke(cli, ["calibrate", "base", "--free", free])
    _clean_failure(result)
    assert "no stored posteriors" in result.output


def test_unknown_run_config_keys_are_refused() -> None:
    """Was: stored with the run and silently ignored (a misspelt ``mcmc_falback``)."""
    from lor.runs.lifecycle import RUN_CONFIG_KEYS

    with pytest.raises(ConfigError, match=r"unknown run config keys \['mcmc_falback'\]"):
        check_run_config({"batch_size": 10, "lease_s": 60, "max_attempts": 3, "mcmc_falback": 1})
    with pytest.raises(ConfigError, match="mcmc_fallback must be true or false"):
        check_run_config({"batch_size": 10, "lease_s": 60, "max_attempts": 3, "mcmc_fallback": 1})
    check_run_config(
        {"batch_size": 10, "lease_s": 60, "max_attempts": 3, "mcmc_fallback": True}
    )  # every key the library reads is known
    assert {"mcmc_fallback", "prior_chunk_objects", "prior_lanes"} <= set(RUN_CONFIG_KEYS)


def test_mcmc_fallback_is_a_run_create_flag(engine: Engine, bare_run: dict[str, int]) -> None:
    """Was: reachable only by writing the run's JSON config by hand."""
    result = CliRunner().invoke(
        cli, ["run", "create", "--release", "DR1", "--name", "with-mcmc", "--mcmc-fallback"]
    )
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(cli, ["run", "create", "--release", "DR1", "--name", "plain"])
    assert result.exit_code == 0, result.output
    with engine.connect() as conn:
        configs = dict(
            conn.execute(
                text("SELECT name, config FROM lor.processing_runs WHERE name <> 'base'")
            ).all()
        )
    assert configs["with-mcmc"]["mcmc_fallback"] is True
    assert "mcmc_fallback" not in configs["plain"]  # off unless asked for
