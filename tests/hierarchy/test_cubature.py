"""Batched small-matrix algebra of the cubature update against LAPACK."""

from __future__ import annotations

import numpy as np

from lor.hierarchy.cubature import cholesky, lower_inverse


def _spd(rng: np.random.Generator, shape: tuple[int, ...], d: int) -> np.ndarray:
    a = rng.normal(size=(*shape, d, d))
    return a @ np.swapaxes(a, -1, -2) + 0.1 * np.eye(d)


def test_cholesky_and_inverse_match_lapack() -> None:
    rng = np.random.default_rng(4)
    for d in (1, 3, 8):
        a = _spd(rng, (50, 4), d)
        chol = cholesky(a)
        np.testing.assert_allclose(chol, np.linalg.cholesky(a), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(lower_inverse(chol), np.linalg.inv(chol), rtol=1e-9, atol=1e-9)


def test_not_positive_definite_gives_nan_not_an_error() -> None:
    a = np.array([[[1.0, 2.0], [2.0, 1.0]], [[2.0, 0.0], [0.0, 3.0]]])
    chol = cholesky(a)
    assert np.isnan(chol[0]).any() and np.isfinite(chol[1]).all()
