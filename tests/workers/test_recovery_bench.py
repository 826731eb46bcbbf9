"""``lor bench recovery`` at a small size: its faults happen, and nothing is lost or doubled."""

from __future__ import annotations

import pytest

from lor.bench.recovery import run_recovery_benchmark

pytestmark = pytest.mark.process_faults


def test_recovery_benchmark_small(lor_env: str) -> None:  # type: ignore[no-untyped-def]
    figures = run_recovery_benchmark(
        objects=4000, tracts=2, kills=2, scenarios=("process", "redis"),
        echo=lambda _: None, batch_size=100,
    )  # fmt: skip
    assert figures["process"]["faults"] >= 1 and figures["redis"]["faults"] == 1
    assert (figures["lost"], figures["duplicated"], figures["stalled_runs"]) == (0, 0, 0)
    assert 0 < figures["max_recovery_s"] < 120
    assert figures["process"]["complete"] and figures["redis"]["complete"]
