"""What the pipeline needs from a photometry emulator, declared once.

An emulator maps SPS parameters ``(N, D)`` (columns in ``param_names`` order) to AB
magnitudes ``(N, B)`` (columns in ``band_names`` order). Every family is one module with one
class satisfying :class:`Emulator`, built as ``cls(spec, arrays)`` from a verified artifact
(:func:`lor.artifacts.read_artifact`), and one line in
:data:`lor.emulators.registry.FAMILIES`. Callers type to this protocol, never to a family's
class, so they read nothing a family does not declare here.

Who reads what: inference checks the posterior-predictive fit with :meth:`Emulator.fluxes_njy`
inside ``box_lo``/``box_hi`` (:mod:`lor.inference.amortized`), the MCMC likelihood calls
:meth:`Emulator.magnitudes_tf` inside a TF graph (:mod:`lor.inference.likelihood`), the
model error reads ``spec["metrics"]["rms_mag"]`` (:mod:`lor.inference.model_error`),
registration reads ``family``, ``family_version``, ``band_names`` and
``spec["param_names"]``/``spec["training_box"]`` (:mod:`lor.db.model_store`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

import numpy as np

if TYPE_CHECKING:
    import tensorflow as tf


@runtime_checkable
class Emulator(Protocol):
    """A trained photometry emulator (see the module docstring for who reads what).

    The spec must carry ``family``, ``family_version``, ``name``, ``param_names``,
    ``band_names`` and ``training_box`` (``{"low": [...], "high": [...]}`` in
    ``param_names`` order), and ``metrics["rms_mag"]`` (``{band: held-out rms}``) once
    trained: the model error and the contract tests read them.
    """

    family: ClassVar[str]
    family_version: ClassVar[str]
    spec: dict[str, Any]
    param_names: list[str]
    band_names: list[str]
    box_lo: np.ndarray
    """Lower edges ``(D,)`` of the training box, float64 (``log_mstar`` included, unused)."""
    box_hi: np.ndarray
    """Upper edges ``(D,)`` of the training box."""

    def predict(self, params: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Magnitudes ``(N, B)`` and the in-training-box mask ``(N,)``; NaN input raises
        :class:`~lor.errors.ParameterError`."""
        ...

    def magnitudes(self, params: np.ndarray, allow_extrapolation: bool = False) -> np.ndarray:
        """AB magnitudes ``(N, B)``; rows outside the training box raise
        :class:`~lor.errors.ParameterError` unless ``allow_extrapolation``."""
        ...

    def fluxes_njy(self, params: np.ndarray, allow_extrapolation: bool = False) -> np.ndarray:
        """Fluxes ``(N, B)`` in nJy, float64 (as :meth:`magnitudes`)."""
        ...

    def magnitudes_tf(self, theta: tf.Tensor) -> tf.Tensor:
        """Magnitudes of float32 parameters ``(N, D)`` as a differentiable TF op, unchecked
        (for likelihoods inside traced graphs)."""
        ...

    def in_training_box(self, params: np.ndarray) -> np.ndarray:
        """``(N,)`` bool: the row lies inside the training box (``log_mstar`` excepted: mass
        is an exact magnitude shift)."""
        ...

    def band_indices(self, bands: Sequence[str]) -> list[int]:
        """Columns of ``bands``; unknown names raise :class:`~lor.errors.UnknownBandError`."""
        ...

    def save(self, folder: Path, extra_spec: dict[str, Any] | None = None) -> str:
        """Write the artifact (spec + weights) to ``folder``; returns the spec's sha256, and
        the registry rebuilds an equal emulator from it."""
        ...
