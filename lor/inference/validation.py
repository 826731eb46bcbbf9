"""Photo-z and parameter-recovery metrics on held-out simulated objects (bench and validate).

Conventions (LSST DESC): ``dz = (z_phot - z_true) / (1 + z_true)`` with ``z_phot`` the
posterior median; sigma_NMAD = 1.4826 median(|dz - median(dz)|); outliers |dz| > 0.15;
PIT = posterior CDF at the true value (uniform if calibrated), KS distance to uniform;
coverage = fraction of true values inside the central 68% / 95% credible intervals.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from lor.posteriors.base import PosteriorRepresentation


OUTLIER_CUT = 0.15
"""Catastrophic outlier threshold on ``|dz| = |z_phot - z_true| / (1 + z_true)``."""


def photoz_metrics(z_phot: np.ndarray, z_true: np.ndarray) -> dict[str, float]:
    dz = (z_phot - z_true) / (1.0 + z_true)
    return {
        "sigma_nmad": float(1.4826 * np.median(np.abs(dz - np.median(dz)))),
        "outlier_frac": float(np.mean(np.abs(dz) > OUTLIER_CUT)),
        "bias": float(np.median(dz)),
    }


def pit_ks(pit: np.ndarray) -> float:
    p = np.sort(pit[np.isfinite(pit)])
    n = len(p)
    if n == 0:
        return float("nan")
    grid = np.arange(1, n + 1) / n
    return float(max(np.max(grid - p), np.max(p - (grid - 1.0 / n))))


def coverage(pit: np.ndarray, level: float) -> float:
    lo, hi = (1 - level) / 2, 1 - (1 - level) / 2
    return float(np.mean((pit > lo) & (pit < hi)))


def recovery_metrics(
    rep: PosteriorRepresentation, params: np.ndarray, theta_true: np.ndarray, names: list[str]
) -> dict[str, Any]:
    """Per-parameter PIT KS and 68/95% coverage from the analytic marginals."""
    out: dict[str, Any] = {}
    for dim, name in enumerate(names):
        pit = rep.marginal(params, dim).cdf(theta_true[:, dim])
        pit = np.asarray(pit, np.float64).reshape(-1)
        out[name] = {
            "pit_ks": pit_ks(pit),
            "coverage68": coverage(pit, 0.68),
            "coverage95": coverage(pit, 0.95),
        }
    return out
