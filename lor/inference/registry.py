"""Estimator families by name + version, and the shipped default estimator (hash-pinned)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine

from lor.artifacts import load_from_families
from lor.inference.estimator import AmortizedEstimator

FAMILIES = {("npe_mlp", "1"): AmortizedEstimator}

SHIPPED_DIR = Path(__file__).resolve().parents[1] / "data" / "models"
#: The trained default estimator shipped in the repo, pinned by the sha256 of its spec.
SHIPPED_ESTIMATOR = (
    "npe-lsst-ugrizy",
    "b203f689c484080bdb75493c1a151052c55652b5e8e9a4f00407a0bffd0ab054",
)


def load_estimator(folder: Path, sha256: str) -> AmortizedEstimator:
    """Verify an artifact's hash, then build the estimator its spec names."""
    return load_from_families(folder, sha256, FAMILIES, "estimator")


def load_shipped_estimator() -> AmortizedEstimator:
    name, sha = SHIPPED_ESTIMATOR
    return load_estimator(SHIPPED_DIR / name, sha)


def register_estimator(engine: Engine, folder: Path, sha256: str) -> int:
    """Record a verified estimator artifact in ``lor.model_versions``; returns its id."""
    from lor.db.model_store import register_trained_model

    estimator = load_estimator(folder, sha256)
    training = estimator.spec["training"]
    ranges = {"years": training["years"], "representation": estimator.spec["representation"]}
    return register_trained_model(engine, "estimator", estimator, folder, sha256, ranges)
