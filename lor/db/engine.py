"""Database connection: resolve the URL (configured server or embedded PostgreSQL), make engines.

The embedded default is a private PostgreSQL 16 from the ``pgserver`` wheel, listening only
on a Unix socket inside ``LOR_HOME/pgdata``; it keeps running between commands so later
commands reuse it.
"""

from __future__ import annotations

import os
import warnings
from functools import lru_cache
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from sqlalchemy import Engine, create_engine, make_url

from lor.config import Settings, get_settings
from lor.errors import ConfigError


def resolve_database_url(settings: Settings | None = None) -> str:
    """The SQLAlchemy URL to use: ``LOR_DATABASE_URL``, else the embedded server's."""
    settings = settings or get_settings()
    if settings.database_url:
        return normalize_url(settings.database_url)
    return embedded_database_url(settings.home)


def normalize_url(url: str) -> str:
    """Make any ``postgresql://`` URL use the psycopg 3 driver; reject non-PostgreSQL URLs."""
    try:
        parsed = make_url(url)
    except Exception as exc:  # sqlalchemy raises ArgumentError on garbage
        raise ConfigError(f"LOR_DATABASE_URL is not a database URL: {url!r}") from exc
    if parsed.get_backend_name() != "postgresql":
        raise ConfigError(f"lor needs PostgreSQL; LOR_DATABASE_URL points at {parsed.drivername!r}")
    return parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)


@lru_cache(maxsize=4)
def embedded_database_url(home: Path) -> str:
    """Start (or reuse) the private PostgreSQL under ``home/pgdata`` and return its URL."""
    home.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("XDG_RUNTIME_DIR", str(home / "run"))
    (home / "run").mkdir(parents=True, exist_ok=True, mode=0o700)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver

        server = pgserver.get_server(home / "pgdata", cleanup_mode=None)
    uri = server.get_uri()  # postgresql://postgres:@/postgres?host=/path/to/socket/dir
    socket_dir = parse_qs(urlsplit(uri).query)["host"][0]
    return f"postgresql+psycopg://postgres@/postgres?host={socket_dir}"


def make_engine(url: str | None = None, **kwargs: object) -> Engine:
    """An engine for ``url`` (default: the configured one)."""
    return create_engine(url or resolve_database_url(), pool_pre_ping=True, **kwargs)


def psql_url(url: str | None = None) -> str:
    """The database URL as libpq (psql, pg_dump) reads it: ``postgresql://``, no driver.

    lor's own URLs name SQLAlchemy's driver (``postgresql+psycopg://``), which psql rejects.
    The embedded server's socket directory stays in the ``host`` query parameter, which
    libpq understands.
    """
    parsed = make_url(url or resolve_database_url())
    return parsed.set(drivername="postgresql").render_as_string(hide_password=False)


def stop_embedded(settings: Settings | None = None) -> str:
    """Stop the embedded PostgreSQL under ``LOR_HOME/pgdata``; says what it did.

    Refuses when ``LOR_DATABASE_URL`` is set (that server is not lor's to stop). The next
    lor command starts the embedded server again.
    """
    settings = settings or get_settings()
    if settings.database_url:
        raise ConfigError(
            "LOR_DATABASE_URL is set: lor uses that server and stops only its own embedded one"
        )
    pgdata = settings.home / "pgdata"
    if not (pgdata / "postmaster.pid").exists():
        return f"the embedded database ({pgdata}) is not running"
    import subprocess

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver
    user = "pgserver" if os.geteuid() == 0 else None  # pgserver runs it so when lor is root
    try:
        pgserver.pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata, user=user)  # type: ignore[attr-defined]
    except subprocess.CalledProcessError as exc:
        raise ConfigError(f"could not stop the embedded database at {pgdata}: {exc}") from exc
    embedded_database_url.cache_clear()
    return f"stopped the embedded database ({pgdata})"
