"""Emulator families by name + version, the shipped default, and database registration.

One explicit table maps ``(family, version)`` to a loader; artifacts name their family in
their spec, and the loader is chosen from that (never by unpickling).
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine

from lor.artifacts import read_artifact
from lor.emulators.speculator import SpeculatorEmulator
from lor.errors import ArtifactError

FAMILIES = {("speculator", "1"): SpeculatorEmulator}

SHIPPED_DIR = Path(__file__).resolve().parents[1] / "data" / "models"
#: The trained default emulator shipped in the repo, pinned by the sha256 of its spec.
SHIPPED_EMULATOR = (
    "speculator-lsst-ugrizy",
    "4098149f1ca2d783c7a056973dd11a515dee8ea0c804d912cec108bbcc7dcf50",
)


def load_emulator(folder: Path, sha256: str) -> SpeculatorEmulator:
    """Verify an artifact's hash, then build the emulator its spec names."""
    spec, arrays = read_artifact(folder, sha256)
    key = (spec.get("family"), spec.get("family_version"))
    if key not in FAMILIES:
        raise ArtifactError(f"{folder}: unknown emulator family {key}; known: {sorted(FAMILIES)}")
    return FAMILIES[key](spec, arrays)


def load_shipped_emulator() -> SpeculatorEmulator:
    name, sha = SHIPPED_EMULATOR
    return load_emulator(SHIPPED_DIR / name, sha)


def register_emulator(engine: Engine, folder: Path, sha256: str) -> int:
    """Record a verified emulator artifact in ``lor.model_versions``; returns its id."""
    from lor.db.catalog_store import default_filter_names, get_or_create_band_set
    from lor.db.model_store import register_model_version

    emulator = load_emulator(folder, sha256)
    spec = emulator.spec
    bands = emulator.band_names
    with engine.begin() as conn:
        band_set = get_or_create_band_set(
            conn,
            "lsst_ugrizy" if bands == list("ugrizy") else "custom_" + "".join(bands),
            bands,
            default_filter_names(bands),
        )
        return register_model_version(
            conn,
            kind="emulator",
            family_name=emulator.family,
            family_version=emulator.family_version,
            artifact_sha256=sha256,
            artifact_uri=str(Path(folder).resolve()),
            band_set_id=band_set,
            param_names=emulator.param_names,
            training_ranges=spec["training_box"] | {"stats": spec.get("training_stats", {})},
            metrics=spec.get("metrics", {}),
            config=spec.get("config", {}),
        )
