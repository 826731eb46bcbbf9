"""``lor calibrate``: fit prior hyperparameters to a run's stored posteriors and store the
result as a new prior version (parent: the run's prior), ready for ``lor reprocess``."""

from __future__ import annotations

from typing import Any

import numpy as np
from sqlalchemy import Engine, text

from lor.db.model_store import register_prior_version
from lor.hierarchy.calibrate import HyperparameterFit, fit_hyperparameters
from lor.pipeline.amortized_processor import load_prior, load_run_models
from lor.pipeline.runs import get_run
from lor.version import code_version

METHOD = "hierarchical-importance-sampling"


def stored_params(engine: Engine, run_id: int, tracts: list[int] | None = None) -> np.ndarray:
    """The run's stored posterior parameters (rows with params), optionally of some tracts."""
    sql = "SELECT params FROM lor.run_posteriors(:r) WHERE params IS NOT NULL"
    args: dict[str, Any] = {"r": run_id}
    if tracts:
        sql += " AND tract_id = ANY(:t)"
        args["t"] = list(tracts)
    with engine.connect() as conn:
        rows = conn.execute(text(sql), args).scalars().all()
    return np.asarray(rows, np.float32).reshape(len(rows), -1)


def calibrate_run(
    engine: Engine,
    run: int | str,
    free: list[str],
    name: str | None = None,
    tracts: list[int] | None = None,
    n_samples: int = 64,
    seed: int = 0,
) -> tuple[int, HyperparameterFit]:
    """Fit ``free`` hyperparameters to ``run``'s posteriors; store and return the prior version."""
    from lor.inference.amortized import PhotometryPosteriors

    found = get_run(engine, run)
    with engine.connect() as conn:
        estimator, emulator = load_run_models(conn, found)
        reference = load_prior(conn, found.prior_version_id)
    params = stored_params(engine, found.id, tracts)
    if not len(params):
        raise ValueError(f"run {found.name} has no stored posteriors to calibrate on")
    fit = fit_hyperparameters(
        PhotometryPosteriors(estimator, emulator), params, free, reference, n_samples, seed=seed
    )
    record = fit.prior(reference).as_record()
    provenance = fit.as_provenance() | {
        "fitted_on_run": found.id, "tracts": tracts or "all", "code_version": code_version(),
    }  # fmt: skip
    with engine.begin() as conn:
        prior_id = register_prior_version(
            conn, name or f"{found.name}-calibrated-prior", record, METHOD, provenance,
            parent_id=found.prior_version_id,
        )  # fmt: skip
    return prior_id, fit
