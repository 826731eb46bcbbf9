"""Prior families by (family, family_version): the one place a stored prior becomes a prior.

A ``lor.prior_versions`` row, an estimator spec's ``"prior"`` and a calibration's provenance
all store :meth:`PopulationPrior.as_record` (family, family version, hyperparameters,
selection, box); :func:`prior_from_record` rebuilds exactly that prior, so nothing of a
stored prior is dropped on the way back (the family picks the class, as an emulator's
family does in :mod:`lor.emulators.registry`).
"""

from __future__ import annotations

from typing import Any

from lor.errors import ConfigError
from lor.inference.flexible_prior import FlexiblePrior
from lor.inference.grounded_prior import GroundedPrior
from lor.inference.prior import PopulationPrior

PRIOR_FAMILIES: dict[tuple[str, str], type[PopulationPrior]] = {
    (PopulationPrior.family, PopulationPrior.family_version): PopulationPrior,
    (GroundedPrior.family, GroundedPrior.family_version): GroundedPrior,
    (FlexiblePrior.family, FlexiblePrior.family_version): FlexiblePrior,
}
"""Every prior family lor can rebuild from a stored record."""


def prior_from_record(record: dict[str, Any]) -> PopulationPrior:
    """The prior a stored record describes; its box and selection when it has them, the
    family's defaults otherwise (records written before the box was stored).

    Raises
    ------
    ConfigError
        For a family or version lor does not know, or hyperparameters that do not match
        the family.
    """
    key = (str(record.get("family")), str(record.get("family_version")))
    cls = PRIOR_FAMILIES.get(key)
    if cls is None:
        raise ConfigError(f"unknown prior family {key}; known: {sorted(PRIOR_FAMILIES)}")
    kwargs: dict[str, Any] = {
        "hyperparameters": {k: float(v) for k, v in record["hyperparameters"].items()}
    }
    if record.get("box"):
        kwargs["box"] = {k: (float(v[0]), float(v[1])) for k, v in record["box"].items()}
    if record.get("selection"):
        kwargs["selection"] = dict(record["selection"])
    return cls(**kwargs)


def estimator_prior(spec: dict[str, Any]) -> PopulationPrior:
    """The prior an estimator was trained under, from its spec's ``"prior"`` record."""
    if "prior" not in spec:
        raise ConfigError(f"estimator spec {spec.get('name')!r} records no training prior")
    return prior_from_record(spec["prior"])
