"""A simulated survey for validating the hierarchical loop: tracts with injected per-band
zeropoint offsets and noise scales, objects drawn from a *true* population prior that differs
from the interim one the estimator was trained under."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lor.inference.prior import INTERIM_HYPERPARAMETERS, PopulationPrior
from lor.inference.simulate import simulate_catalog

TRUE_HYPERPARAMETER_SHIFT: dict[str, float] = {"z0": 0.72, "mass_mean": 9.85, "av_scale": 0.42}
"""The validation survey's true population differs from the interim prior in these."""


@dataclass
class SimulatedSurvey:
    tracts: np.ndarray  # (T,) tract ids
    zeropoint: np.ndarray  # (T, B) injected offsets, mag (catalog = true * 10**(-0.4 zp))
    noise_scale: np.ndarray  # (T, B) true scatter / reported error
    prior: PopulationPrior  # the true population prior
    tract_id: np.ndarray  # (N,)
    theta: np.ndarray  # (N, D) true parameters
    flux: np.ndarray  # (N, B) catalog fluxes, nJy
    flux_err: np.ndarray  # (N, B) reported errors, nJy


def simulate_survey(
    emulator,  # type: ignore[no-untyped-def]
    n_tracts: int = 6,
    per_tract: int = 1500,
    zp_max: float = 0.03,
    scale_range: tuple[float, float] = (0.9, 1.2),
    hyperparameters: dict[str, float] | None = None,
    first_tract: int = 7000,
    seed: int = 0,
) -> SimulatedSurvey:
    """Objects of ``n_tracts`` tracts at LSST 10-year depth, selected at i < 25.3 on the
    catalog (offset) fluxes; offsets uniform in ``+-zp_max``, scales in ``scale_range``."""
    rng = np.random.default_rng(seed)
    b = len(emulator.band_names)
    zp = rng.uniform(-zp_max, zp_max, (n_tracts, b))
    scale = rng.uniform(*scale_range, (n_tracts, b))
    hyper = dict(INTERIM_HYPERPARAMETERS) | (hyperparameters or TRUE_HYPERPARAMETER_SHIFT)
    prior = PopulationPrior(hyperparameters=hyper)
    parts = [
        simulate_catalog(
            per_tract,
            emulator,
            prior,
            seed=seed * 1000 + i,
            zeropoint_offset=zp[i],
            noise_scale=scale[i],
        )  # fmt: skip
        for i in range(n_tracts)
    ]
    tracts = first_tract + np.arange(n_tracts)
    return SimulatedSurvey(
        tracts=tracts,
        zeropoint=zp,
        noise_scale=scale,
        prior=prior,
        tract_id=np.repeat(tracts, per_tract),
        theta=np.concatenate([p.theta for p in parts]),
        flux=np.concatenate([p.flux for p in parts]),
        flux_err=np.concatenate([p.flux_err for p in parts]),
    )
