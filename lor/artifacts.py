"""Model artifacts: a JSON spec plus a weights file, pinned by sha256, never pickled.

An artifact is a folder with ``spec.json`` and ``weights.npz``. The spec records the weights
file's sha256, so the one hash of ``spec.json`` (stored in ``lor.model_versions`` and in the
registries' ``SHIPPED_*`` pins) pins everything. Loading verifies both hashes before parsing
anything, and reads the arrays with ``allow_pickle=False``.

Registered artifacts are copied into a :class:`ModelStore`, one folder per spec sha256, and
``lor.model_versions.artifact_uri`` holds that content address (``sha256:<hex>``), not a
host path: a moved checkout or another machine with the same store finds the same model.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from lor.errors import ArtifactError, ConfigError

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


SHIPPED_MODELS_DIR = Path(__file__).resolve().parent / "data" / "models"
"""Where the trained artifacts shipped in the package live, one folder per artifact name."""


class FamilyRegistry:
    """One kind of artifact (emulator, estimator): its families by ``(family,
    family_version)`` and its shipped default per band set, pinned by spec sha256.

    Each family class has ``family``, ``family_version`` and builds itself as
    ``cls(spec, arrays)`` from a verified artifact; the class is chosen from the spec, never
    by unpickling. A new family is one module plus its class in the registry's tuple.
    """

    def __init__(
        self, kind: str, classes: tuple[Any, ...], shipped: dict[str, tuple[str, str]]
    ) -> None:
        self.kind = kind
        self.families: dict[tuple[str, str], Any] = {
            (cls.family, cls.family_version): cls for cls in classes
        }
        self.shipped = shipped

    def load(self, folder: Path, sha256: str) -> Any:
        """Verify an artifact, then build it with the class its spec's family + version names."""
        spec, arrays = read_artifact(folder, sha256)
        key = (spec.get("family"), spec.get("family_version"))
        if key not in self.families:
            raise ArtifactError(
                f"{folder}: unknown {self.kind} family {key}; known: {sorted(self.families)}"
            )
        return self.families[key](spec, arrays)

    def load_shipped(self, band_set: str) -> Any:
        """The shipped artifact of ``band_set``."""
        if band_set not in self.shipped:
            raise ConfigError(
                f"no shipped {self.kind} for band set {band_set!r}; shipped: {sorted(self.shipped)}"
            )
        name, sha = self.shipped[band_set]
        return self.load(SHIPPED_MODELS_DIR / name, sha)


def artifact_sha256(folder: Path) -> str:
    """The sha256 of an artifact's spec (what registries pin)."""
    return sha256_bytes((Path(folder) / SPEC_FILE).read_bytes())


#: Prefix of a content-addressed ``artifact_uri``.
CONTENT_SCHEME = "sha256:"


def content_uri(sha256: str) -> str:
    """The ``artifact_uri`` of an artifact in a model store: its content address."""
    return CONTENT_SCHEME + sha256


class ModelStore:
    """Artifacts addressed by content: ``root/<spec sha256>/`` holds ``spec.json`` and the
    weights file it names, copied in only after both hashes verify.

    Adding is idempotent and atomic (copied to a hidden folder, then renamed), so readers
    never see half an artifact and two processes adding the same model agree.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"ModelStore({str(self.root)!r})"

    def path(self, sha256: str) -> Path:
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise ArtifactError(f"not a sha256 content address: {sha256!r}")
        return self.root / sha256

    def __contains__(self, sha256: str) -> bool:
        return (self.path(sha256) / SPEC_FILE).is_file()

    def shas(self) -> list[str]:
        """Every content address in the store (sorted)."""
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and len(p.name) == 64)

    def add(self, folder: Path, expected_sha256: str | None = None) -> str:
        """Verify the artifact in ``folder`` and copy it in; returns its sha256.

        A store entry that exists but fails verification (damaged) is replaced.
        """
        folder = Path(folder)
        if not (folder / SPEC_FILE).is_file():
            raise ArtifactError(f"no model artifact at {folder} (missing {SPEC_FILE})")
        sha = artifact_sha256(folder)
        if expected_sha256 is not None and sha != expected_sha256:
            raise ArtifactError(
                f"artifact {folder} has sha256 {sha}, expected {expected_sha256}: refusing it"
            )
        spec, _ = read_artifact(folder, sha)  # both hashes, and the weights parse
        dest = self.path(sha)
        if sha in self:
            try:
                read_artifact(dest, sha)
                return sha
            except ArtifactError:
                shutil.rmtree(dest)
        self.root.mkdir(parents=True, exist_ok=True)
        partial = self.root / f".{sha}.{uuid.uuid4().hex}.partial"
        partial.mkdir()
        try:
            for name in (SPEC_FILE, spec.get("weights_file", WEIGHTS_FILE)):
                shutil.copyfile(folder / name, partial / name)
            try:
                os.rename(partial, dest)
            except OSError:  # another process put the same content there first
                if sha not in self:
                    raise
        finally:
            if partial.exists():
                shutil.rmtree(partial)
        return sha

    def verify(self, sha256: str) -> None:
        """Re-hash a stored artifact (spec and weights); :class:`ArtifactError` on damage."""
        read_artifact(self.path(sha256), sha256)

    def locate(self, uri: str, sha256: str, fallbacks: Iterable[Path] = ()) -> Path:
        """The folder that holds artifact ``sha256`` as registered under ``uri``.

        The store first; then, for a row registered before the store existed, the absolute
        path its ``uri`` names; then ``fallbacks`` (e.g. the artifacts shipped in the package,
        wherever it is installed now). Only a folder whose spec hashes to ``sha256`` is
        returned, so an old path that now holds something else is never used.
        """
        if sha256 in self:
            return self.path(sha256)
        legacy = [] if uri.startswith(CONTENT_SCHEME) else [Path(uri)]
        for candidate in _existing(legacy + list(fallbacks)):
            if artifact_sha256(candidate) == sha256:
                return candidate
        where = f"the model store {self.root}" + ("" if not legacy else f" or at {uri}")
        raise ArtifactError(
            f"artifact sha256:{sha256} is not in {where}: register it with "
            "`lor models register DIR` (or `lor models register --shipped`)"
        )


def _existing(folders: list[Path]) -> Iterator[Path]:
    for folder in folders:
        if (Path(folder) / SPEC_FILE).is_file():
            yield Path(folder)
