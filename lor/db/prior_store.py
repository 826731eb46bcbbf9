"""Prior-version slice of the store: a stored prior comes back as the prior that was stored.

A ``lor.prior_versions`` row keeps the family, family version, hyperparameters and selection
in columns and the box in its provenance; :meth:`PriorManager.load` hands all of them to
:func:`lor.inference.prior_registry.prior_from_record`, the prior-family registry, so no part
of a stored prior is dropped on the way back.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import Connection, Engine, select

from lor.db.model_store import register_prior_version
from lor.db.models import PriorVersion
from lor.errors import ConfigError, NotFoundError

if TYPE_CHECKING:
    from lor.inference.prior import PopulationPrior


class PriorManager:
    """Prior versions: register, read back losslessly, and their fitted uncertainty."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def register(
        self,
        conn: Connection,
        name: str,
        record: dict[str, Any],
        method: str,
        provenance: dict[str, Any],
        parent_id: int | None = None,
    ) -> int:
        """Store ``PopulationPrior.as_record()`` as a version (idempotent on name)."""
        return register_prior_version(conn, name, record, method, provenance, parent_id)

    def record(self, conn: Connection, prior_version_id: int) -> dict[str, Any]:
        """The stored record of a version: family, family_version, hyperparameters,
        selection and box (the shape :meth:`PopulationPrior.as_record` writes)."""
        columns = (PriorVersion.family, PriorVersion.family_version, PriorVersion.hyperparameters,
                   PriorVersion.selection, PriorVersion.provenance)  # fmt: skip
        row = conn.execute(
            select(*columns).where(PriorVersion.id == prior_version_id)
        ).one_or_none()
        if row is None:
            raise NotFoundError(f"no prior version {prior_version_id}")
        return {
            "family": row.family, "family_version": row.family_version,
            "hyperparameters": row.hyperparameters, "selection": row.selection,
            "box": (row.provenance or {}).get("box"),
        }  # fmt: skip

    def load(self, conn: Connection, prior_version_id: int | None) -> PopulationPrior:
        """The prior of a stored version (its family's class, hyperparameters, selection and
        box), or the interim prior when none is pinned."""
        from lor.inference.prior import PopulationPrior
        from lor.inference.prior_registry import prior_from_record

        if prior_version_id is None:
            return PopulationPrior()
        return prior_from_record(self.record(conn, prior_version_id))

    def fitted_uncertainty(
        self, conn: Connection, prior_version_id: int | None
    ) -> tuple[list[str], np.ndarray]:
        """The free hyperparameters of a version fitted by ``lor calibrate`` and their
        covariance, as its provenance records them; refused for versions made otherwise."""
        provenance = (
            conn.execute(
                select(PriorVersion.provenance).where(PriorVersion.id == prior_version_id)
            ).scalar_one_or_none()
            or {}
        )
        if "free" not in provenance or "covariance" not in provenance:
            raise ConfigError(
                f"prior version {prior_version_id} carries no fitted uncertainty (free "
                "hyperparameters and covariance from `lor calibrate`) to marginalize over"
            )
        return list(provenance["free"]), np.asarray(provenance["covariance"], np.float64)
