"""``lor serve`` (the run dashboard) and ``lor truth`` (known redshifts it compares with).

Commands parse and format; the logic is in :mod:`lor.dashboard.app` and
:mod:`lor.catalog.truth`. Registered on the main group by :mod:`lor.cli.main`.
"""

from __future__ import annotations

from pathlib import Path

import click


@click.command("serve")
@click.option("--port", type=int, default=8765, show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True, help="0.0.0.0 to listen on all.")
def serve_command(port: int, host: str) -> None:
    """Serve the live run dashboard (read-only: it connects as lor_reader)."""
    from lor.dashboard.app import serve

    click.echo(f"lor dashboard on http://{host}:{port}/ (Ctrl-C stops it)", err=True)
    serve(host, port)


@click.command("truth")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--source", default=None, help="Where the redshifts come from (default: file name).")
@click.option("--id-column", default="objectId", show_default=True)
@click.option("--z-column", default="redshift", show_default=True)
def truth_command(path: Path, source: str | None, id_column: str, z_column: str) -> None:
    """Load true (or spectroscopic) redshifts by catalog id from PATH into lor.truth."""
    from lor.catalog.truth import ingest_truth
    from lor.db.engine import make_engine
    from lor.db.migrate import check_schema

    engine = make_engine()
    check_schema(engine)
    n = ingest_truth(engine, path, source, id_column, z_column)
    click.echo(f"{path}: {n} true redshifts loaded")
