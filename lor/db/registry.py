"""The database façade: one :class:`Registry` per engine owns the store's managers.

Modelled on daf_butler's registry over small managers: callers outside ``lor/db`` ask the
registry's managers -- ``models``, ``priors``, ``calibrations``, ``posteriors`` -- for what
they need (a run's verified models, a prior rebuilt losslessly, calibration terms, stored
posteriors) instead of writing SQL. Managers that read inside a caller's transaction take
its connection; the registry itself holds only the engine and the model store, both passed
in by the entry points.
"""

from __future__ import annotations

from sqlalchemy import Engine

from lor.artifacts import ModelStore
from lor.db.calibration_store import CalibrationManager
from lor.db.model_store import ModelManager, configured_store
from lor.db.posterior_store import PosteriorManager
from lor.db.prior_store import PriorManager


class Registry:
    """Managers over one database (``engine``) and one model store."""

    def __init__(self, engine: Engine, model_store: ModelStore | None = None) -> None:
        self.engine = engine
        self.model_store = model_store if model_store is not None else configured_store()
        self.models = ModelManager(engine, self.model_store)
        self.priors = PriorManager(engine)
        self.calibrations = CalibrationManager(engine)
        self.posteriors = PosteriorManager(engine)

    def __repr__(self) -> str:
        return f"Registry({self.engine.url.render_as_string()!r}, {self.model_store!r})"
