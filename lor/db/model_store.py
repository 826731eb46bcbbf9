"""Model-version slice of the store: register trained artifacts, find and load them again.

A registered artifact is copied into the model store (:class:`lor.artifacts.ModelStore`)
and its row's ``artifact_uri`` is the content address ``sha256:<hex>``; loading locates the
folder by that hash (:meth:`ModelStore.locate`), so rows survive a moved checkout. Rows
registered before the store existed hold an absolute path: they still load while that path
(or a shipped artifact with the same hash) exists, and registering the artifact again
re-points them to the store.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, select
from sqlalchemy.dialects.postgresql import insert

from lor.artifacts import ModelStore, content_uri
from lor.db.models import ModelVersion, PriorVersion
from lor.errors import ArtifactError, NoProcessorError, NotFoundError

if TYPE_CHECKING:
    from lor.db.run_store import Run
    from lor.emulators.protocol import Emulator
    from lor.inference.estimator import AmortizedEstimator

MODEL_KINDS = ("emulator", "estimator")


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
    stmt = insert(ModelVersion).values(
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
    # Idempotent on kind + sha256; registering again re-points the row to ``artifact_uri``
    # (how a row that still holds a host path moves to the model store).
    stmt = stmt.on_conflict_do_update(
        index_elements=["kind", "artifact_sha256"],
        set_={"artifact_uri": stmt.excluded.artifact_uri},
    ).returning(ModelVersion.id)
    return conn.execute(stmt).scalar_one()


def register_trained_model(
    engine: Engine,
    kind: str,
    model: Any,
    folder: Path,
    sha256: str,
    training_ranges: dict[str, Any],
    store: ModelStore | None = None,
) -> int:
    """Copy a loaded (hence verified) emulator or estimator artifact into the model store
    (``store``, default: the configured one) and record it by content address; returns its id."""
    from lor.bands import band_set_of
    from lor.db.catalog_store import get_or_create_band_set

    (store or configured_store()).add(Path(folder), sha256)
    with engine.begin() as conn:
        band_set = get_or_create_band_set(conn, band_set_of(model.spec))
        return register_model_version(
            conn,
            kind=kind,
            family_name=model.family,
            family_version=model.family_version,
            artifact_sha256=sha256,
            artifact_uri=content_uri(sha256),
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


def configured_store() -> ModelStore:
    """The model store the settings name (``LOR_MODEL_STORE``, default ``LOR_HOME/models``)."""
    from lor.config import get_settings

    return ModelStore(get_settings().model_store_dir)


def shipped_artifacts() -> dict[str, tuple[Path, str]]:
    """The artifacts shipped inside the package, by kind: ``(folder, pinned sha256)``."""
    from lor.emulators.registry import SHIPPED_DIR as EMULATOR_DIR
    from lor.emulators.registry import SHIPPED_EMULATOR
    from lor.inference.registry import SHIPPED_DIR as ESTIMATOR_DIR
    from lor.inference.registry import SHIPPED_ESTIMATOR

    return {
        "emulator": (EMULATOR_DIR / SHIPPED_EMULATOR[0], SHIPPED_EMULATOR[1]),
        "estimator": (ESTIMATOR_DIR / SHIPPED_ESTIMATOR[0], SHIPPED_ESTIMATOR[1]),
    }


@dataclass(frozen=True)
class ModelRecord:
    """One ``lor.model_versions`` row as ``lor models list`` shows it."""

    id: int
    kind: str
    family_name: str
    family_version: str
    artifact_sha256: str
    artifact_uri: str
    created_at: datetime


@dataclass(frozen=True)
class ArtifactCheck:
    """The outcome of re-hashing one registered artifact (``error`` None: it verifies)."""

    record: ModelRecord
    folder: Path | None
    error: str | None


class ModelManager:
    """Model versions: register artifacts into the model store, list, locate, verify, load.

    Owned by :class:`lor.db.registry.Registry`; methods that take a connection run inside
    the caller's transaction.
    """

    def __init__(self, engine: Engine, store: ModelStore) -> None:
        self.engine = engine
        self.store = store

    def get(self, conn: Connection, version_id: int) -> Any:
        return model_version(conn, version_id)

    def records(self) -> list[ModelRecord]:
        """Every registered model version, oldest first."""
        t = ModelVersion.__table__
        columns = [getattr(t.c, f) for f in ModelRecord.__dataclass_fields__]
        with self.engine.connect() as conn:
            rows = conn.execute(select(*columns).order_by(t.c.id)).all()
        return [ModelRecord(*row) for row in rows]

    def locate(self, uri: str, sha256: str) -> Path:
        """The folder of a registered artifact: the store, a shipped copy, or a legacy path."""
        fallbacks = [folder for folder, _ in shipped_artifacts().values()]
        return self.store.locate(uri, sha256, fallbacks)

    def load(self, conn: Connection, version_id: int, kind: str) -> Any:
        """The model of a version, built only after its artifact's sha256 verifies."""
        row = model_version(conn, version_id)
        if row.kind != kind:
            raise NotFoundError(f"model version {version_id} is an {row.kind}, not an {kind}")
        folder = self.locate(row.artifact_uri, row.artifact_sha256)
        if kind == "emulator":
            from lor.emulators.registry import load_emulator

            return load_emulator(folder, row.artifact_sha256)
        from lor.inference.registry import load_estimator

        return load_estimator(folder, row.artifact_sha256)

    def run_models(self, conn: Connection, run: Run) -> tuple[AmortizedEstimator, Emulator]:
        """A run's estimator and emulator, each loaded only after its sha256 verifies.

        Both are required: the estimator makes posteriors, the emulator checks their fit.
        """

        if run.estimator_version_id is None:
            raise NoProcessorError(f"run {run.name} (id {run.id}) pins no estimator version")
        estimator = self.load(conn, run.estimator_version_id, "estimator")
        if run.emulator_version_id is None:
            raise NoProcessorError(f"run {run.name} pins no emulator: the OOD fit check needs one")
        return estimator, self.load(conn, run.emulator_version_id, "emulator")

    def kind_of(self, folder: Path) -> str:
        """Whether an artifact folder holds an emulator or an estimator (by its spec's family)."""
        import json

        from lor.emulators.registry import FAMILIES as EMULATOR_FAMILIES
        from lor.inference.registry import FAMILIES as ESTIMATOR_FAMILIES

        spec_path = Path(folder) / "spec.json"
        try:
            spec = json.loads(spec_path.read_text())
        except (OSError, ValueError) as exc:
            raise ArtifactError(f"no readable model artifact at {folder}: {exc}") from exc
        key = (spec.get("family"), spec.get("family_version"))
        if key in EMULATOR_FAMILIES:
            return "emulator"
        if key in ESTIMATOR_FAMILIES:
            return "estimator"
        known = sorted(EMULATOR_FAMILIES) + sorted(ESTIMATOR_FAMILIES)
        raise ArtifactError(f"{folder}: family {key} is no emulator or estimator family {known}")

    def register(self, folder: Path, expected_sha256: str | None = None) -> tuple[str, int]:
        """Copy a trained artifact into the store and record it; returns ``(kind, id)``."""
        from lor.emulators.registry import register_emulator
        from lor.inference.registry import register_estimator

        folder = Path(folder)
        kind = self.kind_of(folder)
        sha = self.store.add(folder, expected_sha256)
        register = register_emulator if kind == "emulator" else register_estimator
        return kind, register(self.engine, self.store.path(sha), sha)

    def register_shipped(self) -> dict[str, int]:
        """Register the artifacts shipped in the package (pinned hashes); ids by kind."""
        return {
            kind: self.register(folder, sha)[1]
            for kind, (folder, sha) in shipped_artifacts().items()
        }

    def verify(self) -> list[ArtifactCheck]:
        """Re-hash every registered artifact (spec and weights) where it is found."""
        from lor.artifacts import read_artifact

        checks = []
        for record in self.records():
            folder = None
            try:
                folder = self.locate(record.artifact_uri, record.artifact_sha256)
                read_artifact(folder, record.artifact_sha256)
                checks.append(ArtifactCheck(record, folder, None))
            except ArtifactError as exc:
                checks.append(ArtifactCheck(record, folder, str(exc)))
        return checks
