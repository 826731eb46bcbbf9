"""One-dimensional Gaussian mixtures seen through the box bijector, vectorized over objects.

Because the flow's bijector is elementwise, the marginal of any one parameter ``x`` in a box
``(lo, hi)`` is a 1-D Gaussian mixture in ``u = logit((x - lo) / (hi - lo))``. Its density,
CDF, quantiles, moments and mode follow analytically (or by one-dimensional quadrature), so
redshift and stellar-mass summaries need no sampling, and the same formulas run in SQL
(``lor/db/sql/0002_posteriors.sql``).

Everything is float64 and vectorized over objects; loops run only over the K components
(a handful), which keeps every temporary a contiguous ``(N, G)`` array instead of an
``(N, G, K)`` one. Evaluation points broadcast against the object axis as in NumPy and
TFP: a scalar or an ``(N,)`` array (one point per object) gives ``(N,)``; an ``(N, G)``
array gives ``(N, G)``, and a grid shared by every object is passed as ``(1, G)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import numpy as np
from scipy.special import expit, ndtr, ndtri

from lor.posteriors.base import RepresentationError

_INV_SQRT_2PI: Final[float] = 1.0 / np.sqrt(2.0 * np.pi)
_TZ_X: Final[np.ndarray] = np.linspace(-8.0, 8.0, 40)
_TZ_W: Final[np.ndarray] = np.exp(-0.5 * _TZ_X**2) / np.sum(np.exp(-0.5 * _TZ_X**2))
_TZ_NARROW_SIGMA: Final[float] = 1.0
_TZ_NARROW_NODES: Final[int] = 25
_TZ_XN: Final[np.ndarray] = np.linspace(-8.0, 8.0, _TZ_NARROW_NODES)
_TZ_WN: Final[np.ndarray] = np.exp(-0.5 * _TZ_XN**2) / np.sum(np.exp(-0.5 * _TZ_XN**2))
_QUANTILE_MAX_ITER: Final[int] = 200
_U_TOL: Final[float] = 1e-11
_MODE_COARSE: Final[int] = 32
_MODE_ZOOM: Final[int] = 9
_MODE_ZOOMS: Final[int] = 2
_MODE_RANGE_Q: Final[tuple[float, float]] = (0.025, 0.975)


def as_points(x: Any, n_objects: int) -> tuple[np.ndarray, bool]:
    """Broadcast evaluation points against the object axis, as NumPy and TFP do.

    Returns an ``(N, G)`` float64 array and whether the caller should return ``(N,)``
    (a scalar, or one point per object given as ``(N,)``).

    Raises
    ------
    RepresentationError
        If the leading axis is neither 1 nor N, or there are more than two axes.
    """
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim > 2 or (arr.ndim >= 1 and arr.shape[0] not in (1, n_objects)):
        raise RepresentationError(
            f"points must be a scalar, (N,) or (N, G) with N={n_objects} objects, or (1, G) "
            f"for a grid shared by all objects; got shape {arr.shape}"
        )
    flat = arr.ndim < 2
    return np.broadcast_to(
        arr.reshape(-1, 1) if flat else arr, (n_objects, 1 if flat else arr.shape[1])
    ), flat


@dataclass(frozen=True)
class LogitMixture:
    """Per-object 1-D mixtures ``sum_k w_k N(u | mu_k, sigma_k)`` with ``x`` in ``(lo, hi)``.

    Arrays are stored component-major, ``(K, N)``, so each component is a contiguous row.
    Build with :meth:`from_arrays`.
    """

    w: np.ndarray
    mu: np.ndarray
    sigma: np.ndarray
    lo: float
    hi: float

    @classmethod
    def from_arrays(
        cls, log_w: np.ndarray, mu: np.ndarray, sigma: np.ndarray, lo: float, hi: float
    ) -> LogitMixture:
        """From object-major ``(N, K)`` log weights (any additive constant), means, stds."""
        log_w = np.asarray(log_w, dtype=np.float64)
        w = np.exp(log_w - log_w.max(axis=1, keepdims=True))
        w /= w.sum(axis=1, keepdims=True)
        return cls(
            w=np.ascontiguousarray(w.T),
            mu=np.ascontiguousarray(np.asarray(mu, dtype=np.float64).T),
            sigma=np.ascontiguousarray(np.asarray(sigma, dtype=np.float64).T),
            lo=float(lo),
            hi=float(hi),
        )

    @property
    def n_objects(self) -> int:
        return int(self.mu.shape[1])

    # -- in u ---------------------------------------------------------------------------

    def u_pdf(self, u: np.ndarray) -> np.ndarray:
        """Mixture density in ``u`` at ``u`` of shape ``(N, G)``."""
        out = np.zeros(u.shape)
        for w, m, s in zip(self.w, self.mu, self.sigma, strict=True):
            t = (u - m[:, None]) / s[:, None]
            out += (w / s)[:, None] * np.exp(-0.5 * t * t)
        return out * _INV_SQRT_2PI

    def u_cdf(self, u: np.ndarray) -> np.ndarray:
        """Mixture CDF in ``u`` at ``u`` of shape ``(N, G)``."""
        out = np.zeros(u.shape)
        for w, m, s in zip(self.w, self.mu, self.sigma, strict=True):
            out += w[:, None] * ndtr((u - m[:, None]) / s[:, None])
        return out

    def u_quantile(self, q: np.ndarray) -> np.ndarray:
        """Quantiles in ``u`` for ``q`` of shape ``(N, G)`` strictly inside (0, 1).

        Safeguarded Newton (``rtsafe``): the answer is bracketed by the components' own
        quantiles (``F(min_k u_k(q)) <= q <= F(max_k u_k(q))`` for any mixture), every
        iterate shrinks the bracket, and a Newton step that leaves it or does not halve the
        step before last is replaced by bisection. Converged points drop out of the working
        set, so the few slow ones (a quantile between far-apart components) cost little.
        """
        n, g = q.shape
        comp = self.mu[:, :, None] + self.sigma[:, :, None] * ndtri(q)[None]
        a, b = comp.min(axis=0).ravel(), comp.max(axis=0).ravel()
        u = np.einsum("kn,kng->ng", self.w, comp).ravel()
        qf = np.ascontiguousarray(q, dtype=np.float64).ravel()
        step_old = b - a
        idx = np.arange(n * g)
        for _ in range(_QUANTILE_MAX_ITER):
            rows = idx // g
            ui, ai, bi = u[idx], a[idx], b[idx]
            f = -qf[idx]
            dens = np.zeros(idx.size)
            for w, m, s in zip(self.w, self.mu, self.sigma, strict=True):
                sr = s[rows]
                t = (ui - m[rows]) / sr
                wr = w[rows]
                f += wr * ndtr(t)
                dens += (wr / sr) * np.exp(-0.5 * t * t)
            dens *= _INV_SQRT_2PI
            ai = np.where(f < 0, ui, ai)
            bi = np.where(f > 0, ui, bi)
            with np.errstate(divide="ignore", invalid="ignore"):
                newton = ui - f / dens
            tiny = np.abs(newton - ui) <= _U_TOL * (1.0 + np.abs(ui))
            bisect = (
                ~((newton > ai) & (newton < bi))
                | ~np.isfinite(newton)
                | (np.abs(2.0 * f) > np.abs(step_old[idx] * dens))
            )
            new = np.where(bisect & ~tiny, 0.5 * (ai + bi), newton)
            new = np.where(f == 0, ui, new)
            u[idx], a[idx], b[idx], step_old[idx] = new, ai, bi, new - ui
            done = tiny | (f == 0) | (bi - ai <= _U_TOL * (1.0 + np.abs(new)))
            idx = idx[~done]
            if idx.size == 0:
                break
        return u.reshape(n, g)

    def to_x(self, u: np.ndarray) -> np.ndarray:
        return self.lo + (self.hi - self.lo) * expit(u)

    # -- in x ---------------------------------------------------------------------------

    def _inside(self, x: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
        pts, scalar = as_points(x, self.n_objects)
        inside = (pts > self.lo) & (pts < self.hi)
        xs = np.where(inside, pts, 0.5 * (self.lo + self.hi))
        return pts, xs, inside, scalar

    def pdf(self, x: Any) -> np.ndarray:
        """Density in ``x``: the ``u`` density times ``du/dx``; zero outside ``(lo, hi)``."""
        _, xs, inside, scalar = self._inside(x)
        below, above = xs - self.lo, self.hi - xs
        dens = self.u_pdf(np.log(below) - np.log(above)) * (self.hi - self.lo) / (below * above)
        out = np.where(inside, dens, 0.0)
        return out[:, 0] if scalar else out

    def cdf(self, x: Any) -> np.ndarray:
        """``P(X <= x)``: 0 at or below ``lo``, 1 at or above ``hi``."""
        pts, xs, inside, scalar = self._inside(x)
        cum = self.u_cdf(np.log(xs - self.lo) - np.log(self.hi - xs))
        out = np.where(inside, cum, np.where(pts >= self.hi, 1.0, 0.0))
        return out[:, 0] if scalar else out

    def quantile(self, q: Any) -> np.ndarray:
        """Inverse CDF in ``x``; ``q = 0`` gives ``lo``, ``q = 1`` gives ``hi``, else NaN outside."""
        qs, scalar = as_points(q, self.n_objects)
        interior = (qs > 0) & (qs < 1)
        out = self.to_x(self.u_quantile(np.where(interior, qs, 0.5)))
        out = np.where(
            interior, out, np.where(qs == 0, self.lo, np.where(qs == 1, self.hi, np.nan))
        )
        return out[:, 0] if scalar else out

    def mean_std(self) -> tuple[np.ndarray, np.ndarray]:
        """Mean and standard deviation in ``x`` by trapezoidal quadrature per component.

        Each component is integrated over +-8 standard deviations, on 40 nodes, or on
        :data:`_TZ_NARROW_NODES` when its width in ``u`` is at most 1 (85% of the shipped
        estimator's components: ``expit`` is smoother on their scale). The trapezoid rule
        converges geometrically for this analytic integrand (unlike Gauss-Hermite, which the
        poles of ``expit`` at ``i pi`` slow down for wide components): the error is below
        1e-8 of the box width for component widths up to 3 in ``u``, wider than the logistic
        image of a uniform prior (1.8); the narrow rule agrees with 1201 nodes on +-12 to
        2e-10 of the width on 4,000 shipped-estimator posteriors (21 nodes: 2e-8).
        """
        narrow = self.sigma <= _TZ_NARROW_SIGMA
        groups = [(rows, nodes, weights, []) for rows, nodes, weights in
                  ((narrow, _TZ_XN, _TZ_WN), (~narrow, _TZ_X, _TZ_W))]  # fmt: skip
        m1 = np.empty(self.mu.shape)  # E[y] per component, y = (x - lo) / width in (0, 1)
        for rows, nodes, weights, ys in groups:
            mu, sigma = self.mu[rows], self.sigma[rows]
            s1 = np.zeros(mu.shape)
            for t, weight in zip(nodes, weights, strict=True):  # node by node: contiguous
                ys.append(expit(mu + sigma * t))  # vectors over the components
                s1 += weight * ys[-1]
            m1[rows] = s1
        e1 = np.einsum("kn,kn->n", self.w, m1)
        m2 = np.empty(self.mu.shape)  # E[(y - e1)^2] per component: no cancellation
        for rows, _, weights, ys in groups:
            centre = np.broadcast_to(e1, self.mu.shape)[rows]
            s2 = np.zeros(centre.shape)
            for y, weight in zip(ys, weights, strict=True):
                y -= centre
                s2 += weight * (y * y)
            m2[rows] = s2
        var = np.einsum("kn,kn->n", self.w, m2)
        width = self.hi - self.lo
        return self.lo + width * e1, width * np.sqrt(var)

    def _log_score(self, u: np.ndarray) -> np.ndarray:
        """``log`` of the ``x`` density at ``u``, up to a per-object constant.

        ``p_x = p_u(u) du/dx`` and ``du/dx`` is proportional to ``2 + 2 cosh(u)``.
        """
        with np.errstate(divide="ignore"):
            log_pu = np.log(self.u_pdf(u))
        au = np.abs(u)
        return log_pu + au + 2.0 * np.log1p(np.exp(-au))

    def u_mode(self, u0: np.ndarray, u1: np.ndarray) -> np.ndarray:
        """``u`` of the highest ``x`` density: a coarse grid, two zooms and a parabola.

        The coarse grid spans ``[u0, u1]`` (a central range of the mass) and adds each
        component's centre, so a narrow, high peak between grid points is not missed; each
        zoom samples one coarse step either side of the best point at a quarter of the
        spacing, and a parabola through the log density polishes the result.
        """
        steps = np.linspace(0.0, 1.0, _MODE_COARSE)
        cand = np.concatenate([u0[:, None] + (u1 - u0)[:, None] * steps, self.mu.T], axis=1)
        score = self._log_score(cand)
        best = np.take_along_axis(cand, np.argmax(score, axis=1)[:, None], axis=1)
        h = np.maximum(u1 - u0, 1e-9)[:, None] / (_MODE_COARSE - 1)
        offsets = np.linspace(-1.0, 1.0, _MODE_ZOOM)
        grid, i = best, np.zeros_like(best, dtype=np.int64)
        for _ in range(_MODE_ZOOMS):
            grid = best + h * offsets
            score = self._log_score(grid)
            i = np.argmax(score, axis=1)[:, None]
            best = np.take_along_axis(grid, i, axis=1)
            h = h / 4.0
        j = np.clip(i, 1, _MODE_ZOOM - 2)
        f0, f1, f2 = (np.take_along_axis(score, j + k, axis=1)[:, 0] for k in (-1, 0, 1))
        dx = (4.0 * h * (offsets[1] - offsets[0]))[:, 0]
        curv = f0 - 2.0 * f1 + f2
        with np.errstate(divide="ignore", invalid="ignore"):
            shift = 0.5 * dx * (f0 - f2) / curv
        ok = (i[:, 0] == j[:, 0]) & (curv < 0) & np.isfinite(shift) & (np.abs(shift) <= dx)
        return np.where(ok, np.take_along_axis(grid, j, axis=1)[:, 0] + shift, best[:, 0])

    def summary(self, quantiles: dict[str, float]) -> dict[str, np.ndarray]:
        """Mean, mode, standard deviation and the named quantiles in ``x``, all analytic.

        The mode search spans the 2.5-97.5 per cent range in ``u`` widened by half its
        width on each side (plus every component centre).
        """
        levels = sorted({*quantiles.values(), *_MODE_RANGE_Q})
        uq = self.u_quantile(np.broadcast_to(np.array(levels), (self.n_objects, len(levels))))
        lo_u = uq[:, levels.index(_MODE_RANGE_Q[0])]
        hi_u = uq[:, levels.index(_MODE_RANGE_Q[1])]
        pad = 0.5 * (hi_u - lo_u)
        mean, std = self.mean_std()
        out = {"mean": mean, "mode": self.to_x(self.u_mode(lo_u - pad, hi_u + pad)), "std": std}
        xq = self.to_x(uq)
        out.update({name: xq[:, levels.index(q)] for name, q in quantiles.items()})
        return out
