"""Run slice of the store: processing runs, the versions they pin, queueing and progress.

A run pins its model bundle and code version; queueing work for it is one INSERT ... SELECT
into ``lor.work_items`` (:func:`enqueue_objects` for an inference run over a release,
:func:`enqueue_reprocess` for a reprocess run over its parent run's posteriors). Claiming,
completing and failing items are the work-queue verbs of :mod:`lor.db.queue_store`.

Functions take an open ``Connection`` inside the caller's transaction.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, text

from lor.errors import ConfigError, NotFoundError

#: Run settings every run records (``processing_runs.config``); callers may override them.
DEFAULT_RUN_CONFIG: dict[str, Any] = {"batch_size": 1000, "lease_s": 600, "max_attempts": 3}


@dataclass(frozen=True)
class Run:
    """A processing run as stored, with the names a processor factory needs."""

    id: int
    name: str
    kind: str
    status: str
    release_id: int
    release_name: str
    emulator_version_id: int | None
    estimator_version_id: int | None
    prior_version_id: int | None
    calibration_version_id: int | None
    code_version: str
    config: dict[str, Any]
    created_at: datetime
    estimator_family: str | None = None
    parent_run_id: int | None = None  # reprocess runs: the run whose posteriors they update

    @property
    def bundle(self) -> tuple[int | None, int | None, int | None, int | None]:
        """(emulator, estimator, prior, calibration): runs with equal bundles are equivalent."""
        return (
            self.emulator_version_id,
            self.estimator_version_id,
            self.prior_version_id,
            self.calibration_version_id,
        )


_RUN_SELECT = """
    SELECT r.id, r.name, r.kind, r.status, r.release_id, rel.name AS release_name,
           r.emulator_version_id, r.estimator_version_id, r.prior_version_id,
           r.calibration_version_id, r.code_version, r.config, r.created_at,
           est.family_name AS estimator_family, r.parent_run_id
    FROM lor.processing_runs r
    JOIN lor.releases rel ON rel.id = r.release_id
    LEFT JOIN lor.model_versions est ON est.id = r.estimator_version_id"""


def get_run(conn: Connection, ref: int | str) -> Run:
    """The run with id ``ref`` (an int or a string of digits) or, failing that, name ``ref``."""
    row = None
    if isinstance(ref, int) or str(ref).isdigit():
        row = conn.execute(text(_RUN_SELECT + " WHERE r.id = :id"), {"id": int(ref)}).one_or_none()
    if row is None:
        row = conn.execute(text(_RUN_SELECT + " WHERE r.name = :n"), {"n": str(ref)}).one_or_none()
    if row is None:
        raise NotFoundError(f"no processing run with id or name {ref!r}")
    return Run(**row._asdict())


def latest_version(conn: Connection, kind: str, band_set_id: int | None = None) -> int | None:
    """Id of the newest version of ``kind`` (emulator, estimator, prior, calibration) or None;
    models only among those of ``band_set_id`` when it is given."""
    table, where = _version_table(kind)
    params: dict[str, Any] = {"kind": kind}
    if band_set_id is not None and table == "model_versions":
        where, params["bs"] = f"{where} AND band_set_id = :bs", band_set_id
    return conn.execute(
        text(f"SELECT id FROM lor.{table} {where} ORDER BY created_at DESC, id DESC LIMIT 1"),
        params,
    ).scalar_one_or_none()


def release_band_set(conn: Connection, release_id: int) -> tuple[int, str]:
    """(id, name) of the band set of a release."""
    row = conn.execute(
        text(
            "SELECT b.id, b.name FROM lor.releases r JOIN lor.band_sets b ON b.id = r.band_set_id"
            " WHERE r.id = :r"
        ),
        {"r": release_id},
    ).one()
    return row.id, row.name


def check_model_band_sets(
    conn: Connection, versions: dict[str, int | None], band_set_id: int, release: str
) -> None:
    """Refuse model versions whose band set is not the release's: a network trained on
    other bands would read the release's flux columns as the wrong bands."""
    ids = [v for k, v in versions.items() if k in ("emulator", "estimator") and v is not None]
    if not ids:
        return
    rows = conn.execute(
        text(
            "SELECT m.id, m.kind, b.id AS bs_id, b.name AS bs_name FROM lor.model_versions m"
            " JOIN lor.band_sets b ON b.id = m.band_set_id WHERE m.id = ANY(:ids)"
        ),
        {"ids": ids},
    ).all()
    wrong = [r for r in rows if r.bs_id != band_set_id]
    if wrong:
        own = conn.execute(
            text("SELECT name FROM lor.band_sets WHERE id = :id"), {"id": band_set_id}
        ).scalar_one()
        raise ConfigError(
            f"release {release!r} has band set {own!r}, but "
            + ", ".join(f"{r.kind} version {r.id} has {r.bs_name!r}" for r in wrong)
            + "; pick models trained on the release's band set"
        )


def check_version(conn: Connection, kind: str, version_id: int) -> None:
    table, where = _version_table(kind)
    clause = f"{where} AND id = :id" if where else "WHERE id = :id"
    found = conn.execute(
        text(f"SELECT 1 FROM lor.{table} {clause}"), {"kind": kind, "id": version_id}
    ).scalar_one_or_none()
    if found is None:
        raise NotFoundError(f"no {kind} version with id {version_id}")


def version_id(conn: Connection, kind: str, ref: int | str) -> int:
    """Id of the ``prior`` or ``calibration`` version with id ``ref`` or, failing that, name ``ref``.

    Users know these versions by name (``calibrate`` names them); model versions have none.
    """
    if kind not in ("prior", "calibration"):
        raise ValueError(f"{kind} versions have no name; pass an id")
    found = None
    if isinstance(ref, int) or str(ref).isdigit():
        found = conn.execute(
            text(f"SELECT id FROM lor.{kind}_versions WHERE id = :id"), {"id": int(ref)}
        ).scalar_one_or_none()
    if found is None:
        found = conn.execute(
            text(f"SELECT id FROM lor.{kind}_versions WHERE name = :n"), {"n": str(ref)}
        ).scalar_one_or_none()
    if found is None:
        raise NotFoundError(f"no {kind} version with id or name {ref!r}")
    return found


def _version_table(kind: str) -> tuple[str, str]:
    if kind in ("emulator", "estimator"):
        return "model_versions", "WHERE kind = :kind"
    if kind in ("prior", "calibration"):
        return f"{kind}_versions", ""
    raise ValueError(f"unknown version kind {kind!r}")


def insert_run(
    conn: Connection,
    name: str | None,
    release_id: int,
    versions: dict[str, int | None],
    code_version: str,
    config: dict[str, Any],
    kind: str = "infer",
    parent_run_id: int | None = None,
) -> int:
    """Store a new open run; the default name is ``run-<id>``.

    ``kind`` is ``infer`` or ``reprocess``; a reprocess run names the ``parent_run_id`` whose
    posteriors it updates.
    """
    run_id = conn.execute(
        text("SELECT nextval(pg_get_serial_sequence('lor.processing_runs', 'id'))")
    ).scalar_one()
    conn.execute(
        text(
            """INSERT INTO lor.processing_runs (id, name, kind, status, release_id,
                   emulator_version_id, estimator_version_id, prior_version_id,
                   calibration_version_id, parent_run_id, code_version, config)
               VALUES (:id, :name, :kind, 'open', :release_id, :emulator, :estimator,
                   :prior, :calibration, :parent, :code_version, CAST(:config AS jsonb))"""
        ),
        {
            "id": run_id,
            "name": name or f"run-{run_id}",
            "kind": kind,
            "release_id": release_id,
            "parent": parent_run_id,
            "code_version": code_version,
            "config": _json(config),
            **versions,
        },
    )
    return run_id


def set_run_release(conn: Connection, run_id: int, release_id: int) -> None:
    conn.execute(
        text("UPDATE lor.processing_runs SET release_id = :rel, status = 'open' WHERE id = :id"),
        {"rel": release_id, "id": run_id},
    )


def release_sequence(conn: Connection, release_id: int) -> int:
    return conn.execute(
        text("SELECT sequence FROM lor.releases WHERE id = :id"), {"id": release_id}
    ).scalar_one()


def bundle_runs(conn: Connection, run: Run) -> list[int]:
    """Ids of runs (this one included) that pin exactly the same model bundle."""
    emulator, estimator, prior, calibration = run.bundle
    return list(
        conn.execute(
            text(
                """SELECT id FROM lor.processing_runs
                   WHERE kind = :kind
                     AND emulator_version_id IS NOT DISTINCT FROM CAST(:emulator AS integer)
                     AND estimator_version_id IS NOT DISTINCT FROM CAST(:estimator AS integer)
                     AND prior_version_id IS NOT DISTINCT FROM CAST(:prior AS integer)
                     AND calibration_version_id IS NOT DISTINCT FROM CAST(:calibration AS integer)"""
            ),
            {
                "kind": run.kind,
                "emulator": emulator,
                "estimator": estimator,
                "prior": prior,
                "calibration": calibration,
            },
        ).scalars()
    )


def lock_enqueue(conn: Connection) -> None:
    """Serialize enqueues: "already scheduled in another run" must see committed work."""
    conn.execute(text("SELECT pg_advisory_xact_lock(hashtext('lor.enqueue'))"))


def enqueue_objects(
    conn: Connection,
    run_id: int,
    release: str,
    bundle: Sequence[int],
    introduced_after: int | None = None,
) -> int:
    """Queue every object version current as of ``release`` not yet covered by the bundle.

    Covered: a posterior under any run of ``bundle``, a pending or claimed item in another
    run of it (work already scheduled), or any item of this run (``ON CONFLICT``). With
    ``introduced_after`` (a release sequence) only versions introduced by later releases are
    considered: that is what an incremental extension adds. One INSERT ... SELECT.
    """
    where = ["TRUE"]
    if introduced_after is not None:
        where.append("o.release_id IN (SELECT id FROM lor.releases WHERE sequence > :after)")
    others = [b for b in bundle if b != run_id]
    if bundle:
        where.append(
            """NOT EXISTS (SELECT 1 FROM lor.posteriors p WHERE p.tract_id = o.tract_id
                   AND p.object_id = o.object_id AND p.run_id = ANY(:bundle))"""
        )
    if others:
        where.append(
            """NOT EXISTS (SELECT 1 FROM lor.work_items w WHERE w.tract_id = o.tract_id
                   AND w.object_id = o.object_id AND w.run_id = ANY(:others)
                   AND w.state IN ('pending', 'claimed'))"""
        )
    queued = conn.execute(
        text(
            f"""INSERT INTO lor.work_items (tract_id, run_id, object_id, state)
                SELECT o.tract_id, :run_id, o.object_id, 'pending'
                FROM lor.objects_as_of(:release) o
                WHERE {" AND ".join(where)}
                ON CONFLICT DO NOTHING"""
        ),
        {
            "run_id": run_id,
            "release": release,
            "after": introduced_after,
            "bundle": list(bundle),
            "others": others,
        },
    ).rowcount
    if queued:
        # Fresh statistics before the first claim: with the new items unseen by the planner
        # (autovacuum analyses within a minute or so), the claim's join is planned with the
        # whole run as its inner side, which costs O(run size) per claimed item.
        conn.execute(text("ANALYZE lor.work_items"))
    return queued


def enqueue_reprocess(
    conn: Connection, run_id: int, parent_run_id: int, tracts: Sequence[int] | None
) -> int:
    """Queue every object with a posterior in the parent run (of ``tracts``, when given).

    Each item records the parent posterior it updates. Posteriors without params (method
    ``none``) have nothing to reweight and are left out. One INSERT ... SELECT; ``ON CONFLICT``
    makes queueing again a no-op.
    """
    where = ["p.run_id = :parent", "p.params IS NOT NULL"]
    if tracts is not None:
        where.append("p.tract_id = ANY(:tracts)")
    queued = conn.execute(
        text(
            f"""INSERT INTO lor.work_items (tract_id, run_id, object_id, state,
                    parent_posterior_id)
                SELECT p.tract_id, :run_id, p.object_id, 'pending', p.posterior_id
                FROM lor.posteriors p
                WHERE {" AND ".join(where)}
                ON CONFLICT DO NOTHING"""
        ),
        {"run_id": run_id, "parent": parent_run_id, "tracts": [int(t) for t in tracts or ()]},
    ).rowcount
    if queued:  # fresh statistics before the first claim (see enqueue_objects); each claim
        # also joins the parent posteriors, which a run just wrote without autovacuum seeing
        # them: without statistics the first reprocess ran at half speed (4.6k vs 9.2k
        # objects/s on 2e4 objects).
        conn.execute(text("ANALYZE lor.work_items"))
        conn.execute(text("ANALYZE lor.posteriors"))
    return queued


def posterior_tracts(conn: Connection, run_id: int) -> list[int]:
    """Tracts where a run stored at least one posterior with params, in order.

    One index probe per known tract (``ix_posteriors_run_id_tract_id_z_q50``), stopping at
    the first row with params, rather than a scan over all of the run's posteriors.
    """
    return list(
        conn.execute(
            text(
                """SELECT t.id FROM lor.tracts t
                   WHERE EXISTS (SELECT 1 FROM lor.posteriors p WHERE p.run_id = :r
                                   AND p.tract_id = t.id AND p.params IS NOT NULL)
                   ORDER BY t.id"""
            ),
            {"r": run_id},
        ).scalars()
    )


def changed_calibration_tracts(conn: Connection, old: int | None, new: int | None) -> list[int]:
    """Tracts whose terms differ between two calibration versions (None: no calibration).

    Compared per tract and band, a missing term counting as offset 0 and scale 1 (what
    processing applies), so a version that only spells out identity terms changes nothing.
    """
    return list(
        conn.execute(
            text(
                """WITH old AS (SELECT tract_id, band, zeropoint_offset_mag AS zp, noise_scale AS s
                               FROM lor.calibration_terms WHERE calibration_version_id = :old),
                        new AS (SELECT tract_id, band, zeropoint_offset_mag AS zp, noise_scale AS s
                               FROM lor.calibration_terms WHERE calibration_version_id = :new)
                   SELECT DISTINCT coalesce(o.tract_id, n.tract_id) AS tract_id
                   FROM old o FULL JOIN new n ON n.tract_id = o.tract_id AND n.band = o.band
                   WHERE coalesce(o.zp, 0) <> coalesce(n.zp, 0)
                      OR coalesce(o.s, 1) <> coalesce(n.s, 1)
                   ORDER BY tract_id"""
            ),
            {"old": old, "new": new},
        ).scalars()
    )


def survey_terms_differ(conn: Connection, old: int | None, new: int | None) -> bool:
    """Whether two calibration versions' survey-wide terms (SED offsets, error floors)
    differ; a missing term counts as offset 0 and the default floor (NULL here), so only
    versions that store the same values compare equal."""
    return bool(
        conn.execute(
            text(
                """WITH old AS (SELECT band, sed_offset_mag AS o, error_floor_mag AS f
                               FROM lor.calibration_survey_terms WHERE calibration_version_id = :old),
                        new AS (SELECT band, sed_offset_mag AS o, error_floor_mag AS f
                               FROM lor.calibration_survey_terms WHERE calibration_version_id = :new)
                   SELECT EXISTS (SELECT 1 FROM old FULL JOIN new USING (band)
                                  WHERE old.o IS DISTINCT FROM new.o
                                     OR old.f IS DISTINCT FROM new.f)"""
            ),
            {"old": old, "new": new},
        ).scalar_one()
    )


def reprocess_runs(
    conn: Connection, parent_run_id: int, prior: int | None, calibration: int | None
) -> list[int]:
    """Ids of reprocess runs that already update ``parent_run_id`` to these versions."""
    return list(
        conn.execute(
            text(
                """SELECT id FROM lor.processing_runs
                   WHERE kind = 'reprocess' AND parent_run_id = :parent
                     AND prior_version_id IS NOT DISTINCT FROM CAST(:prior AS integer)
                     AND calibration_version_id IS NOT DISTINCT FROM CAST(:cal AS integer)
                   ORDER BY id"""
            ),
            {"parent": parent_run_id, "prior": prior, "cal": calibration},
        ).scalars()
    )


def state_counts(conn: Connection, run_id: int) -> dict[str, int]:
    """Objects of a run by state: its work items, and the ranges of a prior-only reprocess
    run (:mod:`lor.db.prior_chunk_store`; an in-flight range counts as pending)."""
    counts = dict.fromkeys(("pending", "claimed", "done", "failed"), 0)
    rows = conn.execute(
        text(
            """SELECT state, count(*) FROM lor.work_items WHERE run_id = :r GROUP BY state
               UNION ALL
               SELECT state, sum(objects) FROM lor.prior_chunks WHERE run_id = :r
               GROUP BY state"""
        ),
        {"r": run_id},
    ).all()
    for state, n in rows:
        counts[state] += int(n)
    return counts


def open_run_ids(conn: Connection) -> list[int]:
    """Ids of open runs, oldest first."""
    return list(
        conn.execute(
            text("SELECT id FROM lor.processing_runs WHERE status = 'open' ORDER BY id")
        ).scalars()
    )


def pending_count(conn: Connection, run_id: int) -> int:
    """Pending objects of a run: items (through the partial index of items not done) and
    those of pending prior ranges."""
    return conn.execute(
        text(
            """SELECT (SELECT count(*) FROM lor.work_items WHERE run_id = :r AND state = 'pending')
                    + (SELECT coalesce(sum(objects), 0) FROM lor.prior_chunks
                       WHERE run_id = :r AND state = 'pending')"""
        ),
        {"r": run_id},
    ).scalar_one()


def runs_with_pending_work(conn: Connection) -> dict[int, int]:
    """{run id: pending items} for open runs that have pending items."""
    rows = conn.execute(
        text(
            """SELECT w.run_id, count(*) FROM lor.work_items w
               JOIN lor.processing_runs r ON r.id = w.run_id AND r.status = 'open'
               WHERE w.state = 'pending' GROUP BY w.run_id
               UNION ALL
               SELECT c.run_id, sum(c.objects) FROM lor.prior_chunks c
               JOIN lor.processing_runs r ON r.id = c.run_id AND r.status = 'open'
               WHERE c.state = 'pending' GROUP BY c.run_id"""
        )
    ).all()
    out: dict[int, int] = {}
    for rid, n in rows:
        out[rid] = out.get(rid, 0) + int(n)
    return out


def recent_posteriors(conn: Connection, run_id: int, seconds: float) -> tuple[int, float]:
    """(posteriors a run wrote in the last ``seconds``, age in s of the oldest of them).

    Reads ``created_at`` through its BRIN index: only the newest block ranges are visited.
    """
    n, age = conn.execute(
        text(
            """SELECT count(*), extract(epoch FROM now() - min(created_at))
               FROM lor.posteriors
               WHERE created_at > now() - make_interval(secs => :s) AND run_id = :r"""
        ),
        {"r": run_id, "s": float(seconds)},
    ).one()
    return n, float(age or 0.0)


def finish_if_done(conn: Connection, run_id: int | None = None) -> list[int]:
    """Mark open runs (one, or all) complete when no item is pending or claimed; their ids."""
    return list(
        conn.execute(
            text(
                """UPDATE lor.processing_runs r SET status = 'complete'
                   WHERE r.status = 'open'
                     AND (CAST(:r AS integer) IS NULL OR r.id = :r)
                     AND NOT EXISTS (
                       SELECT 1 FROM lor.work_items w
                       WHERE w.run_id = r.id AND w.state IN ('pending', 'claimed'))
                     AND NOT EXISTS (
                       SELECT 1 FROM lor.prior_chunks c
                       WHERE c.run_id = r.id AND c.state = 'pending')
                   RETURNING r.id"""
            ),
            {"r": run_id},
        ).scalars()
    )


def _json(value: dict[str, Any]) -> str:
    return json.dumps(value, sort_keys=True)
