"""Estimator families by name + version, the shipped default estimator (hash-pinned), and
database registration.

One :class:`~lor.artifacts.FamilyRegistry` maps ``(family, family_version)`` to the class
that builds an :class:`~lor.inference.protocol.Estimator` from a verified artifact's spec and
arrays. A new family is one module plus its class in :data:`FAMILY_CLASSES`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from lor.artifacts import SHIPPED_MODELS_DIR, FamilyRegistry
from lor.bands import DEFAULT_BAND_SET
from lor.inference.estimator import AmortizedEstimator
from lor.inference.protocol import Estimator

FAMILY_CLASSES: tuple[Any, ...] = (AmortizedEstimator,)
"""Every estimator family: each class has ``family``, ``family_version`` and builds itself
as ``cls(spec, arrays)``."""

SHIPPED_DIR = SHIPPED_MODELS_DIR
#: The trained default estimator shipped in the repo, pinned by the sha256 of its spec.
SHIPPED_ESTIMATOR = (
    "npe-lsst-ugrizy",
    "b203f689c484080bdb75493c1a151052c55652b5e8e9a4f00407a0bffd0ab054",
)
SHIPPED_ESTIMATORS: dict[str, tuple[str, str]] = {
    "lsst": SHIPPED_ESTIMATOR,
    "lsst-euclid": (
        "npe-lsst-euclid",
        "b9d2beab1fd1d50acc80a93628509881b5255717c301b8132a8b5e75429d15d8",
    ),
}
"""The shipped estimator of each shipped band set (:mod:`lor.bands`), pinned the same way."""

REGISTRY = FamilyRegistry("estimator", FAMILY_CLASSES, SHIPPED_ESTIMATORS)
FAMILIES: dict[tuple[str, str], Any] = REGISTRY.families
"""``(family, family_version)`` -> class."""


def load_estimator(folder: Path, sha256: str) -> Estimator:
    """Verify an artifact's hash, then build the estimator its spec names."""
    estimator: Estimator = REGISTRY.load(folder, sha256)
    return estimator


def load_shipped_estimator(band_set: str = DEFAULT_BAND_SET) -> Estimator:
    """The shipped estimator of ``band_set`` (default: LSST ugrizy)."""
    estimator: Estimator = REGISTRY.load_shipped(band_set)
    return estimator


def register_estimator(engine: Engine, folder: Path, sha256: str) -> int:
    """Record a verified estimator artifact in ``lor.model_versions``; returns its id."""
    from lor.db.model_store import register_trained_model

    estimator = load_estimator(folder, sha256)
    training = estimator.spec["training"]
    ranges = {"years": training["years"], "representation": estimator.spec["representation"]}
    return register_trained_model(engine, "estimator", estimator, folder, sha256, ranges)
