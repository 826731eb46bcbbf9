"""The explicit registry of posterior representations.

Readers rebuild a representation from the ``representation_name`` and
``representation_version`` stamped on every stored row plus its configuration (e.g. the
model version's box). The table is built by one function, not by import-time
self-registration, so what exists is visible in one place and importing a module never
changes it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lor.posteriors.base import PosteriorRepresentation, RepresentationError
from lor.posteriors.gmm_flow import GaussianMixtureFlow

Factory = Callable[..., PosteriorRepresentation]


def representations() -> dict[tuple[str, str], Factory]:
    """Every known representation, keyed by ``(name, version)``."""
    return {
        (GaussianMixtureFlow.name, GaussianMixtureFlow.version): GaussianMixtureFlow,
    }


def get_representation(name: str, version: str, **config: Any) -> PosteriorRepresentation:
    """Build the representation stored as ``(name, version)`` with its configuration.

    Raises
    ------
    RepresentationError
        If no such representation exists, or the configuration does not fit it.
    """
    table = representations()
    factory = table.get((name, str(version)))
    if factory is None:
        known = ", ".join(f"{n} v{v}" for n, v in sorted(table))
        raise RepresentationError(
            f"unknown posterior representation {name!r} version {version!r}; known: {known}"
        )
    try:
        return factory(**config)
    except TypeError as exc:
        raise RepresentationError(f"bad configuration for {name} v{version}: {exc}") from exc
