"""Shared fixtures: a real PostgreSQL database per test session, cleaned between tests.

The server comes from ``LOR_TEST_SERVER_URL`` (default: the local PostgreSQL at
127.0.0.1:5432, trust auth). Each session creates a throwaway database and drops it at exit.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from lor.db.admin import temporary_database
from lor.db.engine import make_engine
from lor.db.migrate import upgrade

SERVER_URL = os.environ.get(
    "LOR_TEST_SERVER_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


@pytest.fixture(scope="session", autouse=True)
def model_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A throwaway model store for the session (``LOR_MODEL_STORE``, inherited by worker
    subprocesses): registering artifacts must not write into the user's ``LOR_HOME``."""
    from lor.config import get_settings

    root = tmp_path_factory.mktemp("model_store")
    before = os.environ.get("LOR_MODEL_STORE")
    os.environ["LOR_MODEL_STORE"] = str(root)
    get_settings.cache_clear()
    yield root
    if before is None:
        os.environ.pop("LOR_MODEL_STORE", None)
    else:
        os.environ["LOR_MODEL_STORE"] = before
    get_settings.cache_clear()


@pytest.fixture(scope="session")
def server_url() -> str:
    return SERVER_URL


@pytest.fixture(scope="session")
def database_url(server_url: str) -> Iterator[str]:
    with temporary_database(server_url, "lor_test") as url:
        engine = make_engine(url)
        upgrade(engine)
        engine.dispose()
        yield url


@pytest.fixture()
def engine(database_url: str) -> Iterator[Engine]:
    """The session database with every lor table emptied after the test."""
    eng = make_engine(database_url)
    yield eng
    with eng.begin() as conn:
        tables = conn.execute(
            text(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'lor' "
                "AND tablename <> 'alembic_version' AND tablename !~ '_p[0-9]+$'"
            )
        ).scalars()
        conn.execute(
            text("TRUNCATE " + ", ".join(f"lor.{t}" for t in tables) + " RESTART IDENTITY CASCADE")
        )
    eng.dispose()


@pytest.fixture()
def lor_env(monkeypatch: pytest.MonkeyPatch, database_url: str, tmp_path: Path) -> str:
    """Point lor's settings (CLI, workers) at the test database."""
    from lor.config import get_settings

    monkeypatch.setenv("LOR_DATABASE_URL", database_url)
    monkeypatch.setenv("LOR_HOME", str(tmp_path / "lorhome"))
    get_settings.cache_clear()
    yield database_url
    get_settings.cache_clear()
