"""Negative log likelihoods written in TensorFlow, served to SciPy's optimizers.

Both hierarchical fits (prior hyperparameters, tract calibration) minimize a TF function of a
short float64 vector with L-BFGS-B and take their errors from its Hessian (Laplace): this is
that shared plumbing, so each fit only writes its likelihood.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import tensorflow as tf


class TFObjective:
    """A scalar function of a parameter vector, with its exact gradient by autodiff.

    Subclasses implement :meth:`nll` and call ``super().__init__()`` once their tensors exist.
    """

    def __init__(self) -> None:
        self._value_and_grad = tf.function(self._vg)

    def nll(self, params: tf.Tensor) -> tf.Tensor:
        raise NotImplementedError

    def _vg(self, params: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        with tf.GradientTape() as tape:
            tape.watch(params)
            value = self.nll(params)
        return value, tape.gradient(value, params)

    def __call__(self, params: np.ndarray) -> tuple[float, np.ndarray]:
        """Value and gradient at ``params``, as ``scipy.optimize.minimize(jac=True)`` wants."""
        value, grad = self._value_and_grad(tf.constant(params, tf.float64))
        return float(value), grad.numpy()

    def hessian(self, x: np.ndarray, which: Sequence[int] | None = None) -> np.ndarray:
        """Hessian at ``x`` in the coordinates ``which`` (default all), by central
        differences of the exact gradient."""
        which = list(range(x.size)) if which is None else list(which)
        hess = np.zeros((len(which), len(which)))
        for col, i in enumerate(which):
            h = 1e-4 * max(1.0, abs(float(x[i])))
            up, down = x.copy(), x.copy()
            up[i] += h
            down[i] -= h
            hess[:, col] = (self(up)[1][which] - self(down)[1][which]) / (2 * h)
        return 0.5 * (hess + hess.T)
