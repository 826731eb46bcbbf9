"""Moment matching of Gaussian mixture components under a prior ratio, vectorized over objects.

:func:`lor.hierarchy.reweight.reweight_by_cubature` multiplies every component of every
stored posterior by the prior ratio and moment-matches it back to a Gaussian. The linear
algebra is on thousands of tiny matrices (m x m, m the coordinates the ratio reads, and
D x D): LAPACK through ``np.linalg`` pays a call per matrix, which made these few flops a
quarter of a prior-change reprocess. Here every factorization loops over the matrix size
(at most D = 8) and is vectorized over the objects and components instead.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.special import expit, log_softmax

from lor.posteriors.base import GaussianComponents


def cholesky(a: np.ndarray) -> np.ndarray:
    """Lower Cholesky factors of symmetric positive-definite ``a`` ``(..., d, d)``; NaN where
    a matrix is not positive definite (the caller treats those rows as failed)."""
    d = a.shape[-1]
    out = np.zeros_like(a)
    with np.errstate(invalid="ignore", divide="ignore"):
        for j in range(d):
            v = a[..., j:, j] - (out[..., j:, :j] @ out[..., j, :j, None])[..., 0]
            pivot = np.sqrt(v[..., 0])
            out[..., j, j] = pivot
            out[..., j + 1 :, j] = v[..., 1:] / pivot[..., None]
    return out


def lower_inverse(chol: np.ndarray) -> np.ndarray:
    """Inverses of lower-triangular ``chol`` ``(..., m, m)`` by forward substitution."""
    m = chol.shape[-1]
    out = np.zeros_like(chol)
    for i in range(m):
        inv_ii = 1.0 / chol[..., i, i]
        out[..., i, i] = inv_ii
        if i:
            row = (chol[..., i, None, :i] @ out[..., :i, :i])[..., 0, :]
            out[..., i, :i] = -row * inv_ii[..., None]
    return out


def moment_match(
    rep: GaussianComponents,
    params: np.ndarray,
    columns: np.ndarray,
    log_ratio: Callable[[np.ndarray], np.ndarray],
    points: np.ndarray,
    rule_w: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Stored rows ``params`` times ``exp(log_ratio)``, each component moment-matched in ``u``
    with the cubature rule (``points`` ``(J, m)``, weights ``rule_w``) in ``columns``.

    ``log_ratio`` maps parameter rows ``(N, K, J, D)`` to ``(N, K, J)``. Returns the new rows
    and each object's effective sample fraction of the cubature weights; an object whose
    update is not finite (a covariance that lost positive definiteness) gets fraction 0.
    """
    logits, means, chol = (np.asarray(a, np.float64) for a in rep.unpack(params))
    n, k, d = means.shape
    s = columns
    cov = chol @ np.swapaxes(chol, 2, 3)
    cov_ss = cov[:, :, s][:, :, :, s]
    cov_xs = cov[:, :, :, s]
    chol_ss = cholesky(cov_ss)
    u_s = means[:, :, None, s] + np.swapaxes(chol_ss @ points.T, 2, 3)  # (N, K, J, m)
    theta = np.empty((n, k, len(points), d))
    theta[...] = 0.5 * (rep.box_lo + rep.box_hi)
    theta[..., s] = rep.box_lo[s] + (rep.box_hi[s] - rep.box_lo[s]) * expit(u_s)
    log_r = log_ratio(theta)  # (N, K, J)
    log_r = log_r - log_r.max(axis=(1, 2), keepdims=True)
    r = np.exp(log_r) * rule_w
    z = r.sum(axis=2)  # (N, K): E_k[ratio] (up to the shared shift)
    mean_s = (r[..., None] * u_s).sum(axis=2) / z[..., None]
    dev = u_s - mean_s[:, :, None, :]
    new_cov_ss = (np.swapaxes(r[..., None] * dev, 2, 3) @ dev) / z[..., None, None]
    inv_chol = lower_inverse(chol_ss)
    gain = cov_xs @ (np.swapaxes(inv_chol, 2, 3) @ inv_chol)  # regression of all u on u_S
    new_means = means + (gain @ (mean_s - means[:, :, s])[..., None])[..., 0]
    new_cov = cov + gain @ (new_cov_ss - cov_ss) @ np.swapaxes(gain, 2, 3)
    new_cov = 0.5 * (new_cov + np.swapaxes(new_cov, 2, 3))
    log_w = log_softmax(logits, axis=1)
    with np.errstate(divide="ignore"):
        new_logits = log_w + np.log(z)
    # Effective sample fraction of the weighted points against the unweighted rule.
    base = np.exp(log_w)[:, :, None] * rule_w
    omega = np.exp(log_w)[:, :, None] * r
    spread = np.where(base > 0, omega**2 / np.maximum(base, 1e-300), 0.0)
    ess = omega.reshape(n, -1).sum(axis=1) ** 2 / spread.reshape(n, -1).sum(axis=1)
    new_chol = cholesky(new_cov)
    new_params = rep.pack(new_logits - new_logits.max(axis=1, keepdims=True), new_means, new_chol)
    ok = np.isfinite(new_params).all(axis=1)
    return new_params, np.where(ok, ess, 0.0)
