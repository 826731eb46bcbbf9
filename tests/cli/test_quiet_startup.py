"""TensorFlow's start-up noise does not reach users of the entry points (issue #16)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
NOISE = ("cuInit", "oneDNN", "cuda drivers", "XLA service", "absl::InitializeLog", "cpu_feature")
WORK = (
    "import tensorflow as tf; "
    "f = tf.function(jit_compile=True)(lambda a: a * 2); "
    "print(float(f(tf.constant([1.5]))[0]))"
)


@pytest.mark.parametrize("entry", ["lor.cli.main", "workers.app"])
def test_entry_points_silence_tensorflow_startup(entry: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env["PYTHONPATH"] = str(REPO_ROOT)
    out = subprocess.run(
        [sys.executable, "-c", f"import {entry}; {WORK}"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "3.0"
    assert not [n for n in NOISE if n in out.stderr], out.stderr


def test_errors_after_startup_still_reach_stderr() -> None:
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env["PYTHONPATH"] = str(REPO_ROOT)
    code = "import lor.cli.main, sys; import tensorflow; print('after', file=sys.stderr)"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env=env,
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    assert out.returncode == 0 and out.stderr.strip().endswith("after"), out.stderr
