"""The CLI end to end against the test database (and the embedded default)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote

from click.testing import CliRunner
from sqlalchemy import text

from lor.bench.synthetic_catalog import synthetic_object_table
from lor.cli.main import cli
from lor.db.admin import temporary_database
from lor.db.engine import make_engine
from tests.pipeline.catalog_files import write_catalog


def test_stale_schema_is_refused_with_a_clear_message(
    server_url: str, monkeypatch, tmp_path: Path
) -> None:
    from lor.config import get_settings

    with temporary_database(server_url, "lor_test_cli") as url:
        monkeypatch.setenv("LOR_DATABASE_URL", url)
        get_settings.cache_clear()
        path = write_catalog(synthetic_object_table(10), tmp_path / "c.parquet")
        result = CliRunner().invoke(cli, ["ingest", str(path), "--release", "DR1"])
        assert result.exit_code == 2
        assert "run `lor db upgrade`" in result.output
        assert CliRunner().invoke(cli, ["db", "upgrade"]).exit_code == 0
        result = CliRunner().invoke(cli, ["ingest", str(path), "--release", "DR1"])
        assert result.exit_code == 0, result.output
        assert "new 10" in result.output
        current = json.loads(CliRunner().invoke(cli, ["db", "current"]).output)
        assert current["current"] == current["head"]
    get_settings.cache_clear()


def test_ingest_reports_rejects_and_bad_files(lor_env: str, engine, tmp_path: Path) -> None:
    table = synthetic_object_table(20)
    cols = {c: table[c].to_numpy().copy() for c in table.column_names}
    cols["g_cModelFluxErr"][3] = -1.0
    import pyarrow as pa

    path = write_catalog(pa.table(cols), tmp_path / "c.parquet")
    result = CliRunner().invoke(cli, ["ingest", str(path), "--release", "DR1"])
    assert result.exit_code == 0, result.output
    assert "rejected 1: band g: non-positive flux error" in result.output
    missing = CliRunner().invoke(
        cli, ["ingest", str(tmp_path / "nope.parquet"), "--release", "DR1"]
    )
    assert missing.exit_code == 2 and "not found" in missing.output
    with make_engine(lor_env).connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM lor.objects")).scalar_one() == 19


def test_embedded_default_needs_no_server(tmp_path: Path) -> None:
    """With no LOR_DATABASE_URL, lor starts its private PostgreSQL and works end to end."""
    env = {
        "LOR_HOME": str(tmp_path / "home"),
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": str(tmp_path),
    }
    path = write_catalog(synthetic_object_table(25), tmp_path / "c.parquet")
    script = "from lor.cli.main import cli; import sys; sys.argv=['lor']+sys.argv[1:]; cli()"
    run = lambda *args: subprocess.run(  # noqa: E731
        [sys.executable, "-c", script, *args], env=env, capture_output=True, text=True, timeout=300
    )
    up = run("db", "upgrade")
    assert up.returncode == 0, up.stderr
    assert f"host={tmp_path / 'home' / 'pgdata'}" in unquote(up.stdout)
    ing = run("ingest", str(path), "--release", "DR1")
    assert ing.returncode == 0, ing.stderr
    assert "new 25" in ing.stdout
    again = run("ingest", str(path), "--release", "DR1")
    assert "unchanged 25" in again.stdout
    # psql reads `lor db url` as printed (SQLAlchemy's postgresql+psycopg:// it rejected)
    url = run("db", "url").stdout.strip()
    assert url.startswith("postgresql://")
    count = subprocess.run(["psql", url, "-Atc", "SELECT count(*) FROM lor.objects"],
                           capture_output=True, text=True, timeout=60)  # fmt: skip
    assert count.returncode == 0 and count.stdout.strip() == "25", count.stderr
    stop = run("db", "stop")
    assert stop.returncode == 0 and "stopped the embedded database" in stop.stdout, stop.stderr
    assert not (tmp_path / "home" / "pgdata" / "postmaster.pid").exists()
    assert "is not running" in run("db", "stop").stdout
    subprocess.run(
        ["/bin/sh", "-c", f"pkill -f 'postgres -D {tmp_path}/home/pgdata' || true"], check=False
    )
