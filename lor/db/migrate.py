"""Schema migrations and the stale-schema guard every entry point runs.

Migrations live in ``lor/db/migrations/`` (Alembic, date-prefixed revision files) and run
only through :func:`upgrade` (``lor db upgrade``). SQL functions and views are versioned
files under ``lor/db/sql/`` that a migration installs, so they change with the schema. Both
are package resources found through :mod:`importlib.resources`, so an installed wheel (not
only a checkout) can upgrade a database.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect

from lor.db.models import SCHEMA
from lor.errors import ConfigError, StaleSchemaError


def _resource_dir(name: str) -> Path:
    """A folder shipped inside ``lor.db``, as a filesystem path (Alembic needs one)."""
    resource = files("lor.db").joinpath(name)
    path = Path(str(resource))
    if not path.is_dir():
        raise ConfigError(f"lor.db resource folder {name!r} not found at {path}")
    return path


def alembic_config(url: str) -> Config:
    migrations = _resource_dir("migrations")
    if not (migrations / "env.py").exists():
        raise ConfigError(f"migrations folder {migrations} has no env.py")
    cfg = Config()
    cfg.set_main_option("script_location", str(migrations))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    cfg.set_main_option("file_template", "%%(year)d_%%(month).2d_%%(day).2d_%%(rev)s_%%(slug)s")
    return cfg


def head_revision() -> str:
    """The revision this code expects the database to be at."""
    script = ScriptDirectory.from_config(alembic_config("postgresql://unused"))
    head = script.get_current_head()
    assert head is not None, "migrations folder has no revisions"
    return head


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        if not inspect(conn).has_schema(SCHEMA):
            return None
        ctx = MigrationContext.configure(conn, opts={"version_table_schema": SCHEMA})
        return ctx.get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> str:
    """Bring the schema to ``revision``; returns the revision now current."""
    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)
    current = current_revision(engine)
    assert current is not None
    return current


def downgrade(engine: Engine, revision: str) -> str | None:
    """Step the schema back to ``revision`` ("base" drops every lor table)."""
    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, revision)
    return current_revision(engine)


def check_schema(engine: Engine) -> None:
    """Refuse to run against a database whose schema is not at this code's head revision."""
    current, head = current_revision(engine), head_revision()
    if current != head:
        shown = current or "empty (no lor schema)"
        raise StaleSchemaError(
            f"database schema is at revision {shown}, this lor needs {head}: run `lor db upgrade`"
        )


def read_sql(name: str) -> str:
    """Text of a versioned SQL file under ``lor/db/sql/`` (used by migrations)."""
    path = _resource_dir("sql") / name
    if not path.exists():
        raise ConfigError(f"SQL file {path} is missing")
    return path.read_text()
