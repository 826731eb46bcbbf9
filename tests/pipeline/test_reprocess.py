"""Reprocess runs: which objects a new prior or calibration affects, and updating them once.

A deterministic processor stands in for the reweighting (:class:`ShiftProcessor`); one test
runs the real reweighting processor on a few objects of the shipped example catalog.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from sqlalchemy import Connection, Engine, text

from lor.cli.main import cli
from lor.db import run_store as store
from lor.db.calibration_store import create_calibration_version
from lor.db.queue_store import posterior_ids
from lor.db.run_store import Run
from lor.errors import ConfigError, NotFoundError
from lor.loop.reprocess import affected_tracts, create_reprocess_run
from lor.runs import processing
from lor.runs.lifecycle import create_run, run_status
from lor.runs.processing import (
    ObjectBatch,
    PosteriorBatch,
    Processors,
    claim_objects,
    clear_processor_cache,
    load_processor,
    process_run,
)
from tests.workers.processors import FluxProcessor
from tests.workers.support import exactly_once, ingest_synthetic

N_OBJECTS = 200
ZP, SCALE = 0.05, 1.2  # a non-identity calibration term


class ShiftProcessor:
    """Stands in for reweighting: the parent's params plus one, method 'reweighted'."""

    def process(self, batch: ObjectBatch) -> PosteriorBatch:
        assert batch.parent_params is not None and batch.parent_posterior_id is not None
        params = batch.parent_params + 1.0
        return PosteriorBatch(
            params=params,
            summaries={"z_q50": params[:, 0] / 1000.0},
            ood_flags=np.zeros(len(batch), np.int32),
            method=np.full(len(batch), "reweighted"),
            representation_name="test-flux",
            representation_version="1",
        )


def shift_processor(conn: Connection, run: Run) -> ShiftProcessor:
    """Processor factory injected into ``lor reprocess`` (CLI test)."""
    assert run.kind == "reprocess"
    return ShiftProcessor()


def _tracts_by_size(engine: Engine) -> list[int]:
    with engine.connect() as conn:
        return list(
            conn.execute(
                text("SELECT tract_id FROM lor.objects GROUP BY 1 ORDER BY count(*) DESC, 1")
            ).scalars()
        )


def _versions(engine: Engine, a: int, b: int, c: int) -> dict[str, int]:
    """Priors p1, p2 and calibrations: c1 (term in A, identity in B), c2 (= c1 plus a term in
    C), c3 (c1 without A's term)."""
    term = (ZP, None, SCALE, None)
    identity = (0.0, None, 1.0, None)
    calibrations = {
        "c1": {a: {"g": term}, b: {"r": identity}},
        "c2": {a: {"g": term}, b: {"r": identity}, c: {"i": term}},
        "c3": {b: {"r": identity}},
    }
    ids = {}
    with engine.begin() as conn:
        for name in ("p1", "p2"):
            ids[name] = conn.execute(
                text(
                    """INSERT INTO lor.prior_versions (name, family, family_version,
                           hyperparameters, selection, method, provenance)
                       VALUES (:n, 'test', '1', '{}', '{}', 'manual', '{}') RETURNING id"""
                ),
                {"n": name},
            ).scalar_one()
        for name, terms in calibrations.items():
            ids[name] = create_calibration_version(conn, name, terms, "manual", {})
    return ids


@pytest.fixture()
def parent(engine: Engine, tmp_path: Path) -> dict[str, Any]:
    """A processed run (prior p1, calibration c1) over 200 synthetic objects; one object has
    no usable flux, so its posterior has no params."""
    table = ingest_synthetic(engine, tmp_path, N_OBJECTS)
    with engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE lor.objects SET flux = array_fill('NaN'::real, ARRAY[6]) WHERE catalog_id = :c"
            ),
            {"c": int(table["objectId"][0].as_py())},
        )
    a, b, c = _tracts_by_size(engine)[:3]
    ids = _versions(engine, a, b, c)
    run = create_run(engine, "DR1", name="parent", prior=ids["p1"], calibration=ids["c1"]).run
    process_run(engine, run.id, processor=FluxProcessor(), progress=False)
    return {"run": store_run(engine, run.id), "ids": ids, "a": a, "b": b, "c": c}


def store_run(engine: Engine, ref: int | str) -> Run:
    with engine.connect() as conn:
        return store.get_run(conn, ref)


def _rows(engine: Engine, run_id: int) -> list[Any]:
    with engine.connect() as conn:
        return conn.execute(
            text("SELECT * FROM lor.posteriors WHERE run_id = :r ORDER BY posterior_id"),
            {"r": run_id},
        ).all()


def _objects_in(engine: Engine, tracts: list[int]) -> int:
    with engine.connect() as conn:
        return conn.execute(
            text("SELECT count(*) FROM lor.objects WHERE tract_id = ANY(:t)"), {"t": tracts}
        ).scalar_one()


def test_affected_tracts(engine: Engine, parent: dict[str, Any]) -> None:
    run, ids = parent["run"], parent["ids"]
    with engine.connect() as conn:
        everywhere = store.posterior_tracts(conn, run.id)
        assert len(everywhere) > 3 and everywhere == sorted(everywhere)
        assert affected_tracts(conn, run, ids["p2"], ids["c1"]) == everywhere  # new prior
        assert affected_tracts(conn, run.id, ids["p2"], ids["c2"]) == everywhere
        # Only C gets a term; B's explicit identity term is no change.
        assert affected_tracts(conn, run, ids["p1"], ids["c2"]) == [parent["c"]]
        assert affected_tracts(conn, run, ids["p1"], ids["c3"]) == [parent["a"]]  # term dropped
        uncalibrated = dataclasses.replace(run, calibration_version_id=None)
        assert affected_tracts(conn, uncalibrated, ids["p1"], ids["c1"]) == [parent["a"]]
        assert affected_tracts(conn, run, ids["p1"], ids["c1"]) == []  # nothing changed
    with pytest.raises(ConfigError, match="nothing to reprocess"):
        create_reprocess_run(engine, run.id)
    with pytest.raises(ConfigError, match="nothing to reprocess"):
        create_reprocess_run(engine, "parent", prior_version="p1", calibration_version="c1")
    with pytest.raises(NotFoundError, match="no calibration version with id or name 'c9'"):
        create_reprocess_run(engine, run.id, calibration_version="c9")


def test_new_calibration_updates_only_its_tracts_once(
    engine: Engine, parent: dict[str, Any]
) -> None:
    run, ids, c = parent["run"], parent["ids"], parent["c"]
    before = _rows(engine, run.id)
    queued = create_reprocess_run(engine, "parent", calibration_version="c2", name="recal")
    new = queued.run
    assert queued.enqueued == _objects_in(engine, [c]) > 0
    assert (new.kind, new.parent_run_id, new.status, new.name) == (
        "reprocess",
        run.id,
        "open",
        "recal",
    )
    assert new.bundle == (run.emulator_version_id, run.estimator_version_id, ids["p1"], ids["c2"])
    assert new.release_id == run.release_id and new.config["batch_size"] == 1000
    assert new.config["reprocess"] == {
        "parent_run_id": run.id, "reasons": ["calibration"], "affected_tracts": [c],
        "prior": {"from": ids["p1"], "to": ids["p1"]},
        "calibration": {"from": ids["c1"], "to": ids["c2"]},
    }  # fmt: skip
    with engine.connect() as conn:
        items = conn.execute(
            text("SELECT object_id, parent_posterior_id FROM lor.work_items WHERE run_id = :r"),
            {"r": new.id},
        ).all()
    assert all(p == posterior_ids(run.id, [o])[0] for o, p in items)

    counts = process_run(engine, new.id, processor=ShiftProcessor(), progress=False)
    assert (counts.done, counts.failed) == (queued.enqueued, 0)
    assert run_status(engine, new.id).run.status == "complete"
    parents = {r.posterior_id: r for r in before}
    rows = _rows(engine, new.id)
    assert len(rows) == queued.enqueued
    for r in rows:
        mother = parents[r.parent_posterior_id]
        assert r.method == "reweighted" and r.tract_id == c and r.object_id == mother.object_id
        assert r.posterior_id == posterior_ids(new.id, [r.object_id])[0]
        np.testing.assert_allclose(r.params, np.asarray(mother.params) + 1.0)
    assert _rows(engine, run.id) == before  # the parent's rows are untouched
    with engine.connect() as conn:
        assert conn.execute(
            text("SELECT count(*) FROM lor.posteriors WHERE parent_posterior_id IS NOT NULL "
                 "AND run_id <> :r"), {"r": new.id},
        ).scalar_one() == 0  # fmt: skip

    again = process_run(engine, new.id, processor=ShiftProcessor(), progress=False)
    assert again.claimed == 0
    with engine.begin() as conn:
        assert store.enqueue_reprocess(conn, new.id, run.id, [c]) == 0
    assert exactly_once(engine, new.id) == {
        "posteriors": queued.enqueued, "objects": queued.enqueued, "items": queued.enqueued,
        "done": queued.enqueued, "done_without_posterior": 0,
    }  # fmt: skip
    with pytest.raises(ConfigError, match=f"run {new.id} already reprocesses run parent"):
        create_reprocess_run(engine, run.id, calibration_version=ids["c2"])


def test_new_prior_queues_every_posterior_with_params(
    engine: Engine, parent: dict[str, Any]
) -> None:
    run, ids = parent["run"], parent["ids"]
    queued = create_reprocess_run(
        engine, run.id, prior_version=ids["p2"], config={"prior_chunk_objects": 0}
    )  # work items, as a calibration change queues them
    assert queued.enqueued == N_OBJECTS - 1  # the object without a posterior is left out
    plan = queued.run.config["reprocess"]
    assert plan["reasons"] == ["prior"] and len(plan["affected_tracts"]) > 3
    assert queued.run.calibration_version_id == ids["c1"]

    batch = claim_objects(engine, queued.run.id, "w", 7, lease_s=60)
    assert batch is not None and batch.parent_params is not None
    assert batch.parent_params.shape == (7, 4) and batch.parent_params.dtype == np.float32
    by_id = {r.posterior_id: r for r in _rows(engine, run.id)}
    for pid, params in zip(batch.parent_posterior_id or [], batch.parent_params, strict=True):
        np.testing.assert_array_equal(params, np.asarray(by_id[pid].params, np.float32))
    part = batch.take(np.array([3, 1]))
    assert part.parent_posterior_id == [batch.parent_posterior_id[3], batch.parent_posterior_id[1]]
    np.testing.assert_array_equal(part.parent_params, batch.parent_params[[3, 1]])
    plain = dataclasses.replace(batch, parent_posterior_id=None, parent_params=None)
    assert plain.take(np.array([0])).parent_params is None


def test_reprocess_needs_a_finished_parent_and_gets_its_processor(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ingest_synthetic(engine, tmp_path, 20)
    ids = _versions(engine, *_tracts_by_size(engine)[:3])
    run = create_run(engine, "DR1", prior=ids["p1"]).run
    with pytest.raises(ConfigError, match="is open: finish processing it"):
        create_reprocess_run(engine, run.id, prior_version=ids["p2"])
    process_run(engine, run.id, processor=FluxProcessor(), progress=False)
    new = create_reprocess_run(engine, run.id, prior_version=ids["p2"]).run
    monkeypatch.setattr(
        processing, "REPROCESS_PROCESSOR", "tests.pipeline.test_reprocess:shift_processor"
    )
    with engine.connect() as conn:
        assert isinstance(load_processor(conn, new), ShiftProcessor)  # by kind, not estimator
        with pytest.raises(processing.NoProcessorError):
            load_processor(conn, run)


def test_reprocess_command(lor_env: str, engine: Engine, parent: dict[str, Any]) -> None:
    runner = CliRunner()
    n = _objects_in(engine, [parent["c"]])
    done = runner.invoke(
        cli, ["reprocess", "parent", "--calibration", "c2", "--batch-size", "3", "--no-progress"],
        obj=Processors(shift_processor),
    )  # fmt: skip
    assert done.exit_code == 0, done.output
    assert f"reprocessing run {parent['run'].id}" in done.output
    assert f"calibration changed; queued {n} objects in 1 affected tracts" in done.output
    assert f"processed {n}, failed 0; pending 0, claimed 0, done {n}, failed 0" in done.output
    nothing = runner.invoke(cli, ["reprocess", "parent"])
    assert nothing.exit_code == 2 and "nothing to reprocess" in nothing.output


def _example_subset(tmp_path: Path, n: int) -> Path:
    from lor.catalog.example import EXAMPLE_CATALOG

    path = tmp_path / "example_subset.parquet"
    pq.write_table(pq.read_table(EXAMPLE_CATALOG).slice(0, n), path)
    return path


def test_real_reweighting_of_a_few_example_objects(
    lor_env: str, engine: Engine, tmp_path: Path
) -> None:
    """Shipped models, interim prior -> a new mass function and a new calibration in one tract."""
    from lor.catalog.ingest import ingest_catalog
    from lor.db.model_store import register_prior_version
    from lor.inference.prior import INTERIM_HYPERPARAMETERS, PopulationPrior
    from lor.reporting.demo import register_shipped_models

    clear_processor_cache()
    ids = register_shipped_models(engine)
    ingested = ingest_catalog(engine, _example_subset(tmp_path, 24), "ex", progress=False)
    run = create_run(engine, "ex", name="amortized", prior=ids["prior"]).run
    assert process_run(engine, run.id, progress=False).done == ingested.rows_new > 20
    tract = _tracts_by_size(engine)[0]
    hyper = dict(INTERIM_HYPERPARAMETERS, mass_mean=10.2, z0=0.7)
    with engine.begin() as conn:
        prior = register_prior_version(
            conn, "steeper", PopulationPrior(hyperparameters=hyper).as_record(), "manual", {}
        )
        calibration = create_calibration_version(
            conn, "shifted", {tract: {"r": (0.05, None, 1.3, None)}}, "manual", {}
        )
    before = _rows(engine, run.id)
    queued = create_reprocess_run(engine, run.id, prior, calibration)
    with_params = sum(r.params is not None for r in before)
    assert queued.enqueued == with_params > 0
    counts = process_run(engine, queued.run.id, progress=False)
    assert (counts.done, counts.failed) == (with_params, 0)
    rows = _rows(engine, queued.run.id)
    parents = {r.posterior_id: r for r in before}
    assert {r.parent_posterior_id for r in rows} <= set(parents)
    assert {r.method for r in rows} <= {"reweighted", "amortized", "mcmc"}
    assert sum(r.method == "reweighted" for r in rows) >= len(rows) // 2
    for r in rows:
        assert np.all(np.isfinite(r.params)) and r.z_q50 is not None
        assert len(r.params) == len(parents[r.parent_posterior_id].params)
    moved = [r.log_mstar_q50 - parents[r.parent_posterior_id].log_mstar_q50 for r in rows]
    assert np.median(moved) > 0  # a heavier mass function pulls masses up
    assert _rows(engine, run.id) == before
    clear_processor_cache()


class FastShift(ShiftProcessor):
    """A processor with the set-based prior path: params + 1 from the stored rows alone,
    except rows whose first parameter is a multiple of 5, left to :meth:`process` (which
    sees their photometry), as the cubature rule leaves a few objects."""

    def __init__(self, die_on_range: int | None = None) -> None:
        self.ranges, self.die_on_range = 0, die_on_range

    def reweight_prior(
        self, parent_params: np.ndarray, parent_ood_flags: np.ndarray
    ) -> tuple[PosteriorBatch, np.ndarray]:
        self.ranges += 1
        if self.ranges == self.die_on_range:
            raise KeyboardInterrupt  # the worker is killed while it computes this range
        redo = parent_params[:, 0] % 5 == 0
        params = np.where(redo[:, None], np.nan, parent_params + 1.0).astype(np.float32)
        return PosteriorBatch(
            params=params,
            summaries={"z_q50": params[:, 0] / 1000.0},
            ood_flags=parent_ood_flags & 3,
            method=np.where(redo, "none", "reweighted"),
            representation_name="test-flux",
            representation_version="1",
        ), redo

    def process(self, batch: ObjectBatch) -> PosteriorBatch:
        assert np.isfinite(batch.flux).any(axis=1).all()  # the photometry came along
        return super().process(batch)


def _ranges(engine: Engine, run_id: int) -> list[Any]:
    with engine.connect() as conn:
        return conn.execute(
            text("SELECT * FROM lor.prior_chunks WHERE run_id = :r ORDER BY tract_id, chunk"),
            {"r": run_id},
        ).all()


def test_prior_change_in_ranges_exactly_once_after_a_kill(
    engine: Engine, parent: dict[str, Any]
) -> None:
    run, ids = parent["run"], parent["ids"]
    queued = create_reprocess_run(
        engine, run.id, prior_version=ids["p2"], config={"prior_chunk_objects": 3}
    )
    new, n = queued.run, queued.enqueued
    assert n == N_OBJECTS - 1 and new.config["prior_chunk_objects"] == 3
    ranges = _ranges(engine, new.id)
    assert sum(r.objects for r in ranges) == n and max(r.objects for r in ranges) == 3
    assert all(r.first_object_id <= r.last_object_id and r.state == "pending" for r in ranges)
    assert exactly_once(engine, new.id)["items"] == 0  # no per-object work items
    assert run_status(engine, new.id).counts["pending"] == n

    with pytest.raises(KeyboardInterrupt):
        process_run(engine, new.id, processor=FastShift(die_on_range=3), progress=False)
    done = [r for r in _ranges(engine, new.id) if r.state == "done"]
    assert len(done) in (1, 2)  # the ranges stored before the kill; nothing of the third
    assert exactly_once(engine, new.id)["posteriors"] == sum(r.objects for r in done)

    counts = process_run(engine, new.id, processor=FastShift(), progress=False)
    assert (counts.done, counts.failed) == (n - sum(r.objects for r in done), 0)
    assert run_status(engine, new.id).run.status == "complete"
    assert run_status(engine, new.id).counts == {"pending": 0, "claimed": 0, "done": n, "failed": 0}
    once = exactly_once(engine, new.id)
    assert once["posteriors"] == once["objects"] == n
    parents = {r.posterior_id: r for r in _rows(engine, run.id)}
    rows = _rows(engine, new.id)
    for r in rows:
        mother = parents[r.parent_posterior_id]
        assert r.object_id == mother.object_id and r.tract_id == mother.tract_id
        assert r.posterior_id == posterior_ids(new.id, [r.object_id])[0]
        assert r.method == "reweighted" and r.input_hash == mother.input_hash
        np.testing.assert_allclose(r.params, np.asarray(mother.params) + 1.0)
    assert process_run(engine, new.id, processor=FastShift(), progress=False).claimed == 0


def test_prior_ranges_in_two_lanes(engine: Engine, parent: dict[str, Any]) -> None:
    queued = create_reprocess_run(
        engine, parent["run"].id, prior_version=parent["ids"]["p2"],
        config={"prior_chunk_objects": 4, "prior_lanes": 2},
    )  # fmt: skip
    counts = process_run(engine, queued.run.id, processor=FastShift(), progress=False)
    assert (counts.done, counts.failed) == (queued.enqueued, 0)
    once = exactly_once(engine, queued.run.id)
    assert once["posteriors"] == once["objects"] == queued.enqueued
    assert {r.state for r in _ranges(engine, queued.run.id)} == {"done"}


def test_a_failing_range_is_retried_then_failed(engine: Engine, parent: dict[str, Any]) -> None:
    class Broken(FastShift):
        def reweight_prior(self, *args: Any) -> tuple[PosteriorBatch, np.ndarray]:
            raise ValueError("no")

    queued = create_reprocess_run(
        engine, parent["run"].id, prior_version=parent["ids"]["p2"],
        config={"prior_chunk_objects": 100, "max_attempts": 2},
    )  # fmt: skip
    counts = process_run(engine, queued.run.id, processor=Broken(), progress=False)
    n = queued.enqueued  # each range tried twice in the same pass, as items are
    assert (counts.claimed, counts.retried, counts.failed, counts.done) == (2 * n, n, n, 0)
    ranges = _ranges(engine, queued.run.id)
    assert {(r.state, r.attempts, r.last_error) for r in ranges} == {
        ("failed", 2, "ValueError: no")
    }
    assert exactly_once(engine, queued.run.id)["posteriors"] == 0


def test_prior_ranges_store_what_work_items_store(
    lor_env: str, engine: Engine, tmp_path: Path
) -> None:
    """Shipped models: a prior change through ranges and through work items, same rows."""
    from lor.catalog.ingest import ingest_catalog
    from lor.db.model_store import register_prior_version
    from lor.inference.prior_registry import estimator_prior
    from lor.inference.registry import load_shipped_estimator
    from lor.reporting.demo import register_shipped_models

    clear_processor_cache()
    ids = register_shipped_models(engine)
    ingest_catalog(engine, _example_subset(tmp_path, 40), "ex", progress=False)
    run = create_run(engine, "ex", name="amortized", prior=ids["prior"]).run
    process_run(engine, run.id, progress=False)
    # a modest change of the shipped estimator's own prior family (the cubature's domain)
    interim = estimator_prior(load_shipped_estimator().spec)
    change = {"z0": 0.7, "av_scale": 0.4} if interim.family == "population" else {
        "smf_phi_evolution": -0.1, "smf_mstar_shift": 0.05}  # fmt: skip
    record = interim.with_hyperparameters(interim.hyperparameters | change).as_record()
    rows = {}
    for chunk in (7, 0):
        with engine.begin() as conn:
            prior = register_prior_version(conn, f"shifted-{chunk}", record, "manual", {})
        queued = create_reprocess_run(engine, run.id, prior, config={"prior_chunk_objects": chunk})
        counts = process_run(engine, queued.run.id, progress=False)
        assert counts.done == queued.enqueued > 30
        rows[chunk] = {r.object_id: r for r in _rows(engine, queued.run.id)}
    assert rows[7].keys() == rows[0].keys()
    for oid, r in rows[7].items():
        w = rows[0][oid]
        assert (r.method, r.ood_flags, r.parent_posterior_id) == (
            w.method, w.ood_flags, w.parent_posterior_id,
        )  # fmt: skip
        np.testing.assert_array_equal(r.params, w.params)
        assert (r.z_q50, r.log_mstar_q16, r.log_sfr_q84) == (
            w.z_q50,
            w.log_mstar_q16,
            w.log_sfr_q84,
        )
    clear_processor_cache()


def test_prior_ranges_one_per_task(engine: Engine, parent: dict[str, Any]) -> None:
    """The Celery path: one task per pending range (batches_needed), process_batch does one."""
    queued = create_reprocess_run(
        engine, parent["run"].id, prior_version=parent["ids"]["p2"],
        config={"prior_chunk_objects": 5},
    )  # fmt: skip
    ranges = len(_ranges(engine, queued.run.id))
    assert processing.batches_needed(engine, queued.run.id) == ranges > 1
    done = 0
    for left in range(ranges, 0, -1):
        counts = processing.process_batch(engine, queued.run.id, processor=FastShift())
        done += counts.done
        assert counts.claimed == counts.done > 0
        assert processing.batches_needed(engine, queued.run.id) == left - 1
    assert processing.process_batch(engine, queued.run.id, processor=FastShift()).claimed == 0
    assert done == queued.enqueued == exactly_once(engine, queued.run.id)["objects"]
    assert run_status(engine, queued.run.id).run.status == "complete"
