"""The model artifacts the contract tests run over: every folder under the shipped models
directory, grouped by the registry its spec's family belongs to."""

from __future__ import annotations

import json
from pathlib import Path

from lor.artifacts import SPEC_FILE, artifact_sha256
from lor.emulators import registry as emulator_registry
from lor.inference import registry as estimator_registry


def shipped_artifacts() -> list[tuple[Path, str, tuple[str, str]]]:
    """``(folder, spec sha256, (family, family_version))`` of every shipped artifact."""
    found = []
    for spec_path in sorted(emulator_registry.SHIPPED_DIR.glob(f"*/{SPEC_FILE}")):
        spec = json.loads(spec_path.read_text())
        key = (str(spec.get("family")), str(spec.get("family_version")))
        found.append((spec_path.parent, artifact_sha256(spec_path.parent), key))
    return found


def artifacts_of(families: dict[tuple[str, str], object]) -> list[tuple[Path, str]]:
    return [(folder, sha) for folder, sha, key in shipped_artifacts() if key in families]


EMULATOR_ARTIFACTS = artifacts_of(emulator_registry.FAMILIES)
ESTIMATOR_ARTIFACTS = artifacts_of(estimator_registry.FAMILIES)
