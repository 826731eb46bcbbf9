"""``lor nz``, ``lor cone`` and ``lor xmatch``: n(z) of selections, cone search, cross-match.

Commands parse and format; the logic is in :mod:`lor.query.nz` and :mod:`lor.query.sky`.
"""

from __future__ import annotations

import json
from pathlib import Path

import click
from sqlalchemy import Engine

from lor.errors import ConfigError


def _engine() -> Engine:
    from lor.db.engine import make_engine
    from lor.db.migrate import check_schema

    engine = make_engine()
    check_schema(engine)
    return engine


def _floats(text: str, what: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError as exc:
        raise ConfigError(f"{what} must be comma-separated numbers, not {text!r}") from exc


def _run_id(engine: Engine, run: str | None) -> int | None:
    from lor.runs.lifecycle import get_run

    return None if run is None else get_run(engine, run).id


@click.command("nz")
@click.argument("run")
@click.option("--where", default=None, help="SQL condition on lor.run_posteriors columns.")
@click.option("--grid", default="0,3,301", show_default=True, help="zmin,zmax,n points.")
@click.option("--bins", default=None, help="Tomographic bin edges, e.g. 0.2,0.5,0.8,1.2,2.0.")
@click.option(
    "--assign",
    type=click.Choice(["median", "probability"]),
    default="median",
    show_default=True,
    help="Bin of each object: by z_q50, or the bin of largest P(z in bin).",
)
@click.option("--p-min", type=float, default=0.0, show_default=True, help="With probability.")
@click.option("--plot", type=click.Path(path_type=Path), default=None, help="PNG of the n(z).")
@click.option(
    "--truth",
    type=click.Path(path_type=Path),
    default=None,
    help="Parquet truth table (objectId, redshift): its histogram per bin goes on the plot.",
)
@click.option("--out", type=click.Path(path_type=Path), default=None, help="JSON with arrays.")
def nz_command(run: str, where: str | None, grid: str, bins: str | None, assign: str,
               p_min: float, plot: Path | None, truth: Path | None,
               out: Path | None) -> None:  # fmt: skip
    """n(z) of RUN's posteriors (optionally WHERE ...), per tomographic bin, with jackknife
    errors; prints a JSON summary."""
    from lor.query.nz import plot_nz, run_nz, true_redshifts_by_bin

    values = _floats(grid, "--grid")
    if len(values) != 3 or values[2] != int(values[2]):
        raise ConfigError(f"--grid is zmin,zmax,n; got {grid!r}")
    edges = _floats(bins, "--bins") if bins else None
    engine = _engine()
    result = run_nz(
        engine, run, where, values[0], values[1], int(values[2]),
        assign if edges else "none", edges, p_min,
    )  # fmt: skip
    summary = result.as_dict()
    if plot is not None:
        z_true = None if truth is None else true_redshifts_by_bin(engine, result, truth, p_min)
        summary["plot"] = str(plot_nz(result, plot, truth=z_true))
    if out is not None:
        out.write_text(json.dumps(result.as_dict(with_arrays=True) | {"z": result.z.tolist()}))
        summary["out"] = str(out)
    click.echo(json.dumps(summary))


@click.command("cone")
@click.argument("ra", type=float)
@click.argument("dec", type=float)
@click.argument("radius_deg", type=float)
@click.option("--run", default=None, help="Only this run's posteriors (default: latest of any).")
@click.option("--limit", type=int, default=50, show_default=True)
def cone_command(ra: float, dec: float, radius_deg: float, run: str | None, limit: int) -> None:
    """Objects within RADIUS_DEG of (RA, DEC) with their latest posterior, nearest first."""
    from lor.query.sky import cone

    engine = _engine()
    rows = cone(engine, ra, dec, radius_deg, _run_id(engine, run))
    click.echo(f"{len(rows)} objects within {radius_deg} deg of ({ra}, {dec})")
    click.echo(f"{'sep_arcsec':>10} {'catalog_id':>20} {'z_q50':>7} {'z_q16':>7} {'z_q84':>7} "
               f"{'logM*':>6} {'flags':>5} run")  # fmt: skip
    for r in rows[:limit]:
        z = [
            f"{v:7.3f}" if v is not None else "   null"
            for v in (r["z_q50"], r["z_q16"], r["z_q84"])
        ]
        m = f"{r['log_mstar_q50']:6.2f}" if r["log_mstar_q50"] is not None else "  null"
        click.echo(f"{r['sep_deg'] * 3600:10.2f} {r['catalog_id']:>20} {' '.join(z)} {m} "
                   f"{r['ood_flags']:>5} {r['run_id']}")  # fmt: skip


@click.command("xmatch")
@click.argument("positions", type=click.Path(path_type=Path))
@click.option("--radius", type=float, default=1.0, show_default=True, help="Arcsec.")
@click.option("--ra-column", default="ra", show_default=True)
@click.option("--dec-column", default="dec", show_default=True)
@click.option("--run", default=None, help="Only this run's posteriors (default: latest of any).")
@click.option(
    "--all-matches", is_flag=True, help="Every object within the radius, not the nearest."
)
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Matches (Parquet).")
def xmatch_command(positions: Path, radius: float, ra_column: str, dec_column: str,
                   run: str | None, all_matches: bool, out: Path) -> None:  # fmt: skip
    """Cross-match a Parquet/CSV file of positions with stored objects and their posteriors."""
    import pyarrow.parquet as pq

    from lor.query.sky import crossmatch, read_positions

    ra, dec = read_positions(positions, ra_column, dec_column)
    engine = _engine()
    table = crossmatch(engine, ra, dec, radius, _run_id(engine, run), not all_matches)
    pq.write_table(table, out)
    matched = len(set(table["idx"].to_pylist()))
    click.echo(json.dumps({"positions": int(ra.size), "matched": matched,
                           "rows": table.num_rows, "out": str(out)}))  # fmt: skip


@click.command("sql")
@click.option("--rows", type=int, default=1_000_000, show_default=True, help="Posteriors.")
@click.option("--source-objects", type=int, default=10_000, show_default=True)
@click.option("--repeats", type=int, default=3, show_default=True)
@click.option("--external", type=int, default=100_000, show_default=True, help="Cross-match.")
def bench_sql(rows: int, source_objects: int, repeats: int, external: int) -> None:
    """n(z), cone, cross-match and P(z) query timings on RUN-sized posterior tables."""
    from lor.bench.sql import run_benchmark

    check = max(3, repeats)
    click.echo(
        json.dumps(run_benchmark("sql", rows, source_objects, check, external), default=float)
    )


@click.command("export")
@click.option("--rows", type=int, default=100_000, show_default=True, help="Posteriors.")
@click.option("--source-objects", type=int, default=10_000, show_default=True)
@click.option("--repeats", type=int, default=3, show_default=True)
def bench_export(rows: int, source_objects: int, repeats: int) -> None:
    """Export rates: HATS, qp and Parquet."""
    from lor.bench.sql import run_benchmark

    check = max(3, repeats)
    click.echo(json.dumps(run_benchmark("export", rows, source_objects, check, 0), default=float))


def register(cli: click.Group, bench: click.Group) -> None:
    """Add these commands to the main ``lor`` group and its ``bench`` group."""
    for command in (nz_command, cone_command, xmatch_command):
        cli.add_command(command)
    bench.add_command(bench_sql)
    bench.add_command(bench_export)
