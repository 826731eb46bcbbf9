"""What every ``lor bench`` reports besides its own figures, so its numbers can be reproduced.

One place for: the code version (git commit, ``.dirty`` when the tracked tree differs),
the 1-minute load average before and after (a shared machine's wall clock mostly measures
the neighbours), the CPU count, and timings as the median of at least
:data:`MIN_REPEATS` repeats with their min and max. Benchmarks open a
:func:`bench_report`, time with :func:`repeat` or :func:`timings`, and turn the seconds into
figures with :func:`rate_figures` / :func:`time_figures`.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from lor.errors import ConfigError
from lor.version import code_version

MIN_REPEATS = 3
"""Fewest repeats behind any reported timing."""

T = TypeVar("T")


def check_repeats(repeats: int) -> int:
    """``repeats`` if it is at least :data:`MIN_REPEATS`; a named error otherwise."""
    if repeats < MIN_REPEATS:
        raise ConfigError(f"benchmarks repeat every timing at least {MIN_REPEATS} times")
    return repeats


@contextlib.contextmanager
def bench_report(name: str, repeats: int = MIN_REPEATS) -> Iterator[dict[str, Any]]:
    """The benchmark's JSON object: name, commit, repeats, CPU count and the load average at
    the start; the load average at the end is added when the block exits normally."""
    out: dict[str, Any] = {
        "benchmark": name,
        "git_commit": code_version(),
        "repeats": check_repeats(repeats),
        "cpu_count": os.cpu_count(),
        "load_avg_1m_start": os.getloadavg()[0],
    }
    yield out
    out["load_avg_1m_end"] = os.getloadavg()[0]


def timings(fn: Callable[[int], T], repeats: int = MIN_REPEATS) -> tuple[list[float], list[T]]:
    """Wall-clock seconds of ``fn(i)`` for ``i`` in ``range(repeats)``, and what each returned
    (``i`` lets a repeat pick fresh inputs, e.g. its own run)."""
    seconds, results = [], []
    for i in range(check_repeats(repeats)):
        t0 = time.perf_counter()
        results.append(fn(i))
        seconds.append(time.perf_counter() - t0)
    return seconds, results


def repeat(fn: Callable[[], Any], repeats: int = MIN_REPEATS) -> list[float]:
    """Wall-clock seconds of ``repeats`` calls of ``fn``."""
    return timings(lambda _: fn(), repeats)[0]


def rate_figures(key: str, items: float | list[float], seconds: list[float]) -> dict[str, Any]:
    """``key`` (median items per second over the repeats), ``key_min``, ``key_max`` and
    ``key_repeats`` (each repeat's rate). ``items`` is one count or one per repeat."""
    counts = items if isinstance(items, list) else [items] * len(seconds)
    rates = [n / s for n, s in zip(counts, seconds, strict=True)]
    return {
        key: statistics.median(rates),
        f"{key}_min": min(rates),
        f"{key}_max": max(rates),
        f"{key}_repeats": rates,
    }


def time_figures(key: str, seconds: list[float]) -> dict[str, Any]:
    """``key`` (median seconds), ``key_min``, ``key_max`` and ``key_repeats``."""
    return {
        key: statistics.median(seconds),
        f"{key}_min": min(seconds),
        f"{key}_max": max(seconds),
        f"{key}_repeats": list(seconds),
    }
