"""``lor bench pipeline``: processing rate in-process and on Celery workers; a SQL P(z) query.

Everything runs in a throwaway database on the configured server. A catalog is simulated
with the shipped emulator (interim prior -> fluxes -> LSST 10-year data model, i < 25.3),
written as a Rubin Object table and ingested; the shipped estimator and emulator are
registered. Three runs then process the same objects with the same models, side by side:

- in-process (:func:`lor.runs.processing.process_run`, no broker);
- real Celery workers (``celery -A workers.app worker``) with 1 and with 2 pool processes,
  on the configured Redis broker and a private queue, dispatched with ``lor.dispatch_run``
  and timed until the run is marked complete.

Each run pins its own copy of the interim prior (same content, another name), so the three
model bundles differ and each run queues every object. Rates are what a worker sustains once
its models are loaded (each process loads, verifies and compiles them once, reported as
``processor_load_s``); the ``_including_load`` / ``_wall`` figures count that too. Celery's
steady rate runs from its first stored batch to its last.

The SQL figure is a ``P(0.8 < z < 1.0) > 0.9`` query over ``sql_rows`` copies of the
computed posteriors in one tract (:mod:`lor.bench.sql_tract`).

``bytes_per_posterior`` is the size of ``lor.posteriors`` (heap with TOAST, and every index,
summed over its partitions) per row after the in-process and Celery runs, with its
projection to 3.7e10 objects per run (``projected_tb_per_run``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import Engine, text

from lor.bench.harness import MIN_REPEATS, bench_report, rate_figures, time_figures
from lor.bench.sql_tract import (
    P_MIN,
    SQL_TRACT,
    WIDE,
    Z1,
    Z2,
    fabricate_tract,
    sql_figures,
)
from lor.bench.storage import storage_figures
from lor.db.admin import temporary_database
from lor.db.engine import make_engine, resolve_database_url
from lor.db.migrate import upgrade
from lor.db.run_store import state_counts

RELEASE = "BENCH"
FIRST_TRACT = 9800
WORKER_START_S = 180.0

Echo = Callable[[str], None]
#: The folder holding the ``lor`` and ``workers`` packages (a checkout or site-packages):
#: the worker subprocesses run from it.
REPO_ROOT = Path(__file__).resolve().parents[2]


def write_simulated_catalog(path: Path, n: int, n_tracts: int, seed: int = 1) -> Path:
    """A simulated Rubin Object table (shipped emulator, 10-year depth) over ``n_tracts``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from lor.emulators.registry import load_shipped_emulator
    from lor.inference.prior_registry import estimator_prior
    from lor.inference.registry import load_shipped_estimator
    from lor.inference.simulate import simulate_catalog

    emulator = load_shipped_emulator()
    prior = estimator_prior(load_shipped_estimator().spec)
    cat = simulate_catalog(n, emulator, prior, seed=seed, years=10.0, error_scatter=0.05)
    rng = np.random.default_rng(seed)
    index = rng.integers(0, n_tracts, n)
    cols: dict[str, np.ndarray] = {
        "objectId": 1_800_000_000_000 + np.arange(n, dtype=np.int64) * 3,
        "coord_ra": 149.0 + (index % 5) * 1.5 + rng.uniform(0, 1.5, n),
        "coord_dec": 1.0 + (index // 5) * 1.5 + rng.uniform(0, 1.5, n),
        "tract": (FIRST_TRACT + index).astype(np.int64),
    }
    for b, band in enumerate(emulator.band_names):
        cols[f"{band}_cModelFlux"] = cat.flux[:, b]
        cols[f"{band}_cModelFluxErr"] = cat.flux_err[:, b]
    pq.write_table(pa.table(cols), path)
    return path


def bench_priors(engine: Engine, labels: tuple[str, ...]) -> dict[str, int]:
    """One copy of the interim prior per run, so each run's model bundle is its own."""
    from lor.db.model_store import register_prior_version
    from lor.inference.prior_registry import estimator_prior
    from lor.inference.registry import load_shipped_estimator
    from lor.reporting.demo import INTERIM_PRIOR_NAME

    record = estimator_prior(load_shipped_estimator().spec).as_record()
    with engine.begin() as conn:
        return {
            label: register_prior_version(
                conn,
                f"{INTERIM_PRIOR_NAME}-bench-{label}",
                record,
                "interim",
                {"source": "lor.bench.pipeline", "copy_of": INTERIM_PRIOR_NAME},
            )  # fmt: skip
            for label in labels
        }


def create_bench_run(
    engine: Engine, name: str, models: dict[str, int], prior: int, batch: int
) -> int:
    from lor.runs.lifecycle import create_run

    queued = create_run(
        engine, RELEASE, name, emulator=models["emulator"], estimator=models["estimator"],
        prior=prior, config={"batch_size": batch},
    )  # fmt: skip
    return queued.run.id


def _run_status(engine: Engine, run_id: int) -> str:
    with engine.connect() as conn:
        return conn.execute(
            text("SELECT status FROM lor.processing_runs WHERE id = :r"), {"r": run_id}
        ).scalar_one()


def _done(engine: Engine, run_id: int) -> dict[str, int]:
    with engine.connect() as conn:
        return state_counts(conn, run_id)


class CeleryWorker:
    """One ``celery -A workers.app worker`` subprocess on a private queue of a throwaway run."""

    def __init__(self, url: str, broker: str, queue: str, concurrency: int, log: Path) -> None:
        env = dict(os.environ)
        env.update(
            LOR_DATABASE_URL=url, LOR_BROKER_URL=broker, LOR_QUEUE=queue,
            PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")])),
            TF_CPP_MIN_LOG_LEVEL="2",
        )  # fmt: skip
        argv = [
            sys.executable, "-m", "celery", "-A", "workers.app", "worker", "--pool=prefork",
            f"--concurrency={concurrency}", "--loglevel=INFO",
            f"--hostname=lor-bench-{concurrency}-{uuid.uuid4().hex[:6]}@%h",
            "--without-gossip", "--without-mingle", "--without-heartbeat",
        ]  # fmt: skip
        self.log = log
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(
                argv, cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + WORKER_START_S
        while b" ready." not in log.read_bytes():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"celery worker did not start:\n{self.tail()}")
            time.sleep(0.2)

    def tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:]

    def stop(self) -> None:
        """SIGTERM the worker's process group (warm shutdown), SIGKILL if it lingers."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


def _celery_rate(
    engine: Engine, url: str, run_id: int, n: int, concurrency: int, workdir: Path, echo: Echo
) -> tuple[float, float]:
    """Objects per second of a run on one worker with ``concurrency`` pool processes:
    (steady, wall clock from dispatch including model loading)."""
    from celery import Celery

    from lor.config import get_settings

    broker = get_settings().broker_url
    queue = f"lor-bench-{uuid.uuid4().hex[:10]}"
    client = Celery("lor-bench", broker=broker)
    worker = CeleryWorker(url, broker, queue, concurrency, workdir / f"celery-{concurrency}.log")
    try:
        t0 = time.perf_counter()
        client.send_task("lor.dispatch_run", args=(run_id, None), queue=queue)
        deadline = time.monotonic() + max(600.0, n / 20.0)
        while _run_status(engine, run_id) != "complete":
            if worker.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"run {run_id} did not complete on Celery:\n{worker.tail()}")
            time.sleep(0.1)
        elapsed = time.perf_counter() - t0
    finally:
        worker.stop()
        with contextlib.suppress(Exception), client.connection_for_write() as conn:
            conn.default_channel.queue_delete(queue)
            conn.default_channel.exchange_delete(queue)
        client.close()
    counts = _done(engine, run_id)
    steady = _steady_rate(engine, run_id)
    echo(f"celery x{concurrency}: {counts} in {elapsed:.1f} s ({n / elapsed:.0f} objects/s "
         f"with startup, {steady:.0f}/s steady)")  # fmt: skip
    return steady, n / elapsed


def _steady_rate(engine: Engine, run_id: int) -> float:
    """Objects per second between the first and the last stored batch of a run: what the
    workers sustain once their models are loaded (each worker process loads them once)."""
    with engine.connect() as conn:
        first, last, total, first_batch = conn.execute(
            text(
                """SELECT min(created_at), max(created_at), count(*),
                          count(*) FILTER (WHERE created_at = (SELECT min(created_at)
                              FROM lor.posteriors WHERE run_id = :r))
                   FROM lor.posteriors WHERE run_id = :r"""
            ),
            {"r": run_id},
        ).one()
    span = (last - first).total_seconds()
    return (total - first_batch) / span if span > 0 else float("nan")


def run_pipeline_benchmark(
    objects: int = 100_000,
    tracts: int = 20,
    sql_rows: int = 1_000_000,
    batch_size: int = 2000,
    repeats: int = MIN_REPEATS,
    celery: bool = True,
    echo: Echo = print,
) -> dict[str, Any]:
    """Run the benchmark (see the module docstring); returns the figures.

    Each rate is the median of ``repeats`` runs over the same objects (each its own run and
    prior copy), with min and max (:mod:`lor.bench.harness`). ``celery=False`` skips the
    Celery runs.
    """
    from lor.catalog.ingest import ingest_catalog
    from lor.reporting.demo import register_shipped_models
    from lor.runs.processing import (
        clear_processor_cache,
        limit_compute_threads,
        process_run,
        run_processor,
    )

    limit_compute_threads()
    server = resolve_database_url()
    with (
        bench_report("pipeline", repeats) as out,
        tempfile.TemporaryDirectory() as tmp,
        temporary_database(server, "lor_bench") as url,
    ):
        engine = make_engine(url)
        upgrade(engine)
        t0 = time.perf_counter()
        path = write_simulated_catalog(Path(tmp) / "objects.parquet", objects, tracts)
        out["simulate_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        ingest = ingest_catalog(engine, path, RELEASE, progress=False)
        out["ingest_s"] = time.perf_counter() - t0
        n = ingest.rows_new
        echo(f"simulated and ingested {n} objects in {tracts} tracts ({out['ingest_s']:.1f} s)")
        models = register_shipped_models(engine)
        labels = [f"{kind}_{i}" for kind in ("in_process", "celery_1", "celery_2")
                  for i in range(repeats)]  # fmt: skip
        priors = bench_priors(engine, tuple(labels))

        loads, steady, run_ids = [], [], []
        for i in range(repeats):
            run_id = create_bench_run(
                engine, f"bench-in-process-{i}", models, priors[f"in_process_{i}"], batch_size
            )
            t0 = time.perf_counter()
            run_processor(engine, run_id)  # load, verify and warm up the models (per process)
            loads.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            counts = process_run(engine, run_id, progress=False)
            steady.append(time.perf_counter() - t0)
            clear_processor_cache()
            run_ids.append(run_id)
            echo(f"in-process: {counts.as_dict()} in {steady[-1]:.1f} s")
            if counts.done != n:
                raise RuntimeError(f"in-process run stored {counts.done} of {n} posteriors")
        out |= rate_figures("objects_per_s", n, steady)
        out |= time_figures("processor_load_s", loads)
        out |= rate_figures(
            "objects_per_s_including_load", n, [a + b for a, b in zip(steady, loads, strict=True)]
        )
        out |= storage_figures(engine)

        for c in (1, 2) if celery else ():
            rates, walls = [], []
            for i in range(repeats):
                celery_run = create_bench_run(engine, f"bench-celery-{c}-{i}", models, priors[f"celery_{c}_{i}"], batch_size)  # fmt: skip
                rate, wall = _celery_rate(engine, url, celery_run, n, c, Path(tmp), echo)
                rates.append(rate)
                walls.append(wall)
                if _done(engine, celery_run)["done"] != n:
                    raise RuntimeError(f"celery run {celery_run} did not store all {n} posteriors")
            out |= _median_figures(f"objects_per_s_celery_{c}", rates)
            out |= _median_figures(f"objects_per_s_celery_{c}_wall", walls)
        if celery:
            out["celery_2_over_1"] = out["objects_per_s_celery_2"] / out["objects_per_s_celery_1"]
            out["celery_1_over_in_process"] = out["objects_per_s_celery_1"] / out["objects_per_s"]

        sql_run, out["fabricate_s"] = fabricate_tract(engine, run_ids[0], sql_rows)
        echo(f"copied {sql_rows} posteriors into tract {SQL_TRACT} ({out['fabricate_s']:.1f} s)")
        out.update(sql_figures(engine, sql_run, sql_rows))
        engine.dispose()
        out.update(
            objects=n, tracts=tracts, batch_size=batch_size,
            server="embedded pgserver" if "host=/" in server else "LOR_DATABASE_URL",
        )  # fmt: skip
        out["data"] = (
            f"{n} objects simulated with the shipped emulator (interim prior, LSST 10-year "
            f"depth, i < 25.3) in {tracts} tracts, Rubin Object-table Parquet; shipped npe_mlp "
            f"estimator, gmm_flow posteriors; batches of {batch_size}; Celery on the configured "
            f"Redis broker. Storage over every posterior of the in-process and Celery runs. "
            f"SQL: {sql_rows} copies of those posteriors in one tract, P({Z1} < z < {Z2}) > "
            f"{P_MIN} (wide: P({WIDE[0]} < z < {WIDE[1]}) > {WIDE[2]})"
        )
    return out


def _median_figures(key: str, values: list[float]) -> dict[str, Any]:
    """Median, min, max and every repeat of per-run figures (rates measured inside a run)."""
    return {
        key: statistics.median(values),
        f"{key}_min": min(values),
        f"{key}_max": max(values),
        f"{key}_repeats": values,
    }
