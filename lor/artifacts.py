"""Model artifacts: a JSON spec plus a weights file, pinned by sha256, never pickled.

An artifact is a folder with ``spec.json`` and ``weights.npz``. The spec records the weights
file's sha256, so the one hash of ``spec.json`` (stored in ``lor.model_versions`` and in
:data:`lor.emulators.shipped`) pins everything. Loading verifies both hashes before parsing
anything, and reads the arrays with ``allow_pickle=False``.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from lor.errors import ArtifactError

SPEC_FILE = "spec.json"
WEIGHTS_FILE = "weights.npz"


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_artifact(folder: Path, spec: dict[str, Any], arrays: dict[str, np.ndarray]) -> str:
    """Write ``spec`` and ``arrays`` to ``folder``; return the sha256 that pins them."""
    folder.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    np.savez(buffer, **{k: np.asarray(v) for k, v in arrays.items()})
    weights = buffer.getvalue()
    (folder / WEIGHTS_FILE).write_bytes(weights)
    spec = {**spec, "weights_file": WEIGHTS_FILE, "weights_sha256": sha256_bytes(weights)}
    text = json.dumps(spec, indent=1, sort_keys=True).encode()
    (folder / SPEC_FILE).write_bytes(text)
    return sha256_bytes(text)


def read_artifact(
    folder: Path, expected_sha256: str
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Verify and read an artifact; any mismatch or damage raises :class:`ArtifactError`."""
    folder = Path(folder)
    spec_path = folder / SPEC_FILE
    if not spec_path.is_file():
        raise ArtifactError(f"no model artifact at {folder} (missing {SPEC_FILE})")
    text = spec_path.read_bytes()
    actual = sha256_bytes(text)
    if actual != expected_sha256:
        raise ArtifactError(
            f"artifact {folder} fails its sha256 check: expected {expected_sha256}, got {actual}; "
            "refusing to load a modified or corrupted model"
        )
    try:
        spec = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"artifact spec {spec_path} is not JSON: {exc}") from exc
    weights_path = folder / spec.get("weights_file", WEIGHTS_FILE)
    if not weights_path.is_file():
        raise ArtifactError(f"artifact {folder} lacks its weights file {weights_path.name}")
    weights = weights_path.read_bytes()
    if sha256_bytes(weights) != spec.get("weights_sha256"):
        raise ArtifactError(f"weights {weights_path} fail their sha256 check: refusing to load")
    try:
        with np.load(io.BytesIO(weights), allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except Exception as exc:  # a damaged zip raises many kinds of errors
        raise ArtifactError(f"weights {weights_path} are unreadable: {exc}") from exc
    return spec, arrays


def load_from_families(
    folder: Path, sha256: str, families: dict[tuple[str, str], Any], kind: str
) -> Any:
    """Verify an artifact, then build it with the class its spec's family + version names."""
    spec, arrays = read_artifact(folder, sha256)
    key = (spec.get("family"), spec.get("family_version"))
    if key not in families:
        raise ArtifactError(f"{folder}: unknown {kind} family {key}; known: {sorted(families)}")
    return families[key](spec, arrays)


def artifact_sha256(folder: Path) -> str:
    """The sha256 of an artifact's spec (what registries pin)."""
    return sha256_bytes((Path(folder) / SPEC_FILE).read_bytes())
