"""One settings object for all of lor, read from ``LOR_``-prefixed environment variables.

With no ``LOR_DATABASE_URL`` lor runs a private PostgreSQL (the ``pgserver`` wheel) in
``LOR_HOME/pgdata``, so a fresh machine needs no database server to try lor.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Runtime settings; every field can be set as ``LOR_<FIELD>`` in the environment."""

    model_config = SettingsConfigDict(env_prefix="LOR_", extra="ignore")

    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the PostgreSQL server (postgresql+psycopg://...). "
        "Unset: a private embedded PostgreSQL under LOR_HOME.",
    )
    home: Path = Field(
        default=Path.home() / ".lor",
        description="Directory for the embedded database, downloaded-free caches and reports.",
    )
    broker_url: str = Field(
        default="redis://127.0.0.1:6379/0",
        description="Celery broker (Redis by default; amqp://guest:guest@127.0.0.1:5672// works).",
    )
    ingest_chunk_rows: int = Field(
        default=250_000, description="Rows per COPY chunk during ingestion.", gt=0
    )
    db_schema: str = Field(default="lor", description="PostgreSQL schema holding lor's tables.")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (cached; tests clear the cache after changing the env)."""
    return Settings()
