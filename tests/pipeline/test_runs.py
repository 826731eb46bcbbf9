"""Runs and the PostgreSQL work queue, in-process, against the real database.

A deterministic test processor (tests/workers/processors.py) stands in for the estimator.
"""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from sqlalchemy import create_engine, event, text

from lor.bench.synthetic_catalog import synthetic_object_table
from lor.catalog.ingest import ingest_catalog
from lor.db import queue_store as queue
from lor.errors import ConfigError, NotFoundError
from lor.runs import processing
from lor.runs.lifecycle import create_run, extend_run, get_run, run_status
from lor.runs.processing import (
    NoProcessorError,
    Processors,
    claim_objects,
    load_processor,
    posterior_rows,
    process_batch,
    process_run,
)
from lor.version import code_version
from tests.pipeline.catalog_files import write_catalog
from tests.workers.processors import FLAG_MISSING, FluxProcessor, expected_params, flux_processor
from tests.workers.support import exactly_once, ingest_synthetic


def _insert_versions(engine) -> dict[str, int]:  # type: ignore[no-untyped-def]
    """One emulator, two estimators, a prior and a calibration version; returns the newest ids."""
    with engine.begin() as conn:
        band_set = conn.execute(text("SELECT id FROM lor.band_sets")).scalar_one()
        ids = {}
        for i, kind in enumerate(("emulator", "estimator", "estimator")):
            ids[kind] = conn.execute(
                text(
                    """INSERT INTO lor.model_versions (kind, family_name, family_version,
                           artifact_sha256, artifact_uri, band_set_id, param_names,
                           training_ranges, metrics, config)
                       VALUES (:kind, 'test-family', '1', :sha, '/nowhere', :bs, '{z}',
                               '{}', '{}', '{}') RETURNING id"""
                ),
                {"kind": kind, "sha": f"{i:064x}", "bs": band_set},
            ).scalar_one()
        ids["prior"] = conn.execute(
            text(
                """INSERT INTO lor.prior_versions (name, family, family_version, hyperparameters,
                       selection, method, provenance)
                   VALUES ('p1', 'test', '1', '{}', '{}', 'interim', '{}') RETURNING id"""
            )
        ).scalar_one()
        ids["calibration"] = conn.execute(
            text(
                """INSERT INTO lor.calibration_versions (name, method, provenance)
                   VALUES ('c1', 'identity', '{}') RETURNING id"""
            )
        ).scalar_one()
    return ids


def test_run_lifecycle(engine, tmp_path: Path) -> None:
    """create -> status -> process -> status: every object once, with full provenance."""
    n = 300
    ingest_synthetic(engine, tmp_path, n)
    queued = create_run(engine, "DR1", name="first", config={"batch_size": 64})
    run = queued.run
    assert queued.enqueued == n and run.status == "open" and run.name == "first"
    assert run.bundle == (None, None, None, None)  # nothing registered: NULL versions
    assert run.code_version == code_version()
    assert run.config == {"batch_size": 64, "lease_s": 600, "max_attempts": 3}
    before = run_status(engine, run.id)
    assert before.counts == {"pending": n, "claimed": 0, "done": 0, "failed": 0}
    assert before.rate_per_s == 0 and before.eta_s is None

    counts = process_run(engine, run.id, processor=FluxProcessor(), progress=False)
    assert (counts.claimed, counts.done, counts.failed) == (n, n, 0)
    after = run_status(engine, run.id)
    assert after.counts == {"pending": 0, "claimed": 0, "done": n, "failed": 0}
    assert after.rate_per_s > 0 and after.eta_s == 0 and after.run.status == "complete"
    assert exactly_once(engine, run.id) == {
        "posteriors": n, "objects": n, "items": n, "done": n, "done_without_posterior": 0,
    }  # fmt: skip
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                """SELECT p.*, o.flux AS o_flux, o.flux_err AS o_err, o.input_hash AS o_hash
                   FROM lor.posteriors p JOIN lor.objects o USING (tract_id, object_id)"""
            )
        ).all()
    worker = processing.default_worker()
    for r in rows[:50]:
        assert (r.run_id, r.method, r.representation_name, r.representation_version) == (
            run.id, "amortized", "test-flux", "1",
        )  # fmt: skip
        assert r.worker_host == worker and r.input_hash == r.o_hash and r.created_at is not None
        assert r.posterior_id == uuid.uuid5(queue.POSTERIOR_NAMESPACE, f"{run.id}:{r.object_id}")
        np.testing.assert_allclose(
            r.params, expected_params(np.array(r.o_flux), np.array(r.o_err), r.tract_id), rtol=1e-5
        )
        assert r.z_q50 == pytest.approx(abs(r.params[0]) / 1000.0, rel=1e-5) and r.z_std is None

    again = create_run(engine, "DR1")  # same (empty) bundle: everything is covered
    assert again.enqueued == 0 and again.run.status == "complete"


def test_versions_default_to_latest_and_bundles_are_separate(engine, tmp_path: Path) -> None:
    ingest_synthetic(engine, tmp_path, 50)
    ids = _insert_versions(engine)
    run = create_run(engine, "DR1").run
    assert run.bundle == (ids["emulator"], ids["estimator"], ids["prior"], ids["calibration"])
    assert run.estimator_family == "test-family"
    older = ids["estimator"] - 1
    other = create_run(engine, "DR1", estimator=older)
    assert other.run.estimator_version_id == older
    assert other.enqueued == 50  # another bundle: queued again
    same = create_run(engine, "DR1", estimator=older)
    assert same.enqueued == 0  # already pending in a run with this bundle
    with pytest.raises(NotFoundError, match="no estimator version with id"):
        create_run(engine, "DR1", estimator=ids["emulator"])  # wrong kind
    with pytest.raises(NotFoundError, match="no release named 'DR9'"):
        create_run(engine, "DR9")
    with pytest.raises(ConfigError, match="batch_size"):
        create_run(engine, "DR1", config={"batch_size": 0})
    assert get_run(engine, run.name) == get_run(engine, run.id)


def test_load_processor_needs_an_estimator(engine, tmp_path: Path, monkeypatch) -> None:
    ingest_synthetic(engine, tmp_path, 10)
    bare = create_run(engine, "DR1").run
    with engine.connect() as conn:
        with pytest.raises(NoProcessorError, match="no estimator registered for this run"):
            load_processor(conn, bare)
    with pytest.raises(NoProcessorError):  # nothing claimed when there is no processor
        process_batch(engine, bare.id, processors=Processors())
    assert run_status(engine, bare.id).counts["pending"] == 10
    ids = _insert_versions(engine)
    pinned = create_run(engine, "DR1", estimator=ids["estimator"]).run
    with engine.connect() as conn:
        with pytest.raises(NoProcessorError, match="estimator family 'test-family'"):
            load_processor(conn, pinned)
        registry = {"test-family": "tests.workers.processors:flux_processor"}
        monkeypatch.setattr(processing, "ESTIMATOR_PROCESSORS", registry)
        assert isinstance(load_processor(conn, pinned), FluxProcessor)
        monkeypatch.setattr(processing, "ESTIMATOR_PROCESSORS", {"test-family": "tests.x:nope"})
        with pytest.raises(ConfigError, match="cannot import processor factory"):
            load_processor(conn, pinned)
    injected = Processors(flux_processor)  # a factory passed in, not the registry
    assert process_batch(engine, pinned.id, processors=injected).done == 10
    assert len(injected) == 1


def test_processor_cache_is_bounded_and_least_recently_used(engine, tmp_path: Path) -> None:
    ingest_synthetic(engine, tmp_path, 5)
    runs = [create_run(engine, "DR1").run.id for _ in range(3)]
    built: list[int] = []

    def factory(conn, run):  # type: ignore[no-untyped-def]
        built.append(run.id)
        return FluxProcessor()

    cache = Processors(factory, maxsize=2)
    first = cache.get(engine, runs[0])[1]
    cache.get(engine, runs[1])
    assert cache.get(engine, runs[0])[1] is first  # a hit: not built again, now most recent
    cache.get(engine, runs[2])  # over the bound: drops runs[1], the least recently used
    assert len(cache) == 2 and built == [runs[0], runs[1], runs[2]]
    assert cache.get(engine, runs[0])[1] is first
    cache.get(engine, runs[1])
    assert built == [runs[0], runs[1], runs[2], runs[1]]
    with pytest.raises(ValueError, match="maxsize"):
        Processors(factory, maxsize=0)


def test_later_release_queues_only_new_and_changed(engine, tmp_path: Path) -> None:
    """DR1 processed; DR2 re-measures 40 objects and adds 25: extend queues exactly those 65."""
    base = ingest_synthetic(engine, tmp_path, 300, "DR1", seed=2)
    run = create_run(engine, "DR1").run
    process_run(engine, run.id, processor=FluxProcessor(), progress=False)
    g = base["g_cModelFlux"].to_numpy().copy()
    g[:40] *= 1.05
    dr2 = base.set_column(base.schema.get_field_index("g_cModelFlux"), "g_cModelFlux", pa.array(g))
    dr2 = pa.concat_tables([dr2, synthetic_object_table(25, seed=3, first_id=9_000_000_000_000)])
    ingest_catalog(engine, write_catalog(dr2, tmp_path / "dr2.parquet"), "DR2", progress=False)

    queued = extend_run(engine, run.id, "DR2")
    assert queued.enqueued == 65 and queued.run.release_name == "DR2"
    assert queued.run.status == "open"
    with engine.connect() as conn:
        pending_ids = set(
            conn.execute(
                text(
                    """SELECT o.catalog_id FROM lor.work_items w
                       JOIN lor.objects o USING (tract_id, object_id)
                       WHERE w.run_id = :r AND w.state = 'pending'"""
                ),
                {"r": run.id},
            ).scalars()
        )
    ids = base["objectId"].to_numpy()
    assert pending_ids == set(ids[:40]) | set(range(9_000_000_000_000, 9_000_000_000_025))
    process_run(engine, run.id, processor=FluxProcessor(), progress=False)
    assert exactly_once(engine, run.id)["posteriors"] == 365  # 300 DR1 + 40 changed + 25 new
    with pytest.raises(ConfigError, match="later release"):
        extend_run(engine, run.id, "DR1")
    fresh = create_run(engine, "DR2")  # same bundle: DR2's versions all have posteriors
    assert fresh.enqueued == 0


def test_four_concurrent_workers_write_each_posterior_once(engine, tmp_path: Path) -> None:
    n = 2000
    ingest_synthetic(engine, tmp_path, n)
    run = create_run(engine, "DR1", config={"batch_size": 50}).run
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            process_run(engine, run.id, worker=f"w{i}", processor=FluxProcessor(), progress=False)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors
    assert exactly_once(engine, run.id) == {
        "posteriors": n, "objects": n, "items": n, "done": n, "done_without_posterior": 0,
    }  # fmt: skip
    with engine.connect() as conn:
        attempts = conn.execute(
            text("SELECT max(attempts) FROM lor.work_items WHERE run_id = :r"), {"r": run.id}
        ).scalar_one()
        workers = conn.execute(
            text("SELECT count(DISTINCT worker_host) FROM lor.posteriors WHERE run_id = :r"),
            {"r": run.id},
        ).scalar_one()
    assert attempts == 1  # no item was ever claimed twice
    assert workers >= 2


def _claim_and_compute(engine, run_id: int, worker: str, lease_s: float):  # type: ignore[no-untyped-def]
    batch = claim_objects(engine, run_id, worker, 1000, lease_s)
    assert batch is not None
    return posterior_rows(batch, np.arange(len(batch)), FluxProcessor().process(batch))


def _complete(engine, run_id: int, worker: str, rows) -> int:  # type: ignore[no-untyped-def]
    with engine.begin() as conn:
        return queue.complete_batch(conn, run_id, worker, rows)


def test_expired_lease_is_requeued_and_completed_exactly_once(engine, tmp_path: Path) -> None:
    n = 60
    ingest_synthetic(engine, tmp_path, n)
    run = create_run(engine, "DR1").run
    stale = _claim_and_compute(engine, run.id, "A", lease_s=0.05)  # A stalls past its lease
    time.sleep(0.2)
    assert processing.requeue_expired(engine, run.id) == {run.id: n}
    assert processing.requeue_expired(engine, run.id) == {}
    fresh = _claim_and_compute(engine, run.id, "B", lease_s=60)  # B claims again
    assert _complete(engine, run.id, "A", stale) == 0  # A wakes up: writes nothing
    assert _complete(engine, run.id, "B", fresh) == n
    assert _complete(engine, run.id, "B", fresh) == 0  # a redelivered completion: nothing
    assert exactly_once(engine, run.id)["posteriors"] == n
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT DISTINCT attempts, last_error FROM lor.work_items WHERE run_id = :r"),
            {"r": run.id},
        ).all()
        hosts = conn.execute(text("SELECT DISTINCT worker_host FROM lor.posteriors")).scalars()
        assert list(hosts) == ["B"]
    assert len(rows) == 1 and rows[0].attempts == 2
    assert "lease expired while claimed by A" in rows[0].last_error

    # A late worker whose expired claim nobody took yet still completes its own work.
    _insert_versions(engine)
    run3 = create_run(engine, "DR1").run  # another bundle, so objects are queued again
    late = _claim_and_compute(engine, run3.id, "C", lease_s=0.05)
    time.sleep(0.1)
    assert _complete(engine, run3.id, "C", late) == n
    assert processing.requeue_expired(engine, run3.id) == {}


def test_completion_skips_posteriors_that_exist_already(engine, tmp_path: Path) -> None:
    """Posteriors go in by COPY; one that exists already (an item set back to claimed by
    hand) makes the COPY fail, and the batch then goes through ON CONFLICT DO NOTHING."""
    n = 40
    ingest_synthetic(engine, tmp_path, n)
    run = create_run(engine, "DR1").run
    rows = _claim_and_compute(engine, run.id, "A", lease_s=600)
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE lor.work_items SET state = 'done' WHERE run_id = :r AND object_id = :o"),
            {"r": run.id, "o": rows.object_id[0]},
        )
    assert _complete(engine, run.id, "A", rows) == n - 1  # the one done item is not ours
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE lor.work_items SET state = 'claimed' WHERE run_id = :r"), {"r": run.id}
        )
    assert _complete(engine, run.id, "A", rows) == 1  # only the missing one is written
    assert exactly_once(engine, run.id) == {
        "posteriors": n, "objects": n, "items": n, "done": n, "done_without_posterior": 0,
    }  # fmt: skip


def test_dropped_connection_is_retried(engine, tmp_path: Path, database_url: str) -> None:
    """The worker's backend is terminated mid-claim and mid-completion; the run still ends."""
    n = 200
    ingest_synthetic(engine, tmp_path, n)
    run = create_run(engine, "DR1", config={"batch_size": 50}).run
    killer = create_engine(database_url, isolation_level="AUTOCOMMIT")
    killed: list[str] = []

    @event.listens_for(engine, "before_cursor_execute")
    def terminate(conn, cursor, statement, params, context, executemany):  # type: ignore[no-untyped-def]
        # The claim and the posteriors travel by COPY on the driver's cursor, which fires no
        # event: the claim's transaction is cut at its first statement, the completion's
        # at the savepoint before its COPY (after the items were marked done).
        for marker in ("SELECT kind = 'reprocess'", "SAVEPOINT"):
            if marker in statement and marker not in killed:
                killed.append(marker)
                with killer.connect() as side:
                    side.execute(
                        text("SELECT pg_terminate_backend(:pid, 5000)"),
                        {"pid": conn.connection.dbapi_connection.info.backend_pid},
                    )

    try:
        counts = process_run(engine, run.id, processor=FluxProcessor(), progress=False)
    finally:
        event.remove(engine, "before_cursor_execute", terminate)
        killer.dispose()
    assert len(killed) == 2 and counts.done == n
    assert exactly_once(engine, run.id) == {
        "posteriors": n, "objects": n, "items": n, "done": n, "done_without_posterior": 0,
    }  # fmt: skip


def test_nan_fluxes_are_flagged_and_never_stall_a_batch(engine, tmp_path: Path) -> None:
    n = 40
    table = ingest_synthetic(engine, tmp_path, n)
    ids = table["objectId"].to_numpy()
    with engine.begin() as conn:  # object 0: no usable flux at all; object 1: z band missing
        conn.execute(
            text(
                "UPDATE lor.objects SET flux = array_fill('NaN'::real, ARRAY[6]) WHERE catalog_id = :c"
            ),
            {"c": int(ids[0])},
        )
        conn.execute(
            text("UPDATE lor.objects SET flux[5] = 'NaN', missing_mask = 16 WHERE catalog_id = :c"),
            {"c": int(ids[1])},
        )
    run = create_run(engine, "DR1", config={"batch_size": 16}).run
    counts = process_run(engine, run.id, processor=FluxProcessor(), progress=False)
    assert (counts.done, counts.failed, counts.retried) == (n, 0, 0)
    with engine.connect() as conn:
        rows = {
            r.catalog_id: r
            for r in conn.execute(
                text(
                    """SELECT o.catalog_id, p.params, p.method, p.ood_flags, p.z_q50
                       FROM lor.posteriors p JOIN lor.objects o USING (tract_id, object_id)"""
                )
            )
        }
    none, partial, fine = rows[int(ids[0])], rows[int(ids[1])], rows[int(ids[2])]
    assert (none.params, none.method, none.ood_flags, none.z_q50) == (
        None,
        "none",
        FLAG_MISSING,
        None,
    )
    assert partial.method == "amortized" and partial.ood_flags == FLAG_MISSING
    assert partial.params[2] == 5  # five finite bands
    assert fine.ood_flags == 0 and len(rows) == n


def test_raising_object_fails_after_max_attempts_others_done(engine, tmp_path: Path) -> None:
    n = 100
    table = ingest_synthetic(engine, tmp_path, n)
    run = create_run(engine, "DR1", config={"batch_size": 25, "max_attempts": 3}).run
    with engine.connect() as conn:
        poison = conn.execute(
            text("SELECT object_id FROM lor.objects WHERE catalog_id = :c"),
            {"c": int(table["objectId"][17].as_py())},
        ).scalar_one()
    processor = FluxProcessor(poison=[poison])
    counts = process_run(engine, run.id, processor=processor, progress=False)
    assert (counts.done, counts.failed, counts.retried) == (n - 1, 1, 2)
    status = run_status(engine, run.id)
    assert status.counts == {"pending": 0, "claimed": 0, "done": n - 1, "failed": 1}
    assert status.run.status == "complete"
    with engine.connect() as conn:
        item = conn.execute(
            text("SELECT state, attempts, last_error FROM lor.work_items WHERE object_id = :o"),
            {"o": poison},
        ).one()
    assert item.state == "failed" and item.attempts == 3
    assert item.last_error == f"ValueError: cannot process object {poison}"
    assert exactly_once(engine, run.id)["posteriors"] == n - 1
    assert processor.calls < 40  # bisection isolates the bad object: no per-object retries


def test_worker_that_keeps_dying_fails_its_item(engine, tmp_path: Path) -> None:
    """An item whose lease expires max_attempts times (its worker keeps crashing) fails."""
    ingest_synthetic(engine, tmp_path, 5)
    run = create_run(engine, "DR1", config={"max_attempts": 2}).run
    for attempt in (1, 2):
        assert claim_objects(engine, run.id, f"crash{attempt}", 10, lease_s=0.01) is not None
        time.sleep(0.05)
        processing.requeue_expired(engine)
    counts = run_status(engine, run.id).counts
    assert counts == {"pending": 0, "claimed": 0, "done": 0, "failed": 5}
    with engine.connect() as conn:
        errors = set(conn.execute(text("SELECT last_error FROM lor.work_items")).scalars())
    assert errors == {"lease expired while claimed by crash2 (attempt 2 of 2)"}


def test_processor_output_is_checked(engine, tmp_path: Path) -> None:
    ingest_synthetic(engine, tmp_path, 8)
    run = create_run(engine, "DR1", config={"max_attempts": 1}).run

    class Broken(FluxProcessor):
        def process(self, batch):  # type: ignore[no-untyped-def]
            good = super().process(batch)
            return processing.PosteriorBatch(
                good.params, {"z_median": good.summaries["z_q50"]}, good.ood_flags,
                good.method, good.representation_name, good.representation_version,
            )  # fmt: skip

    counts = process_run(engine, run.id, processor=Broken(), progress=False)
    assert counts.failed == 8
    with engine.connect() as conn:
        error = conn.execute(text("SELECT DISTINCT last_error FROM lor.work_items")).scalar_one()
    assert error == "ProcessorOutputError: unknown summaries ['z_median']"


def test_interrupted_worker_hands_its_claims_back(engine, tmp_path: Path) -> None:
    """Ctrl-C mid-batch: the claims go back to pending at once, the attempt not counted."""
    ingest_synthetic(engine, tmp_path, 30)
    run = create_run(engine, "DR1", config={"batch_size": 10}).run

    class Interrupted(FluxProcessor):
        def process(self, batch):  # type: ignore[no-untyped-def]
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        process_run(engine, run.id, processor=Interrupted(), progress=False)
    with engine.connect() as conn:
        states = conn.execute(
            text("SELECT state, attempts, count(*) FROM lor.work_items GROUP BY 1, 2")
        ).all()
    assert [tuple(s) for s in states] == [("pending", 0, 30)]
    assert process_run(engine, run.id, processor=FluxProcessor(), progress=False).done == 30
