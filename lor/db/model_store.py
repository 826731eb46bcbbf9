"""Model-version slice of the store: register trained artifacts, find them again."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, select
from sqlalchemy.dialects.postgresql import insert

from lor.db.models import ModelVersion, PriorVersion
from lor.errors import NotFoundError


def register_model_version(
    conn: Connection,
    *,
    kind: str,
    family_name: str,
    family_version: str,
    artifact_sha256: str,
    artifact_uri: str,
    band_set_id: int,
    param_names: Sequence[str],
    training_ranges: dict[str, Any],
    metrics: dict[str, Any],
    config: dict[str, Any],
) -> int:
    """Insert a model version (idempotent on kind + sha256); returns its id."""
    stmt = (
        insert(ModelVersion)
        .values(
            kind=kind,
            family_name=family_name,
            family_version=family_version,
            artifact_sha256=artifact_sha256,
            artifact_uri=artifact_uri,
            band_set_id=band_set_id,
            param_names=list(param_names),
            training_ranges=training_ranges,
            metrics=metrics,
            config=config,
        )
        .on_conflict_do_nothing(index_elements=["kind", "artifact_sha256"])
        .returning(ModelVersion.id)
    )
    new_id = conn.execute(stmt).scalar_one_or_none()
    if new_id is not None:
        return new_id
    return conn.execute(
        select(ModelVersion.id).where(
            ModelVersion.kind == kind, ModelVersion.artifact_sha256 == artifact_sha256
        )
    ).scalar_one()


def register_trained_model(
    engine: Engine,
    kind: str,
    model: Any,
    folder: Path,
    sha256: str,
    training_ranges: dict[str, Any],
) -> int:
    """Record a loaded (hence verified) emulator or estimator artifact; returns its id."""
    from lor.bands import band_set_of
    from lor.db.catalog_store import get_or_create_band_set

    with engine.begin() as conn:
        band_set = get_or_create_band_set(conn, band_set_of(model.spec))
        return register_model_version(
            conn,
            kind=kind,
            family_name=model.family,
            family_version=model.family_version,
            artifact_sha256=sha256,
            artifact_uri=str(Path(folder).resolve()),
            band_set_id=band_set,
            param_names=model.spec["param_names"],
            training_ranges=training_ranges,
            metrics=model.spec.get("metrics", {}),
            config=model.spec.get("config", {}),
        )


def model_version(conn: Connection, version_id: int) -> Any:
    """The ``lor.model_versions`` row (attribute access by column name)."""
    table = ModelVersion.__table__
    row = conn.execute(select(table).where(table.c.id == version_id)).one_or_none()
    if row is None:
        raise NotFoundError(f"no model version {version_id}")
    return row


def register_prior_version(
    conn: Connection,
    name: str,
    record: dict[str, Any],
    method: str,
    provenance: dict[str, Any],
    parent_id: int | None = None,
) -> int:
    """Store a prior version (idempotent on name); ``record`` is ``PopulationPrior.as_record()``."""
    stmt = (
        insert(PriorVersion)
        .values(
            name=name,
            family=record["family"],
            family_version=record["family_version"],
            hyperparameters=record["hyperparameters"],
            selection=record["selection"],
            parent_id=parent_id,
            method=method,
            provenance=provenance | {"box": record["box"]},
        )
        .on_conflict_do_nothing(index_elements=["name"])
        .returning(PriorVersion.id)
    )
    new_id = conn.execute(stmt).scalar_one_or_none()
    if new_id is not None:
        return new_id
    return conn.execute(select(PriorVersion.id).where(PriorVersion.name == name)).scalar_one()
