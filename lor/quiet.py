"""Keep TensorFlow's start-up noise away from users (``lor`` and the Celery workers).

TensorFlow 2.21 writes its start-up lines (oneDNN, "Could not find cuda drivers", "failed
call to cuInit", the XLA service banner) through absl before its log level is read, so
``TF_CPP_MIN_LOG_LEVEL`` alone does not hide the first ones. The entry points call
:func:`quiet_tensorflow_startup`, which sets ``TF_CPP_MIN_LOG_LEVEL=2`` (warnings and info
off; errors after start-up still show) unless the user set it, and installs an import hook:
when TensorFlow is first imported, whenever that is, stderr (file descriptor 2, where the C++
side writes) goes to /dev/null for the import and the first device query, and is restored
at once. Python exceptions raised meanwhile still propagate. ``TF_CPP_MIN_LOG_LEVEL=0``
turns all of this off.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import os
import sys
from collections.abc import Iterator, Sequence
from types import ModuleType
from typing import Any


@contextlib.contextmanager
def stderr_to_devnull() -> Iterator[None]:
    """Point file descriptor 2 at /dev/null for the block (C and C++ writers included)."""
    sys.stderr.flush()
    saved = os.dup(2)
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


class _QuietLoader(importlib.abc.Loader):
    """Wraps TensorFlow's own loader: its module is executed with stderr silenced."""

    def __init__(self, loader: Any) -> None:
        self.loader = loader

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self.loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        with stderr_to_devnull():
            self.loader.exec_module(module)
            module.config.list_physical_devices()  # platform start-up (cuInit) happens here


class _QuietTensorFlowImport(importlib.abc.MetaPathFinder):
    def find_spec(
        self, name: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if name != "tensorflow":
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader)
        return spec


def quiet_tensorflow_startup() -> None:
    """Silence TensorFlow's start-up lines in this process (see the module docstring)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if os.environ["TF_CPP_MIN_LOG_LEVEL"] == "0" or "tensorflow" in sys.modules:
        return
    if not any(isinstance(f, _QuietTensorFlowImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietTensorFlowImport())
