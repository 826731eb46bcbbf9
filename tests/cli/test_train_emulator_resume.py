"""`lor train emulator --stop-after-epochs` then `--resume`: the CLI continues from the saved
epoch and writes a loadable, hash-pinned artifact with its training hardware and its
per-redshift error model (what the likelihood's model error reads)."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from lor.cli.main import cli
from lor.emulators.registry import load_emulator
from lor.inference.model_error import ModelError

CONFIG = """name: speculator-tiny
family: speculator
n_train: 1500
n_val: 300
n_test: 300
hidden: [16, 16]
batch_size: 100
max_epochs: 3
patience: 50
"""


def _last_json(output: str) -> dict:
    """The command's JSON line (progress bars share the stream, without newlines)."""
    return json.loads(output[output.rindex('{"artifact"') :].splitlines()[0])


def test_train_emulator_stops_and_resumes(tmp_path: Path) -> None:
    config = tmp_path / "tiny.yaml"
    config.write_text(CONFIG)
    out = tmp_path / "out"
    runner = CliRunner()
    args = ["train", "emulator", "--config", str(config), "--out", str(out), "--device", "cpu"]
    first = runner.invoke(cli, [*args, "--stop-after-epochs", "2"])
    assert first.exit_code == 0, first.output
    stopped = _last_json(first.output)
    assert stopped["sha256"] is None and stopped["metrics"] == {"finished": False, "epochs": 2}
    again = runner.invoke(cli, args)  # a checkpoint exists: refused without --resume
    assert again.exit_code != 0 and "resume" in again.output
    done = runner.invoke(cli, [*args, "--resume"])
    assert done.exit_code == 0, done.output
    result = _last_json(done.output)
    assert result["metrics"]["epochs"] == 3 and result["metrics"]["finished"]
    emulator = load_emulator(out, result["sha256"])
    assert len(emulator.spec["validation_history"]) == 3
    assert emulator.spec["metrics"]["hardware"]["device"] == "/CPU:0"
    model = emulator.spec["metrics"]["error_model"]
    assert model["kind"] == "redshift_bins" and sum(model["n"]) == 300
    by_z = ModelError.for_emulator(emulator).emulator_mag_at([0.1, 3.9])
    assert by_z.shape == (2, 6) and (by_z > 0).all() and not (by_z[0] == by_z[1]).all()
