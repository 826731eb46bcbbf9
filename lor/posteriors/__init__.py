"""Posterior representations: compressed, stored per-object posteriors over SPS parameters.

One module per representation behind :class:`PosteriorRepresentation`; readers rebuild one
from its stored name and version with :func:`get_representation`.
"""

from __future__ import annotations

from lor.posteriors.base import (
    SUMMARY_COLUMNS,
    PosteriorRepresentation,
    RepresentationError,
)
from lor.posteriors.gmm_flow import GaussianMixtureFlow
from lor.posteriors.registry import get_representation, representations

__all__ = [
    "SUMMARY_COLUMNS",
    "GaussianMixtureFlow",
    "PosteriorRepresentation",
    "RepresentationError",
    "get_representation",
    "representations",
]
