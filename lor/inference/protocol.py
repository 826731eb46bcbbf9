"""What the pipeline needs from an amortized posterior estimator, declared once.

An estimator maps an object's photometry to the stored parameters of its posterior in one
pass. Every family is one module with one class satisfying :class:`Estimator`, built as
``cls(spec, arrays)`` from a verified artifact, and one entry in
:data:`lor.inference.registry.FAMILY_CLASSES`; its posterior representation is built from
the spec's ``"representation"`` record through :func:`lor.posteriors.registry.from_spec`,
never chosen by the family's code.

Who reads what: :class:`lor.inference.amortized.PhotometryPosteriors` calls
:meth:`Estimator.input_features`, :meth:`Estimator.posterior_params`,
:meth:`Estimator.standardized` and reads ``band_names``, ``representation``, ``ood`` and
``spec["param_names"]``; the reweighter reads ``spec["prior"]`` (the training prior);
registration reads ``family``, ``family_version``, ``band_names``, ``spec["training"]`` and
``spec["representation"]`` (:mod:`lor.inference.registry`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np

from lor.posteriors.base import PosteriorRepresentation


@runtime_checkable
class Estimator(Protocol):
    """A trained amortized estimator (see the module docstring for who reads what).

    The spec must carry ``family``, ``family_version``, ``name``, ``band_names``,
    ``param_names``, ``representation`` (``{"name", "version", "config"}``), ``prior`` (the
    training prior's record, :meth:`lor.inference.prior.PopulationPrior.as_record`) and
    ``training`` (with ``years``).
    """

    family: ClassVar[str]
    family_version: ClassVar[str]
    spec: dict[str, Any]
    band_names: list[str]
    representation: PosteriorRepresentation
    """What :meth:`posterior_params` rows are; built from ``spec["representation"]``."""
    ood: dict[str, np.ndarray]
    """Out-of-distribution references: ``density_*`` arrays of the input density over
    standardized features, ``density_threshold``, ``chi2_threshold``, ``edge_threshold``
    (each optional)."""

    def input_features(
        self, flux: np.ndarray, flux_err: np.ndarray, missing: np.ndarray
    ) -> np.ndarray:
        """Network inputs ``(N, F)`` float32 from fluxes and errors ``(N, B)`` in nJy (any
        value where ``missing``, ``(N, B)`` bool)."""
        ...

    def standardized(self, features: np.ndarray) -> np.ndarray:
        """Features as the network and the input density see them (training mean and std)."""
        ...

    def posterior_params(self, features: np.ndarray) -> np.ndarray:
        """Stored representation parameters ``(N, P)`` float32, valid for every input row."""
        ...

    def save(self, folder: Path) -> str:
        """Write the artifact to ``folder``; returns the spec's sha256, from which the
        registry rebuilds an estimator with the same outputs."""
        ...
