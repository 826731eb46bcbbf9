"""``lor run create|extend|dispatch``, ``lor process``, ``lor reprocess``, ``lor worker``,
``lor status``, ``lor export`` and ``lor bench pipeline``.

Commands parse arguments and format results; the logic is in :mod:`lor.runs.lifecycle`,
:mod:`lor.loop.reprocess`, :mod:`lor.runs.processing`, :mod:`lor.reporting.export` and
:mod:`lor.bench.pipeline`.
Registered on the main group in :mod:`lor.cli.main` (:func:`register` adds the last two).
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import TYPE_CHECKING

import click
from sqlalchemy import Engine

if TYPE_CHECKING:
    from lor.db.run_store import Run


def _processors():  # type: ignore[no-untyped-def]
    """The processors given as the command line's context object (``cli(obj=Processors(f))``,
    how tests inject a processor factory); None: the registry's."""
    from lor.runs.processing import Processors

    return click.get_current_context().find_object(Processors)


def _engine() -> Engine:
    """The configured database, refusing a stale schema."""
    from lor.db.engine import make_engine
    from lor.db.migrate import check_schema

    engine = make_engine()
    check_schema(engine)
    return engine


MCMC_FALLBACK_HELP = (
    "Redo the objects the estimator flags by MCMC (emulator likelihood x prior): slower, "
    "stored with method 'mcmc' and the FALLBACK flag."
)


def _run_line(run: Run) -> str:
    versions = ", ".join(
        f"{kind} {getattr(run, f'{kind}_version_id') or '-'}"
        for kind in ("emulator", "estimator", "prior", "calibration")
    )
    parent = f" reprocessing run {run.parent_run_id}" if run.parent_run_id is not None else ""
    return f"run {run.id} ({run.name}){parent} release {run.release_name} [{versions}] {run.status}"


@click.group("run")
def run_group() -> None:
    """Processing runs: pin model versions and queue the objects of a release."""


@run_group.command("create")
@click.option("--release", required=True, help="Objects current as of this release.")
@click.option("--name", default=None, help="Run name (default run-<id>).")
@click.option("--emulator", type=int, default=None, help="Emulator version id (default latest).")
@click.option("--estimator", type=int, default=None, help="Estimator version id (default latest).")
@click.option("--prior", type=int, default=None, help="Prior version id (default latest).")
@click.option(
    "--calibration", type=int, default=None, help="Calibration version id (default latest)."
)
@click.option("--batch-size", type=int, default=None, help="Objects per claimed batch.")
@click.option("--lease", "lease_s", type=float, default=None, help="Claim lease in seconds.")
@click.option("--max-attempts", type=int, default=None, help="Tries before an item fails.")
@click.option("--mcmc-fallback", is_flag=True, default=None, help=MCMC_FALLBACK_HELP)
def run_create(release: str, name: str | None, emulator: int | None, estimator: int | None,
               prior: int | None, calibration: int | None, batch_size: int | None,
               lease_s: float | None, max_attempts: int | None,
               mcmc_fallback: bool | None) -> None:  # fmt: skip
    """Create a run over RELEASE and queue the objects its model bundle has not covered."""
    from lor.runs.lifecycle import create_run

    given = {"batch_size": batch_size, "lease_s": lease_s, "max_attempts": max_attempts,
             "mcmc_fallback": mcmc_fallback}  # fmt: skip
    queued = create_run(
        _engine(), release, name, emulator, estimator, prior, calibration,
        {k: v for k, v in given.items() if v is not None},
    )  # fmt: skip
    click.echo(f"{_run_line(queued.run)}: queued {queued.enqueued} objects")


@run_group.command("extend")
@click.argument("run")
@click.option("--release", required=True, help="A later release.")
def run_extend(run: str, release: str) -> None:
    """Move RUN (id or name) to a later release, queueing only its new and changed objects."""
    from lor.runs.lifecycle import extend_run

    queued = extend_run(_engine(), run, release)
    click.echo(f"{_run_line(queued.run)}: queued {queued.enqueued} new or changed objects")


@run_group.command("dispatch")
@click.argument("run")
@click.option("--batch-size", type=int, default=None, help="Objects per batch message.")
def run_dispatch(run: str, batch_size: int | None) -> None:
    """Hand RUN to the Celery workers (sends one dispatch message; safe to repeat)."""
    from lor.runs.lifecycle import get_run

    found = get_run(_engine(), run)
    click.echo(f"{_run_line(found)}: {_dispatch(found.id, batch_size)}")


def _dispatch(run_id: int, batch_size: int | None) -> str:
    """Send one dispatch message for a run to the Celery workers; says where it went."""
    from workers.app import app

    app.send_task("lor.dispatch_run", args=(run_id, batch_size))
    return f"dispatch sent to {app.conf.broker_url.split('@')[-1]}"


@click.command("process")
@click.argument("run")
@click.option("--batch-size", type=int, default=None, help="Objects per batch (default: run's).")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
def process_command(run: str, batch_size: int | None, no_progress: bool) -> None:
    """Process RUN in this process until no work is pending (no broker needed).

    The processor comes from the run's registered estimator (reprocess runs: reweighting).
    """
    from lor.runs.lifecycle import get_run, run_status
    from lor.runs.processing import limit_compute_threads, process_run

    limit_compute_threads()
    engine = _engine()
    found = get_run(engine, run)
    counts = process_run(
        engine, found.id, size=batch_size, progress=not no_progress,
        echo=lambda line: click.echo(line, err=True), processors=_processors(),
    )  # fmt: skip
    status = run_status(engine, found.id)
    click.echo(
        f"{_run_line(status.run)}: processed {counts.done}, failed {counts.failed}; "
        + _counts_text(status.counts)
    )


@click.command("calibrate")
@click.argument("run")
@click.option(
    "--free",
    default="",
    help="Comma-separated prior hyperparameters to fit, e.g. smf_phi_evolution; 'nz' and 'mf' "
    "fit a flexible redshift distribution and mass-function shape (knots on the "
    "published-relations prior).",
)
@click.option(
    "--zeropoints",
    is_flag=True,
    help="Also fit each tract's zeropoint offsets and noise scalings (under the fitted prior).",
)
@click.option(
    "--reference-band",
    default=None,
    help="Band whose offset stays as calibrated by stars (default: selection band).",
)
@click.option("--name", default=None, help="Name of the new prior / calibration version.")
@click.option("--tract", "tracts", type=int, multiple=True, help="Only these tracts (repeat).")
@click.option("--samples", type=int, default=64, show_default=True, help="Draws per posterior.")
@click.option(
    "--density-objects",
    type=int,
    default=200_000,
    show_default=True,
    help="Simulated objects behind the population density (zeropoints).",
)
@click.option(
    "--density-components",
    type=int,
    default=96,
    show_default=True,
    help="Gaussian components of the population density (zeropoints).",
)
@click.option(
    "--min-objects",
    type=int,
    default=500,
    show_default=True,
    help="Tracts with fewer usable objects keep their calibration (zeropoints).",
)
def calibrate_command(run: str, free: str, zeropoints: bool, reference_band: str | None,
                      name: str | None, tracts: tuple[int, ...], samples: int,
                      density_objects: int, density_components: int,
                      min_objects: int) -> None:  # fmt: skip
    """Fit RUN's prior hyperparameters and/or tract calibration; store new versions.

    Hyperparameters (--free) come from the stored posteriors; zeropoint offsets and noise
    scalings (--zeropoints) from the objects' photometry under the fitted prior. Prints the
    fits as JSON; follow with `lor reprocess RUN --prior ID --calibration ID`.
    """
    from lor.loop.calibration import calibrate
    from lor.runs.processing import limit_compute_threads

    names = [h.strip() for h in free.split(",") if h.strip()]
    if not names and not zeropoints:
        raise click.UsageError("nothing to fit: give --free HYPERPARAMETERS and/or --zeropoints")
    limit_compute_threads()
    result = calibrate(
        _engine(), run, names, zeropoints, name, list(tracts) or None, samples, reference_band,
        density_objects, density_components, min_objects,
    )  # fmt: skip
    if result.at_bound:
        click.echo(
            f"warning: fitted on a search bound (the model cannot describe these, or they "
            f"absorb misfit; recorded on the stored versions): {', '.join(result.at_bound)}",
            err=True,
        )
    click.echo(json.dumps(result.as_dict(), default=float))


@click.command("reprocess")
@click.argument("parent_run")
@click.option("--prior", default=None, help="New prior version, id or name (default: parent's).")
@click.option(
    "--calibration", default=None, help="New calibration version, id or name (default: parent's)."
)
@click.option("--name", default=None, help="Run name (default run-<id>).")
@click.option("--batch-size", type=int, default=None, help="Objects per claimed batch.")
@click.option(
    "--marginalize",
    type=int,
    default=0,
    help="Average the new prior over this many draws of its fitted hyperparameters "
    "(their uncertainty from `lor calibrate`) instead of fixing them at the best fit.",
)
@click.option(
    "--mcmc-fallback/--no-mcmc-fallback", default=None,
    help=MCMC_FALLBACK_HELP + " Default: as the parent run.",
)  # fmt: skip
@click.option("--dispatch", is_flag=True, help="Hand the run to the Celery workers instead.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
def reprocess_command(parent_run: str, prior: str | None, calibration: str | None,
                      name: str | None, batch_size: int | None, marginalize: int,
                      mcmc_fallback: bool | None, dispatch: bool,
                      no_progress: bool) -> None:  # fmt: skip
    """Update PARENT_RUN's posteriors to a new prior and/or calibration by reweighting them.

    Queues only the affected objects (all of them for a new prior; those of tracts whose
    calibration terms changed otherwise), then processes them here, or with --dispatch on the
    Celery workers. New rows are written; the parent's are kept.
    """
    from lor.loop.reprocess import create_reprocess_run
    from lor.runs.lifecycle import run_status
    from lor.runs.processing import limit_compute_threads, process_run

    engine = _engine()
    config: dict[str, int | bool] = {"batch_size": batch_size} if batch_size is not None else {}
    if marginalize:
        if marginalize < 2:
            raise click.UsageError("--marginalize needs at least 2 draws")
        config["marginalize_hyperparameters"] = marginalize
    if mcmc_fallback is not None:
        config["mcmc_fallback"] = mcmc_fallback
    queued = create_reprocess_run(engine, parent_run, prior, calibration, name, config)
    run, plan = queued.run, queued.run.config["reprocess"]
    click.echo(
        f"{_run_line(run)}: {' and '.join(plan['reasons'])} changed; queued {queued.enqueued} "
        f"objects in {len(plan['affected_tracts'])} affected tracts"
    )
    if dispatch:
        click.echo(_dispatch(run.id, batch_size))
        return
    limit_compute_threads()
    counts = process_run(engine, run.id, progress=not no_progress, processors=_processors())
    status = run_status(engine, run.id)
    click.echo(
        f"{_run_line(status.run)}: processed {counts.done}, failed {counts.failed}; "
        + _counts_text(status.counts)
    )


@click.command("worker")
@click.option("--concurrency", "-c", type=int, default=None, help="Processes (default: CPUs).")
@click.option("--beat", is_flag=True, help="Also run the periodic sweep (one worker only).")
@click.option(
    "--pool", type=click.Choice(["prefork", "solo"]), default="prefork", show_default=True
)
@click.option("--loglevel", default="INFO", show_default=True)
def worker_command(concurrency: int | None, beat: bool, pool: str, loglevel: str) -> None:
    """Start a Celery worker (workers.app) on the configured broker (LOR_BROKER_URL)."""
    from lor.config import get_settings

    _engine().dispose()  # refuse a stale schema before starting anything
    from workers.app import app

    argv = ["worker", f"--loglevel={loglevel}", f"--pool={pool}"]
    if concurrency:
        argv.append(f"--concurrency={concurrency}")
    if beat:
        schedule = get_settings().home / "celerybeat-schedule"
        schedule.parent.mkdir(parents=True, exist_ok=True)
        argv += ["--beat", f"--schedule={schedule}"]
    app.worker_main(argv)


@click.command("status")
@click.argument("run", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (one object per run).")
def status_command(run: str | None, as_json: bool) -> None:
    """Work items of RUN (default: every open run) by state, the rate over the last minute,
    the time left, and STALLED with the reason for a run nothing is processing."""
    from lor.runs.lifecycle import open_run_statuses, run_status

    engine = _engine()
    statuses = [run_status(engine, run)] if run else open_run_statuses(engine)
    if not statuses:
        click.echo("no open runs")
    for status in statuses:
        if as_json:
            click.echo(json.dumps(status.as_dict()))
            continue
        eta = "unknown" if status.eta_s is None else str(dt.timedelta(seconds=round(status.eta_s)))
        click.echo(_run_line(status.run))
        click.echo(f"  {_counts_text(status.counts)} (total {status.total})")
        click.echo(f"  rate {status.rate_per_s:.1f} objects/s over the last minute; ETA {eta}")
        if status.stalled:
            click.echo(f"  STALLED: {status.stalled}")


@click.command("export")
@click.argument("run")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["parquet", "qp", "hats"]),
    default="parquet",
    show_default=True,
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=None,
    help="Output: *.parquet, *.hdf5 for qp, a folder for hats (default: RUN.parquet / "
    "RUN.hdf5 / RUN_hats here).",
)
@click.option("--chunk-rows", type=int, default=10_000, show_default=True, help="Rows per read.")
@click.option(
    "--z-points", type=int, default=401, show_default=True, help="qp: z grid points over the box."
)
@click.option("--no-progress", is_flag=True, help="No progress bar.")
def export_command(run: str, fmt: str, out: Path | None, chunk_rows: int, z_points: int,
                   no_progress: bool) -> None:  # fmt: skip
    """Write the latest posterior of every object of RUN to Parquet, qp (HDF5) or HATS."""
    from lor.reporting.export import default_export_path, export_run

    out = out or default_export_path(run, fmt)
    summary = export_run(
        _engine(), run, out, fmt, chunk_rows, z_points=z_points, progress=not no_progress
    )
    skipped = f", {summary.skipped} without a posterior left out" if summary.skipped else ""
    click.echo(
        f"run {summary.run_id} ({summary.run_name}): {summary.objects} objects written to "
        f"{summary.path} ({fmt}; {summary.without_posterior} without a posterior{skipped})"
    )


@click.command("pipeline")
@click.option("--objects", type=int, default=100_000, show_default=True, help="Catalog size.")
@click.option("--tracts", type=int, default=20, show_default=True)
@click.option("--sql-rows", type=int, default=1_000_000, show_default=True,
              help="Posteriors in the one tract of the SQL query.")  # fmt: skip
@click.option("--batch-size", type=int, default=2000, show_default=True)
@click.option("--repeats", type=int, default=3, show_default=True, help="Runs per rate (>= 3).")
@click.option("--celery/--no-celery", default=True, show_default=True)
def bench_pipeline_command(
    objects: int, tracts: int, sql_rows: int, batch_size: int, repeats: int, celery: bool
) -> None:
    """Processing rate in-process and on 1 and 2 Celery workers; bytes per posterior; SQL P(z)
    query on one tract."""
    from lor.bench.pipeline import run_pipeline_benchmark

    figures = run_pipeline_benchmark(
        objects, tracts, sql_rows, batch_size, repeats, celery,
        echo=lambda line: click.echo(line, err=True),
    )  # fmt: skip
    click.echo(json.dumps(figures, default=float))


@click.command("recovery")
@click.option("--objects", type=int, default=100_000, show_default=True, help="Catalog size.")
@click.option("--tracts", type=int, default=20, show_default=True)
@click.option("--kills", type=int, default=10, show_default=True,
              help="kill -9 of `lor process`, and of a Celery worker, at this many random points.")  # fmt: skip
@click.option("--scenario", "scenarios", multiple=True,
              type=click.Choice(["process", "celery", "redis", "pg_drop"]),
              help="Only these scenarios (repeat; default all).")  # fmt: skip
@click.option("--seed", type=int, default=16, show_default=True)
@click.option("--batch-size", type=int, default=1000, show_default=True, help="The run default.")
def bench_recovery_command(objects: int, tracts: int, kills: int, scenarios: tuple[str, ...],
                           seed: int, batch_size: int) -> None:  # fmt: skip
    """Kills, a broker restart and dropped DB connections mid-run: lost, duplicated,
    max_recovery_s, stalled_runs."""
    from lor.bench.recovery import SCENARIOS, run_recovery_benchmark

    figures = run_recovery_benchmark(
        objects, tracts, kills, scenarios or SCENARIOS, seed,
        echo=lambda line: click.echo(line, err=True), batch_size=batch_size,
    )  # fmt: skip
    click.echo(json.dumps(figures, default=str))


def register(cli: click.Group, bench: click.Group) -> None:
    """Add ``lor export``, ``lor bench pipeline`` and ``lor bench recovery`` (called once by
    :mod:`lor.cli.main`)."""
    cli.add_command(export_command)
    bench.add_command(bench_pipeline_command)
    bench.add_command(bench_recovery_command)


def _counts_text(counts: dict[str, int]) -> str:
    return ", ".join(f"{state} {n}" for state, n in counts.items())
