"""The ``lor`` command line. Commands parse arguments and format results; logic lives in lor.

The command modules (:mod:`lor.cli.runs`, :mod:`lor.cli.science`, :mod:`lor.cli.serve`,
:mod:`lor.cli.models`) import no TensorFlow at module level: commands import it when they
run, after :func:`lor.quiet.quiet_tensorflow_startup` has silenced its start-up noise.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from sqlalchemy import Engine

from lor.cli import runs, science, serve
from lor.cli.models import models_group
from lor.errors import LorError
from lor.quiet import quiet_tensorflow_startup

quiet_tensorflow_startup()  # before any command imports TensorFlow


class LorGroup(click.Group):
    """Print :class:`LorError` messages without a traceback (exit code 2)."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except LorError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)


@click.group(cls=LorGroup)
@click.version_option(package_name="lor")
def cli() -> None:
    """lor: survey photometry to physical posteriors, kept in PostgreSQL."""


def _engine(check: bool = True) -> Engine:
    from lor.db.engine import make_engine
    from lor.db.migrate import check_schema

    engine = make_engine()
    if check:
        check_schema(engine)
    return engine


@cli.group()
def db() -> None:
    """Database schema management."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True)
def db_upgrade(revision: str) -> None:
    """Apply migrations (the only way lor changes its schema)."""
    from lor.db.migrate import upgrade

    engine = _engine(check=False)
    click.echo(f"schema at revision {upgrade(engine, revision)} ({engine.url.render_as_string()})")


@db.command("current")
def db_current() -> None:
    """Show the schema revision of the database and the one this code needs."""
    from lor.db.migrate import current_revision, head_revision

    engine = _engine(check=False)
    click.echo(json.dumps({"current": current_revision(engine), "head": head_revision()}))


@db.command("url")
def db_url() -> None:
    """Print the database URL for psql (starts the embedded database if it is the one used).

    e.g. psql "$(lor db url)"
    """
    from lor.db.engine import psql_url

    click.echo(psql_url())


@db.command("stop")
def db_stop() -> None:
    """Stop lor's embedded PostgreSQL (the next lor command starts it again)."""
    from lor.db.engine import stop_embedded

    click.echo(stop_embedded())


@cli.command()
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--release", required=True, help="Release name (created if new).")
@click.option(
    "--format", "fmt", type=click.Choice(["parquet", "fits", "hdf5", "csv"]), default=None
)
@click.option("--units", type=click.Choice(["njy", "abmag"]), default="njy", show_default=True)
@click.option("--id-column", default="objectId", show_default=True)
@click.option("--ra-column", default="coord_ra", show_default=True)
@click.option("--dec-column", default="coord_dec", show_default=True)
@click.option(
    "--tract-column", default="tract", show_default=True, help="Absent: tracts from positions."
)
@click.option("--flux-template", default=None, help="e.g. '{band}_cModelFlux' or 'mag_{band}'.")
@click.option(
    "--err-template", default=None, help="e.g. '{band}_cModelFluxErr' or 'magerr_{band}'."
)
@click.option("--ebv-column", default=None, help="Galactic E(B-V) column, if any.")
@click.option(
    "--band-set",
    default="lsst",
    show_default=True,
    help="The release's band set: a shipped name (lsst, lsst-euclid) or a band-set YAML file.",
)
@click.option(
    "--bands",
    default=None,
    help="The band set's bands this catalog has (letters or comma list; default all). The "
    "others are stored as missing.",
)
@click.option("--hdf5-path", default=None, help="Dataset or group inside an HDF5 file.")
@click.option("--chunk-rows", type=int, default=None)
def ingest(path: Path, release: str, fmt: str | None, units: str, id_column: str, ra_column: str,
           dec_column: str, tract_column: str, flux_template: str | None, err_template: str | None,
           ebv_column: str | None, band_set: str, bands: str | None, hdf5_path: str | None,
           chunk_rows: int | None) -> None:  # fmt: skip
    """Ingest a catalog file (Parquet, FITS, HDF5, CSV) into RELEASE."""
    from lor.catalog.ingest import CatalogColumns, ingest_catalog
    from lor.config import get_settings

    band_list = None if bands is None else tuple(bands.split(",") if "," in bands else bands)
    flux_default, err_default = (
        ("{band}_cModelFlux", "{band}_cModelFluxErr")
        if units == "njy"
        else ("mag_{band}", "magerr_{band}")
    )
    cols = CatalogColumns(
        id=id_column, ra=ra_column, dec=dec_column,
        tract=None if tract_column.lower() == "none" else tract_column,
        flux=flux_template or flux_default, flux_err=err_template or err_default,
        ebv=ebv_column, units=units, bands=band_list, band_set=band_set,
    )  # fmt: skip
    summary = ingest_catalog(
        _engine(),
        path,
        release,
        cols,
        fmt,
        chunk_rows or get_settings().ingest_chunk_rows,
        hdf5_path=hdf5_path,
    )
    click.echo(
        f"{summary.path}: read {summary.rows_read}, new {summary.rows_new}, changed "
        f"{summary.rows_changed}, unchanged {summary.rows_unchanged}, rejected {summary.rows_rejected}"
        f" (tracts: {summary.tract_scheme})"
    )
    for reason, count in sorted(summary.reject_reasons.items()):
        click.echo(f"  rejected {count}: {reason}")


@cli.command()
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Report folder.")
def demo(out: Path | None) -> None:
    """Set up the database and run the main job end to end on the shipped example."""
    from lor.reporting.demo import run_demo

    run_demo(out, echo=click.echo)


@cli.group()
def train() -> None:
    """Train models from a config file (reproducible: the config and seed fix everything)."""


@train.command("emulator")
@click.option(
    "--config", "config_path", type=click.Path(exists=True, path_type=Path), required=True
)
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Artifact folder.")
@click.option("--register/--no-register", default=False, help="Record it in lor.model_versions.")
@click.option("--resume", is_flag=True, help="Continue from OUT/work's last checkpoint.")
@click.option("--device", type=click.Choice(["auto", "cpu", "gpu"]), default=None)
@click.option("--stop-after-epochs", type=int, default=None, help="Checkpoint and stop early.")
def train_emulator(
    config_path: Path,
    out: Path,
    register: bool,
    resume: bool,
    device: str | None,
    stop_after_epochs: int | None,
) -> None:
    """Simulate with the SPS forward model, train the config's emulator family, save and
    measure it; checkpointed every epoch (``--resume`` after a kill)."""
    from lor.emulators.training import train_emulator_from_config

    sha, metrics = train_emulator_from_config(
        config_path, out, resume=resume, device=device, stop_after_epochs=stop_after_epochs
    )
    click.echo(json.dumps({"artifact": str(out), "sha256": sha, "metrics": metrics}))
    if register and sha is not None:
        from lor.emulators.registry import register_emulator

        click.echo(f"registered as model version {register_emulator(_engine(), out, sha)}")


@train.command("estimator")
@click.option(
    "--config", "config_path", type=click.Path(exists=True, path_type=Path), required=True
)
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Artifact folder.")
def train_estimator(config_path: Path, out: Path) -> None:
    """Simulate (interim prior -> shipped emulator -> data model), train the amortized estimator."""
    from lor.inference.estimator_training import train_estimator_from_config

    sha, metrics = train_estimator_from_config(config_path, out)
    click.echo(json.dumps({"artifact": str(out), "sha256": sha, "metrics": metrics}))


@cli.command()
@click.option(
    "--out", type=click.Path(path_type=Path), default=Path("reports/validation"), show_default=True
)
@click.option("--objects", type=int, default=10_000, show_default=True)
@click.option("--mcmc", "n_mcmc", type=int, default=200, show_default=True)
def validate(out: Path, objects: int, n_mcmc: int) -> None:
    """Validation report for the shipped estimator: PNG plots + JSON on held-out simulations."""
    from lor.bench.report import write_report

    figures = write_report(out, objects, n_mcmc)
    click.echo(
        json.dumps(
            {k: v for k, v in figures.items() if k != "coverage_per_parameter"}, default=float
        )
    )
    click.echo(f"report written to {out}")


@cli.group()
def bench() -> None:
    """Benchmarks: each prints one JSON object as its last line."""


@bench.command("ingest")
@click.option("--rows", type=int, default=1_000_000, show_default=True)
@click.option("--repeats", type=int, default=3, show_default=True, help="Timing repeats (>= 3).")
def bench_ingest(rows: int, repeats: int) -> None:
    """Ingest speed against a plain COPY of the same rows (throwaway database)."""
    from lor.bench.ingest import run_ingest_benchmark

    click.echo(json.dumps(run_ingest_benchmark(rows, repeats=repeats)))


@bench.command("emulator")
@click.option("--held-out", type=int, default=20_000, show_default=True)
@click.option("--repeats", type=int, default=3, show_default=True, help="Timing repeats (>= 3).")
@click.option("--band-set", default="lsst", show_default=True, help="Whose shipped emulator.")
@click.option(
    "--emulator",
    "emulator_name",
    default=None,
    help="A shipped emulator by name (default: the band set's).",
)
def bench_emulator(emulator_name: str | None, held_out: int, repeats: int, band_set: str) -> None:
    """Shipped emulator: held-out accuracy and speed against bagpipes and the forward model."""
    from lor.bench.emulator import run_emulator_benchmark

    click.echo(
        json.dumps(
            run_emulator_benchmark(
                held_out, repeats=repeats, emulator_name=emulator_name, band_set=band_set
            )
        )
    )


@bench.command("estimator")
@click.option("--objects", type=int, default=20_000, show_default=True)
@click.option("--mcmc", "n_mcmc", type=int, default=200, show_default=True)
@click.option("--repeats", type=int, default=3, show_default=True, help="Timing repeats (>= 3).")
@click.option("--band-set", default="lsst", show_default=True, help="Whose shipped estimator.")
def bench_estimator(objects: int, n_mcmc: int, repeats: int, band_set: str) -> None:
    """Shipped estimator on held-out simulations, with MCMC side by side."""
    from lor.bench.estimator import run_estimator_benchmark

    figures = run_estimator_benchmark(objects, n_mcmc, repeats, band_set)
    click.echo(json.dumps(figures, default=float))


@bench.command("reprocess")
@click.option("--objects", type=int, default=50_000, show_default=True)
@click.option("--tracts", type=int, default=10, show_default=True)
@click.option("--validation-tracts", type=int, default=4, show_default=True)
@click.option("--validation-per-tract", type=int, default=30_000, show_default=True)
@click.option("--mcmc", "n_mcmc", type=int, default=200, show_default=True)
@click.option("--repeats", type=int, default=3, show_default=True, help="Timing repeats (>= 3).")
def bench_reprocess(
    objects: int, tracts: int, validation_tracts: int, validation_per_tract: int, n_mcmc: int,
    repeats: int,
) -> None:  # fmt: skip
    """Reprocess rates (prior / calibration change, against processing from scratch), LOW_ESS
    fraction, calibration recovery (``--validation-tracts 0`` skips the loop validation)."""
    from lor.bench.reprocess import run_reprocess_benchmark

    figures = run_reprocess_benchmark(
        objects, tracts, validation_tracts, validation_per_tract, n_mcmc, repeats
    )
    click.echo(json.dumps(figures, default=float))


@bench.command("misspecified")
@click.option("--objects", type=int, default=20_000, show_default=True, help="Per variant.")
@click.option("--tracts", type=int, default=4, show_default=True)
@click.option("--variant", "variants", multiple=True, help="Run only these (default: all).")
@click.option("--density-objects", type=int, default=200_000, show_default=True)
@click.option("--density-components", type=int, default=96, show_default=True)
@click.option("--before-only", is_flag=True, help="Stop after Step 1 (no calibration).")
@click.option(
    "--free", default="", help="Hyperparameters Step 2 fits, comma-separated (default: the "
    "prior family's, lor.bench.misspecified.DEFAULT_FREE); 'nz', 'mf': the flexible n(z) and mass function.",
)  # fmt: skip
def bench_misspecified(
    objects: int, tracts: int, variants: tuple[str, ...], density_objects: int,
    density_components: int, before_only: bool, free: str,
) -> None:  # fmt: skip
    """Posteriors on catalogs from models lor does not use, before and after Step 2."""
    from lor.bench.misspecified import run_misspecified_benchmark

    figures = run_misspecified_benchmark(
        objects, tracts, list(variants) or None,
        tuple(h.strip() for h in free.split(",") if h.strip()) or None,
        density_objects=density_objects,
        density_components=density_components, echo=lambda m: click.echo(m, err=True),
        step2=not before_only,
    )  # fmt: skip
    click.echo(json.dumps(figures, default=float))


@bench.command("prior")
@click.option("--draws", type=int, default=200_000, show_default=True)
@click.option("--repeats", type=int, default=3, show_default=True)
def bench_prior(draws: int, repeats: int) -> None:
    """Interim and published-relations priors against published counts and redshifts."""
    from lor.bench.prior import run_prior_benchmark

    click.echo(json.dumps(run_prior_benchmark(draws, repeats), default=float))


@bench.command("sps-flexibility")
@click.option("--objects", type=int, default=100, show_default=True, help="Per variant.")
@click.option("--variant", "variants", multiple=True, help="Run only these (default: all).")
def bench_sps_flexibility(objects: int, variants: tuple[str, ...]) -> None:
    """Model misfit on the suite's catalogs with and without each SPS departure."""
    from lor.bench.sps_flexibility import run_sps_flexibility_benchmark

    figures = run_sps_flexibility_benchmark(
        objects, list(variants) or None, echo=lambda m: click.echo(m, err=True)
    )
    click.echo(json.dumps(figures, default=float))


@bench.command("posteriors")
@click.option("--repeats", type=int, default=5, show_default=True, help="Timing repeats (>= 3).")
def bench_posteriors(repeats: int) -> None:
    """Summary computation speed of the compressed flow posterior."""
    from lor.bench.summaries import run_summaries_benchmark

    click.echo(json.dumps(run_summaries_benchmark(repeats=repeats), default=float))


for command in (
    runs.run_group,
    runs.process_command,
    runs.reprocess_command,
    runs.calibrate_command,
    runs.worker_command,
    runs.status_command,
    serve.serve_command,
    serve.truth_command,
    models_group,
):
    cli.add_command(command)
runs.register(cli, bench)  # export and bench pipeline/recovery
science.register(cli, bench)

if __name__ == "__main__":
    cli()
