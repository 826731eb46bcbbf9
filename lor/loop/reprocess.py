"""Reprocess runs: bring a run's stored posteriors up to date with a new prior or calibration.

Steps 2 and 3 of the model's life cycle form a loop: a new prior or calibration version makes
stored posteriors stale. A *reprocess run* (kind ``reprocess``) fixes that without running
inference again: it names the run whose posteriors it updates (``parent_run_id``), pins the
new prior and calibration versions next to the parent's emulator, estimator and release, and
queues only the affected objects. Its processor (:mod:`lor.loop.reprocess_processor`)
importance-reweights each parent posterior by new/old prior and new/old calibration
likelihood and stores the refit as a new row (method ``reweighted``, ``parent_posterior_id``
set); the parent's rows are never touched.

Affected: every object with a posterior in the parent run when the prior changed; otherwise
only objects of tracts whose calibration terms differ between the parent's version and the
new one (a missing term counting as offset 0 and scale 1).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Engine

from lor.db import run_store as store
from lor.db.prior_chunk_store import enqueue_chunks
from lor.db.run_store import Run
from lor.errors import ConfigError
from lor.runs.lifecycle import QueuedRun, check_run_config
from lor.version import code_version

#: Run settings a reprocess run takes from its parent unless told otherwise: how its
#: posteriors were made should be how their updates are made.
INHERITED_CONFIG = ("mcmc_fallback",)
#: Run config key of a prior-only reprocess run: objects per range of the parent run's
#: posteriors (:mod:`lor.loop.prior_chunks`); 0 queues work items instead.
PRIOR_CHUNKS = "prior_chunk_objects"
PRIOR_CHUNK_OBJECTS = 16_384
"""Default range: ~12 MB of parent rows, one transaction of a fraction of a second."""


def create_reprocess_run(
    engine: Engine,
    parent_run: int | str,
    prior_version: int | str | None = None,
    calibration_version: int | str | None = None,
    name: str | None = None,
    config: dict[str, Any] | None = None,
) -> QueuedRun:
    """Create a run that updates ``parent_run``'s posteriors, and queue the affected objects.

    ``prior_version`` and ``calibration_version`` (ids or names) default to the parent's; at
    least one must differ from it. One transaction, under the enqueue lock. The run's config
    (:data:`lor.db.run_store.DEFAULT_RUN_CONFIG`, then the parent's :data:`INHERITED_CONFIG`,
    then ``config``) records under ``reprocess`` why it was made and which tracts it covers.
    """
    with engine.begin() as conn:
        store.lock_enqueue(conn)
        parent = _parent(conn, parent_run)
        inherited = {k: parent.config[k] for k in INHERITED_CONFIG if k in parent.config}
        settings = {**store.DEFAULT_RUN_CONFIG, **inherited, **(config or {})}
        check_run_config(settings)
        prior = _version(conn, "prior", prior_version, parent.prior_version_id)
        calibration = _version(
            conn, "calibration", calibration_version, parent.calibration_version_id
        )
        reasons = _reasons(parent, prior, calibration)
        if reasons == ["prior"]:
            settings.setdefault(PRIOR_CHUNKS, PRIOR_CHUNK_OBJECTS)
            if not isinstance(settings[PRIOR_CHUNKS], int) or settings[PRIOR_CHUNKS] < 0:
                raise ConfigError(f"{PRIOR_CHUNKS} must be an integer >= 0 (0: work items)")
        else:
            settings.pop(PRIOR_CHUNKS, None)  # a calibration change reads the photometry
        if settings.get("marginalize_hyperparameters"):  # refuse now, not in every worker
            from lor.db.prior_store import PriorManager

            PriorManager(engine).fitted_uncertainty(conn, prior)
        _refuse_duplicate(conn, parent, prior, calibration)
        tracts = affected_tracts(conn, parent, prior, calibration)
        settings["reprocess"] = _provenance(parent, prior, calibration, reasons, tracts)
        versions = {
            "emulator": parent.emulator_version_id,
            "estimator": parent.estimator_version_id,
            "prior": prior,
            "calibration": calibration,
        }
        run_id = store.insert_run(
            conn, name, parent.release_id, versions, code_version(), settings,
            kind="reprocess", parent_run_id=parent.id,
        )  # fmt: skip
        if settings.get(PRIOR_CHUNKS):  # prior only: ranges of the parent run, set-based
            enqueued = enqueue_chunks(conn, run_id, parent.id, int(settings[PRIOR_CHUNKS]))
        else:
            every_tract = "prior" in reasons  # the whole parent run: no tract filter needed
            enqueued = store.enqueue_reprocess(
                conn, run_id, parent.id, None if every_tract else tracts
            )
        store.finish_if_done(conn, run_id)
        return QueuedRun(store.get_run(conn, run_id), enqueued)


def affected_tracts(
    conn: Connection,
    parent_run: Run | int | str,
    prior_version: int | None,
    calibration_version: int | None,
) -> list[int]:
    """Tracts of the parent run whose posteriors these prior and calibration versions change.

    A new prior changes every posterior, so every tract where the parent stored one, as do
    new survey-wide terms (SED offsets, error floors); a new calibration otherwise only
    those tracts whose terms differ from the parent's calibration.
    """
    parent = parent_run if isinstance(parent_run, Run) else store.get_run(conn, parent_run)
    if prior_version == parent.prior_version_id:
        if calibration_version == parent.calibration_version_id:
            return []
        if store.survey_terms_differ(conn, parent.calibration_version_id, calibration_version):
            return store.posterior_tracts(conn, parent.id)
        changed = set(
            store.changed_calibration_tracts(
                conn, parent.calibration_version_id, calibration_version
            )
        )
        if not changed:
            return []
        return [t for t in store.posterior_tracts(conn, parent.id) if t in changed]
    return store.posterior_tracts(conn, parent.id)


def _parent(conn: Connection, ref: int | str) -> Run:
    """The parent run; refused while it still has work, which would then never be updated."""
    parent = store.get_run(conn, ref)
    if parent.status != "complete":
        raise ConfigError(
            f"run {parent.name} (id {parent.id}) is {parent.status}: finish processing it "
            "before reprocessing its posteriors"
        )
    return parent


def _version(conn: Connection, kind: str, ref: int | str | None, default: int | None) -> int | None:
    return default if ref is None else store.version_id(conn, kind, ref)


def _reasons(parent: Run, prior: int | None, calibration: int | None) -> list[str]:
    """What changed from the parent ('prior', 'calibration'); refuses when nothing did."""
    reasons = [
        kind
        for kind, new, old in (
            ("prior", prior, parent.prior_version_id),
            ("calibration", calibration, parent.calibration_version_id),
        )
        if new != old
    ]
    if not reasons:
        raise ConfigError(
            f"nothing to reprocess: run {parent.name} (id {parent.id}) already pins prior "
            f"{parent.prior_version_id} and calibration {parent.calibration_version_id}; "
            "give a different --prior or --calibration"
        )
    return reasons


def _refuse_duplicate(conn: Connection, parent: Run, prior: int | None, cal: int | None) -> None:
    """A second identical reprocess run would store every reweighted posterior twice."""
    existing = store.reprocess_runs(conn, parent.id, prior, cal)
    if existing:
        raise ConfigError(
            f"run {existing[0]} already reprocesses run {parent.name} (id {parent.id}) to "
            f"prior {prior} and calibration {cal}; process or dispatch that run instead"
        )


def _provenance(
    parent: Run, prior: int | None, calibration: int | None, reasons: list[str], tracts: list[int]
) -> dict[str, Any]:
    """What a reprocess run records in its config: what it updates, why, and where."""
    return {
        "parent_run_id": parent.id,
        "reasons": reasons,
        "prior": {"from": parent.prior_version_id, "to": prior},
        "calibration": {"from": parent.calibration_version_id, "to": calibration},
        "affected_tracts": tracts,
    }
