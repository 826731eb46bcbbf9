"""Estimator families by name + version, and the shipped default estimator (hash-pinned)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine

from lor.artifacts import read_artifact
from lor.errors import ArtifactError
from lor.inference.estimator import AmortizedEstimator

FAMILIES = {("npe_mlp", "1"): AmortizedEstimator}

SHIPPED_DIR = Path(__file__).resolve().parents[1] / "data" / "models"
#: The trained default estimator shipped in the repo, pinned by the sha256 of its spec.
SHIPPED_ESTIMATOR = (
    "npe-lsst-ugrizy",
    "c33730c11bc73301db7635a73c35435930f80478f983099f84d106e4f8f6f7c4",
)


def load_estimator(folder: Path, sha256: str) -> AmortizedEstimator:
    spec, arrays = read_artifact(folder, sha256)
    key = (spec.get("family"), spec.get("family_version"))
    if key not in FAMILIES:
        raise ArtifactError(f"{folder}: unknown estimator family {key}; known: {sorted(FAMILIES)}")
    return FAMILIES[key](spec, arrays)


def load_shipped_estimator() -> AmortizedEstimator:
    name, sha = SHIPPED_ESTIMATOR
    return load_estimator(SHIPPED_DIR / name, sha)


def register_estimator(engine: Engine, folder: Path, sha256: str) -> int:
    """Record a verified estimator artifact in ``lor.model_versions``; returns its id."""
    from lor.db.catalog_store import default_filter_names, get_or_create_band_set
    from lor.db.model_store import register_model_version

    estimator = load_estimator(folder, sha256)
    spec = estimator.spec
    bands = estimator.band_names
    with engine.begin() as conn:
        band_set = get_or_create_band_set(
            conn,
            "lsst_ugrizy" if bands == list("ugrizy") else "custom_" + "".join(bands),
            bands,
            default_filter_names(bands),
        )
        return register_model_version(
            conn,
            kind="estimator",
            family_name=estimator.family,
            family_version=estimator.family_version,
            artifact_sha256=sha256,
            artifact_uri=str(Path(folder).resolve()),
            band_set_id=band_set,
            param_names=spec["param_names"],
            training_ranges={
                "years": spec["training"]["years"],
                "representation": spec["representation"],
            },
            metrics=spec.get("metrics", {}),
            config=spec.get("config", {}),
        )
