"""Emulator families by name + version, the shipped default, and database registration.

One :class:`~lor.artifacts.FamilyRegistry` maps ``(family, family_version)`` to the class
that builds an :class:`~lor.emulators.protocol.Emulator` from a verified artifact's spec and
arrays. A new family is one module plus its class in :data:`FAMILY_CLASSES`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from lor.artifacts import SHIPPED_MODELS_DIR, FamilyRegistry
from lor.bands import DEFAULT_BAND_SET
from lor.emulators.protocol import Emulator
from lor.emulators.restframe import RestframeEmulator
from lor.emulators.speculator import SpeculatorEmulator
from lor.errors import ConfigError

FAMILY_CLASSES: tuple[Any, ...] = (SpeculatorEmulator, RestframeEmulator)
"""Every emulator family: each class has ``family``, ``family_version`` and builds itself as
``cls(spec, arrays)``."""

SHIPPED_DIR = SHIPPED_MODELS_DIR
#: The trained default emulator shipped in the repo, pinned by the sha256 of its spec.
SHIPPED_EMULATOR = (
    "speculator-lsst-ugrizy",
    "4098149f1ca2d783c7a056973dd11a515dee8ea0c804d912cec108bbcc7dcf50",
)
SHIPPED_EMULATORS: dict[str, tuple[str, str]] = {
    "lsst": SHIPPED_EMULATOR,
    "lsst-euclid": (
        "speculator-lsst-euclid",
        "dbbd6ec012a82bfda1dad71ecee3f4492eb244d64c1db4fc5f9d163d4ea091cc",
    ),
}
"""The shipped emulator of each shipped band set (:mod:`lor.bands`), pinned the same way."""

REGISTRY = FamilyRegistry("emulator", FAMILY_CLASSES, SHIPPED_EMULATORS)
FAMILIES: dict[tuple[str, str], Any] = REGISTRY.families
"""``(family, family_version)`` -> class."""


OTHER_SHIPPED_EMULATORS: dict[str, str] = {
    "restframe-lsst-ugrizy": "a84a12ec81e074278a9a2d3e6225dbf2b814f56924e5a9b2a0b60a7c1c5c6a7c",
}
"""Shipped emulators that are not their band set's default, by name -> spec sha256 (the
rest-frame track emulator of issue #13: benchmarked beside the default, not used by
processing or estimator training unless the default is switched)."""


def named_emulator_pin(name: str) -> tuple[str, str]:
    """``(name, sha256)`` of a shipped emulator artifact, default or not."""
    pins = dict(SHIPPED_EMULATORS.values()) | OTHER_SHIPPED_EMULATORS
    if name not in pins:
        raise ConfigError(f"no shipped emulator named {name!r}; shipped: {sorted(pins)}")
    return name, pins[name]


def load_emulator(folder: Path, sha256: str) -> Emulator:
    """Verify an artifact's hash, then build the emulator its spec names."""
    emulator: Emulator = REGISTRY.load(folder, sha256)
    return emulator


def load_shipped_emulator(band_set: str = DEFAULT_BAND_SET) -> Emulator:
    """The shipped emulator of ``band_set`` (default: LSST ugrizy)."""
    emulator: Emulator = REGISTRY.load_shipped(band_set)
    return emulator


def register_emulator(engine: Engine, folder: Path, sha256: str) -> int:
    """Record a verified emulator artifact in ``lor.model_versions``; returns its id."""
    from lor.db.model_store import register_trained_model

    emulator = load_emulator(folder, sha256)
    ranges = emulator.spec["training_box"] | {"stats": emulator.spec.get("training_stats", {})}
    return register_trained_model(engine, "emulator", emulator, folder, sha256, ranges)
