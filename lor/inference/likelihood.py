"""The photometric log posterior for MCMC: Gaussian flux likelihood through the emulator
times the population prior, batched over objects x walkers in TensorFlow.

Bands an object cannot use carry zero weight. Calibration and Galactic extinction are applied
to the data before (as in :class:`lor.inference.amortized.PhotometryPosteriors`), so the
likelihood only sees corrected fluxes and errors.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import tensorflow as tf

from lor.inference.prior import PopulationPrior
from lor.units import AB_ZEROPOINT_NJY

if TYPE_CHECKING:
    from lor.emulators.protocol import Emulator


class PhotometricPosterior:
    """``log p(theta | flux) = log N(flux | F(theta), err) + log prior(theta)`` (unnormalized)."""

    def __init__(
        self,
        emulator: Emulator,
        prior: PopulationPrior,
        flux: np.ndarray,
        flux_err: np.ndarray,
        usable: np.ndarray,
    ) -> None:
        self.emulator = emulator
        self.prior = prior
        self.flux = tf.constant(np.where(usable, flux, 0.0), tf.float64)
        self.inv_err = tf.constant(
            np.where(usable, 1.0 / np.where(usable, flux_err, 1.0), 0.0), tf.float64
        )
        self.lo = tf.constant(emulator.box_lo, tf.float64)
        self.hi = tf.constant(emulator.box_hi, tf.float64)

    def log_likelihood(self, theta: tf.Tensor) -> tf.Tensor:
        """theta (N, W, D) float64 -> (N, W)."""
        n, w, d = tf.unstack(tf.shape(theta))
        flat = tf.reshape(theta, [-1, d])
        mags = tf.cast(self.emulator.magnitudes_tf(tf.cast(flat, tf.float32)), tf.float64)
        model = AB_ZEROPOINT_NJY * tf.pow(tf.constant(10.0, tf.float64), -0.4 * mags)
        model = tf.reshape(model, [n, w, -1])
        chi = (self.flux[:, None, :] - model) * self.inv_err[:, None, :]
        return -0.5 * tf.reduce_sum(chi * chi, axis=-1)

    def __call__(self, theta: tf.Tensor) -> tf.Tensor:
        n, w, d = tf.unstack(tf.shape(theta))
        inside = tf.reduce_all((theta > self.lo) & (theta < self.hi), axis=-1)
        safe = tf.where(inside[..., None], theta, (self.lo + self.hi) / 2)
        log_prior = tf.reshape(self.prior.log_prob(tf.reshape(safe, [-1, d])), [n, w])
        total = self.log_likelihood(safe) + log_prior
        return tf.where(inside, total, tf.constant(-np.inf, tf.float64))
