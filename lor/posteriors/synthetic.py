"""Synthetic, valid gmm_flow posteriors for contract tests, SQL checks and benchmarks.

Realistic enough to exercise every code path: a dominant narrow peak with secondary peaks
(photometric-redshift degeneracies), correlated parameters, and component widths from
spec-z-like to nearly prior-wide.
"""

from __future__ import annotations

import numpy as np

from lor.posteriors.gmm_flow import GaussianMixtureFlow


def random_mixture(
    n_objects: int,
    n_components: int,
    n_dim: int,
    seed: int | None = 0,
    width_range: tuple[float, float] = (0.02, 1.0),
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random mixture arrays in ``u``: log weights, means and Cholesky factors.

    Parameters
    ----------
    width_range
        Range of the Cholesky diagonal (log-uniform), i.e. of component widths in ``u``.
    """
    rng = np.random.default_rng(seed)
    k, d = n_components, n_dim
    logits = rng.normal(0.0, 1.5, size=(n_objects, k))
    centre = rng.normal(0.0, 1.0, size=(n_objects, 1, d))
    means = centre + rng.normal(0.0, 0.7, size=(n_objects, k, d))
    lo, hi = np.log(width_range[0]), np.log(width_range[1])
    diag = np.exp(rng.uniform(lo, hi, size=(n_objects, k, d)))
    chol = np.tril(rng.normal(0.0, 0.15, size=(n_objects, k, d, d)), -1)
    chol = chol * np.sqrt(diag)[..., None, :] * np.sqrt(diag)[..., :, None]
    chol[..., np.arange(d), np.arange(d)] = diag
    return logits, means, chol


def random_params(
    flow: GaussianMixtureFlow,
    n_objects: int,
    seed: int | None = 0,
    width_range: tuple[float, float] = (0.02, 1.0),
) -> np.ndarray:
    """``(n_objects, flow.floats_per_object)`` float32 stored parameters for ``flow``."""
    arrays = random_mixture(n_objects, flow.n_components, flow.n_dim, seed, width_range)
    return flow.pack(*arrays)
