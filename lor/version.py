"""The code version recorded in provenance: package version plus the git commit when known."""

from __future__ import annotations

import subprocess
from functools import lru_cache
from pathlib import Path

import lor


@lru_cache(maxsize=1)
def code_version() -> str:
    """``0.1.0+g<commit>[.dirty]`` inside a git checkout, else the package version."""
    root = Path(lor.__file__).resolve().parents[1]
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()  # fmt: skip
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return lor.__version__
    return f"{lor.__version__}+g{commit}" + (".dirty" if dirty else "")
