"""Emulator families by name + version, the shipped default, and database registration.

One explicit table maps ``(family, version)`` to a loader; artifacts name their family in
their spec, and the loader is chosen from that (never by unpickling).
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine

from lor.artifacts import load_from_families
from lor.emulators.speculator import SpeculatorEmulator

FAMILIES = {("speculator", "1"): SpeculatorEmulator}

SHIPPED_DIR = Path(__file__).resolve().parents[1] / "data" / "models"
#: The trained default emulator shipped in the repo, pinned by the sha256 of its spec.
SHIPPED_EMULATOR = (
    "speculator-lsst-ugrizy",
    "4098149f1ca2d783c7a056973dd11a515dee8ea0c804d912cec108bbcc7dcf50",
)


def load_emulator(folder: Path, sha256: str) -> SpeculatorEmulator:
    """Verify an artifact's hash, then build the emulator its spec names."""
    return load_from_families(folder, sha256, FAMILIES, "emulator")


def load_shipped_emulator() -> SpeculatorEmulator:
    name, sha = SHIPPED_EMULATOR
    return load_emulator(SHIPPED_DIR / name, sha)


def register_emulator(engine: Engine, folder: Path, sha256: str) -> int:
    """Record a verified emulator artifact in ``lor.model_versions``; returns its id."""
    from lor.db.model_store import register_trained_model

    emulator = load_emulator(folder, sha256)
    ranges = emulator.spec["training_box"] | {"stats": emulator.spec.get("training_stats", {})}
    return register_trained_model(engine, "emulator", emulator, folder, sha256, ranges)
