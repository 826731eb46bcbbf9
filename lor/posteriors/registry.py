"""The explicit registry of posterior representations.

Readers rebuild a representation from the ``representation_name`` and
``representation_version`` stamped on every stored row plus its configuration (e.g. the
model version's box). The table is built from one tuple of classes, not by import-time
self-registration, so what exists is visible in one place and importing a module never
changes it. A new representation is one module and one entry in
:data:`REPRESENTATION_CLASSES`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from lor.posteriors.base import PosteriorRepresentation, RepresentationError, SelfDescribing
from lor.posteriors.gmm_flow import GaussianMixtureFlow

Factory = Callable[..., PosteriorRepresentation]

REPRESENTATION_CLASSES: tuple[type[PosteriorRepresentation], ...] = (GaussianMixtureFlow,)
"""Every representation: each class has ``name`` and ``version`` and is built as
``cls(**config)`` from the configuration its :meth:`~PosteriorRepresentation.config` wrote."""


def representations() -> dict[tuple[str, str], Factory]:
    """Every known representation, keyed by ``(name, version)``."""
    table: dict[tuple[str, str], Factory] = {}
    for cls in REPRESENTATION_CLASSES:
        key = (cls.name, str(cls.version))
        if key in table:
            raise RepresentationError(f"two representations registered as {key}")
        table[key] = cls
    return table


def _factory(name: str, version: str) -> Factory:
    table = representations()
    factory = table.get((name, str(version)))
    if factory is None:
        known = ", ".join(f"{n} v{v}" for n, v in sorted(table))
        raise RepresentationError(
            f"unknown posterior representation {name!r} version {version!r}; known: {known}"
        )
    return factory


def get_representation(name: str, version: str, **config: Any) -> PosteriorRepresentation:
    """Build the representation stored as ``(name, version)`` with its configuration.

    Raises
    ------
    RepresentationError
        If no such representation exists, or the configuration does not fit it.
    """
    factory = _factory(name, version)
    try:
        return factory(**config)
    except TypeError as exc:
        raise RepresentationError(f"bad configuration for {name} v{version}: {exc}") from exc


def from_spec(spec: dict[str, Any]) -> PosteriorRepresentation:
    """The representation a stored record ``{"name", "version", "config"}`` names (an
    estimator spec's ``"representation"``, a model version's recorded one)."""
    try:
        name, version, config = spec["name"], spec["version"], spec["config"]
    except (KeyError, TypeError) as exc:
        raise RepresentationError(
            f"a representation record needs name, version and config; got {spec!r}"
        ) from exc
    return get_representation(name, str(version), **config)


def from_row(name: str, version: str, row: Sequence[float]) -> PosteriorRepresentation:
    """The representation that reads the redshift marginal of a stored ``row`` alone, for
    representations whose rows describe themselves (:class:`SelfDescribing`).

    Raises
    ------
    RepresentationError
        If the representation is unknown or its rows need a recorded configuration.
    """
    factory = _factory(name, version)
    if not isinstance(factory, SelfDescribing):
        raise RepresentationError(
            f"rows of {name} v{version} do not describe themselves: its configuration must "
            "be recorded with the model that wrote them"
        )
    return factory.from_header(row)
