"""Processing runs: pin the model bundle, queue the objects of a release, report progress.

A run pins the emulator, estimator, prior and calibration versions (the *model bundle*) and
the code version, so every posterior it writes says exactly what made it. Creating a run
queues every object version current as of a release that the same bundle has not already
covered; extending it to a later release queues only the versions that release introduced
(new or changed objects). Work state lives in ``lor.work_items``; see :mod:`lor.db.queue_store`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import Engine

from lor.db import run_store as store
from lor.db import worker_store
from lor.db.catalog_store import release_id as lookup_release
from lor.db.run_store import Run
from lor.db.worker_store import Holder
from lor.errors import ConfigError
from lor.version import code_version

VERSION_KINDS = ("emulator", "estimator", "prior", "calibration")
#: Window over which ``run_status`` measures the processing rate.
RATE_WINDOW_S = 60.0


@dataclass(frozen=True)
class QueuedRun:
    """A run and how many work items the call just queued for it."""

    run: Run
    enqueued: int


@dataclass(frozen=True)
class RunStatus:
    run: Run
    counts: dict[str, int]
    rate_per_s: float
    eta_s: float | None
    stalled: str | None = None  # why nothing is processing this open run (None: it moves)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def remaining(self) -> int:
        return self.counts["pending"] + self.counts["claimed"]

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run.id,
            "name": self.run.name,
            "status": self.run.status,
            "release": self.run.release_name,
            "counts": self.counts,
            "total": self.total,
            "rate_per_s": round(self.rate_per_s, 3),
            "eta_s": None if self.eta_s is None else round(self.eta_s, 1),
            "stalled": self.stalled,
        }


def get_run(engine: Engine, ref: int | str | Run) -> Run:
    """A run by id, name, or a (possibly stale) :class:`Run` re-read from the database."""
    with engine.connect() as conn:
        return store.get_run(conn, ref.id if isinstance(ref, Run) else ref)


def create_run(
    engine: Engine,
    release: str,
    name: str | None = None,
    emulator: int | None = None,
    estimator: int | None = None,
    prior: int | None = None,
    calibration: int | None = None,
    config: dict[str, Any] | None = None,
) -> QueuedRun:
    """Create a run over ``release`` and queue its objects, in one transaction.

    Versions left as None default to the latest of their kind (NULL when none exists).
    ``config`` overrides :data:`lor.db.run_store.DEFAULT_RUN_CONFIG` (batch_size, lease_s,
    max_attempts) and is stored with the run. Objects already covered by the same model
    bundle (a posterior, or work pending in another run) are not queued again.
    """
    settings = {**store.DEFAULT_RUN_CONFIG, **(config or {})}
    check_run_config(settings)
    given = dict(zip(VERSION_KINDS, (emulator, estimator, prior, calibration), strict=True))
    with engine.begin() as conn:
        store.lock_enqueue(conn)
        rel = lookup_release(conn, release)
        band_set_id, _ = store.release_band_set(conn, rel)
        versions: dict[str, int | None] = {}
        for kind, version in given.items():
            if version is None:  # the newest of the release's band set
                versions[kind] = store.latest_version(conn, kind, band_set_id)
            else:
                store.check_version(conn, kind, version)
                versions[kind] = version
        store.check_model_band_sets(conn, versions, band_set_id, release)
        run_id = store.insert_run(conn, name, rel, versions, code_version(), settings)
        run = store.get_run(conn, run_id)
        enqueued = store.enqueue_objects(conn, run_id, release, store.bundle_runs(conn, run))
        store.finish_if_done(conn, run_id)
        return QueuedRun(store.get_run(conn, run_id), enqueued)


def extend_run(engine: Engine, run: int | str | Run, release: str) -> QueuedRun:
    """Move a run on to a later ``release``, queueing only the object versions it introduced.

    Unchanged objects keep their posteriors; changed ones (a new object version) and new ones
    are queued. The run reopens if anything was queued.
    """
    with engine.begin() as conn:
        store.lock_enqueue(conn)
        current = store.get_run(conn, run.id if isinstance(run, Run) else run)
        rel = lookup_release(conn, release)
        band_set_id, _ = store.release_band_set(conn, rel)
        models = {
            "emulator": current.emulator_version_id,
            "estimator": current.estimator_version_id,
        }
        store.check_model_band_sets(conn, models, band_set_id, release)
        old_seq = store.release_sequence(conn, current.release_id)
        if store.release_sequence(conn, rel) <= old_seq:
            raise ConfigError(
                f"run {current.name} is at release {current.release_name}; extend it to a "
                f"later release, not {release!r}"
            )
        enqueued = store.enqueue_objects(
            conn, current.id, release, store.bundle_runs(conn, current), introduced_after=old_seq
        )
        store.set_run_release(conn, current.id, rel)
        store.finish_if_done(conn, current.id)
        return QueuedRun(store.get_run(conn, current.id), enqueued)


def run_status(engine: Engine, run: int | str | Run, window_s: float = RATE_WINDOW_S) -> RunStatus:
    """Item counts by state, the rate over the last ``window_s``, the time left at that rate,
    and why the run is stalled, if it is (:func:`stall_reason`)."""
    from lor.config import get_settings

    with engine.connect() as conn:
        current = store.get_run(conn, run.id if isinstance(run, Run) else run)
        counts = store.state_counts(conn, current.id)
        recent, age = store.recent_posteriors(conn, current.id, window_s)
        holders = worker_store.holders(conn, current.id) if counts["claimed"] else []
    # Over the part of the window that saw work, so a run that started 10 s ago is not
    # reported at a sixth of its speed; at least 1 s, so one batch is not a burst.
    rate = recent / min(window_s, max(age, 1.0)) if recent else 0.0
    remaining = counts["pending"] + counts["claimed"]
    eta = 0.0 if remaining == 0 else (remaining / rate if rate > 0 else None)
    stalled = None
    if current.status == "open" and remaining and not recent:
        stalled = stall_reason(current, counts, holders, get_settings().dead_after_s, window_s)
    return RunStatus(current, counts, rate, eta, stalled)


def stall_reason(
    run: Run, counts: dict[str, int], holders: list[Holder], dead_after_s: float, window_s: float
) -> str | None:
    """Why an open run with unfinished items and no posterior in ``window_s`` is stalled.

    None when a live process (heartbeat younger than ``dead_after_s``) holds some of its
    claims: it is slow, not stalled. Otherwise the reason names the dead holders and says
    what would move the run.
    """
    alive = [
        h for h in holders if h.heartbeat_age_s is not None and h.heartbeat_age_s <= dead_after_s
    ]
    if alive:
        return None
    parts = [f"no posterior in the last {window_s:.0f} s and no live process holds its claims"]
    if counts["pending"]:
        parts.append(f"{counts['pending']} pending")
    for h in holders:
        if h.heartbeat_age_s is None:
            parts.append(f"{h.items} claimed by {h.worker} (never beat; lease ends in "
                         f"{max(h.lease_left_s, 0):.0f} s)")  # fmt: skip
        else:
            parts.append(f"{h.items} claimed by {h.worker} (silent {h.heartbeat_age_s:.0f} s: "
                         f"dead, returned at the next sweep)")  # fmt: skip
    return "; ".join(parts) + (
        f". Run `lor process {run.name}`, or start workers (`lor worker --beat`) and "
        f"`lor run dispatch {run.name}`"
    )


def open_run_statuses(engine: Engine) -> list[RunStatus]:
    """:func:`run_status` of every open run, oldest first."""
    with engine.connect() as conn:
        ids = store.open_run_ids(conn)
    return [run_status(engine, run_id) for run_id in ids]


RUN_CONFIG_KEYS: dict[str, str] = {
    "batch_size": "objects per claimed batch",
    "lease_s": "claim lease in seconds",
    "max_attempts": "tries before a work item fails",
    "mcmc_fallback": "MCMC (emulator likelihood x prior) for the objects the estimator flags",
    "marginalize_hyperparameters": "reprocess: draws of the new prior's fitted hyperparameters",
    "prior_chunk_objects": "prior-only reprocess: objects per range (0: work items)",
    "prior_lanes": "prior-only reprocess: ranges computed at once",
}
"""Run settings a caller may give (``processing_runs.config``); lor adds ``reprocess`` (a
reprocess run's plan) itself. Anything else is refused: a misspelt key would be stored and
silently ignored."""


def check_run_config(config: dict[str, Any]) -> None:
    """Refuse unknown run settings and ones that would stall or spin a run (raises
    :class:`ConfigError`)."""
    unknown = sorted(set(config) - set(RUN_CONFIG_KEYS))
    if unknown:
        known = ", ".join(f"{k} ({v})" for k, v in RUN_CONFIG_KEYS.items())
        raise ConfigError(f"unknown run config keys {unknown}; known: {known}")
    if not isinstance(config.get("mcmc_fallback", False), bool):
        raise ConfigError(
            f"run config mcmc_fallback must be true or false, not {config['mcmc_fallback']!r}"
        )
    for key in ("batch_size", "max_attempts"):
        if not isinstance(config[key], int) or config[key] < 1:
            raise ConfigError(f"run config {key} must be a positive integer, not {config[key]!r}")
    if not isinstance(config["lease_s"], int | float) or config["lease_s"] <= 0:
        raise ConfigError(f"run config lease_s must be positive, not {config['lease_s']!r}")


def run_as_dict(run: Run) -> dict[str, Any]:
    out = asdict(run)
    out["created_at"] = run.created_at.isoformat()
    return out
