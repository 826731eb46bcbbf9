"""Posterior representations: compressed, stored per-object posteriors over SPS parameters.

One module per representation behind the protocols of :mod:`lor.posteriors.base`; readers
rebuild one from its stored name and version with :func:`get_representation`.
"""

from __future__ import annotations

from lor.posteriors.base import (
    SUMMARY_COLUMNS,
    AmortizedRepresentation,
    GaussianComponents,
    Marginal,
    PosteriorRepresentation,
    RepresentationError,
    SelfDescribing,
)
from lor.posteriors.gmm_flow import GaussianMixtureFlow
from lor.posteriors.registry import from_row, from_spec, get_representation, representations

__all__ = [
    "SUMMARY_COLUMNS",
    "AmortizedRepresentation",
    "GaussianComponents",
    "GaussianMixtureFlow",
    "Marginal",
    "PosteriorRepresentation",
    "RepresentationError",
    "SelfDescribing",
    "from_row",
    "from_spec",
    "get_representation",
    "representations",
]
