"""One settings object for all of lor, read from ``LOR_``-prefixed environment variables.

With no ``LOR_DATABASE_URL`` lor runs a private PostgreSQL (the ``pgserver`` wheel) in
``LOR_HOME/pgdata``, so a fresh machine needs no database server to try lor.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import TypeVar

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

T = TypeVar("T")


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
    model_store: Path | None = Field(
        default=None,
        description="Content-addressed store of model artifacts (one folder per spec "
        "sha256, what lor.model_versions points to). Unset: LOR_HOME/models.",
    )
    broker_url: str = Field(
        default="redis://127.0.0.1:6379/0",
        description="Celery broker (Redis by default; amqp://guest:guest@127.0.0.1:5672// works).",
    )
    ingest_chunk_rows: int = Field(
        default=250_000, description="Rows per COPY chunk during ingestion.", gt=0
    )
    queue: str = Field(
        default="lor",
        description="Celery queue the workers consume and dispatch sends to (workers.app).",
        min_length=1,
    )
    sweep_interval_s: float = Field(
        default=10.0,
        description="Seconds between periodic sweeps (Celery beat): requeue dead holders' "
        "claims, re-send messages lost with a broker restart, close finished runs.",
        gt=0,
    )
    compute_threads: int = Field(
        default=1,
        description="Threads per worker process for TensorFlow and BLAS. One: workers scale "
        "by processes, and idle BLAS/TF threads spin on the cores the database and the other "
        "workers need (measured in lor bench pipeline).",
        gt=0,
    )
    heartbeat_s: float = Field(
        default=2.0,
        description="Seconds between a claiming process's heartbeats (lor.workers).",
        gt=0,
    )
    dead_after_s: float = Field(
        default=10.0,
        description="A claim holder silent this long is dead: its claims return to pending "
        "at the next sweep, not when their lease (600 s) ends. Keep it several heartbeats.",
        gt=0,
    )

    @property
    def model_store_dir(self) -> Path:
        """Where registered artifacts live: ``model_store``, else ``home/models``."""
        return self.model_store if self.model_store is not None else self.home / "models"


def load_yaml_config(cls: type[T], path: Path) -> T:
    """A dataclass config from a YAML file; unknown keys are an error, not ignored."""
    import yaml

    from lor.errors import ConfigError

    try:
        raw = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read config {path}: {exc}") from exc
    unknown = set(raw) - set(cls.__dataclass_fields__)  # type: ignore[attr-defined]
    if unknown:
        raise ConfigError(f"{path}: unknown config keys {sorted(unknown)}")
    return cls(**raw)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (cached; tests clear the cache after changing the env)."""
    return Settings()
