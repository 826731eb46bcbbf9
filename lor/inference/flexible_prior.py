"""The published-relations prior with a redshift distribution and a stellar-mass-function
shape the data may reshape: family ``"grounded-flexible"`` v1.

Why: one or two shifts of published relations cannot reach a population whose redshift
distribution or mass function differs from theirs (issue #12: on a Smail-form population
with median z 1.26, ``smf_phi_evolution`` moved by +0.03 and PIT KS stayed at 0.075; on an
external LSST-like catalog the prior suppressed the right mode of z < 0.3 galaxies). Step 2
can therefore fit a flexible n(z) and mass function, as hierarchical photo-z inference fits
n(z) (Leistedt, Mortlock & Peiris 2016, MNRAS 460, 4258: a histogram n(z) fitted to the
photometry; Malz & Hogg 2022, ApJ 929, 182: the same from stored interim-prior posteriors,
as lor's Step 2 does).

The density is the ``"grounded"`` prior's with two smooth positive factors:

* ``w_z(z)`` on the redshift distribution, ``ln w_z`` the linear interpolation of ``nz_0 ..
  nz_11`` at knots evenly spaced in ln(1 + z) over the box (:data:`REDSHIFT_KNOTS`);
* ``w_M(M)`` on the stellar-mass function Φ(M, z) at every z, ``ln w_M`` the interpolation of
  ``mf_0 .. mf_5`` at knots evenly spaced in ``log_mstar`` (:data:`MASS_KNOTS`); the
  quiescent fraction (a ratio of Φ's two components) is unchanged;

    p(z) ∝ dV/dz N_w(z) w_z(z),   p(M | z) = Φ(M, z) w_M(M) / N_w(z),   N_w = ∫ Φ w_M dM,

every other factor (metallicity, star formation, dust, nebular) the published one. Zero knots
give exactly the ``"grounded"`` prior, so a run under it lifts to this family with nothing
changed (:func:`lift`).

The knots carry a hyperprior (:meth:`FlexiblePrior.log_hyperprior`) that the Step 2 fit adds
to its marginal likelihood: each knot ~ N(0, ``scale``) (a factor e either way at 1σ) and
each second difference ~ N(0, ``smoothness``), the Gaussian random-walk smoothing of
Leistedt et al. 2016 that keeps the deconvolution of broad photometric posteriors from
ringing between neighbouring knots. The common level of a set of knots does not change the
density (it cancels in the normalization); the N(0, scale) term fixes it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from lor.errors import ConfigError
from lor.inference.grounded_prior import _SMF, GROUNDED_HYPERPARAMETERS, GroundedPrior
from lor.inference.grounded_prior import FACTORS as GROUNDED_FACTORS
from lor.inference.prior import PopulationPrior

FAMILY = "grounded-flexible"
FAMILY_VERSION = "1"


@dataclass(frozen=True)
class KnotSet:
    """Knots of one smooth log-weight: names, the coordinate they are even in, hyperprior."""

    prefix: str  # knot k is "<prefix>_<k>"; the prefix alone in --free means all of them
    parameter: str  # the SPS parameter the weight reads
    count: int
    log1p: bool  # knots even in ln(1 + x) (redshift) or in x (log mass)
    scale: float  # 1σ of each knot
    smoothness: float  # 1σ of each second difference
    bound: float  # search bound of each knot: one on it is reported as on a bound

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f"{self.prefix}_{k}" for k in range(self.count))

    def span(self, low: float, high: float) -> tuple[float, float]:
        """The knots' first and last coordinate for the parameter's box."""
        if self.log1p:
            return float(np.log1p(low)), float(np.log1p(high))
        return float(low), float(high)

    def log_hyperprior(self, knots: tf.Tensor) -> tf.Tensor:
        second = knots[2:] - 2.0 * knots[1:-1] + knots[:-2]
        return -0.5 * (
            tf.reduce_sum(tf.square(knots / self.scale))
            + tf.reduce_sum(tf.square(second / self.smoothness))
        )


REDSHIFT_KNOTS = KnotSet("nz", "redshift", 12, True, 1.0, 0.3, 3.0)
"""Spacing 0.14 in ln(1 + z) on the 0.01-4 box (Δz 0.28 at z = 1), several times the
σ_NMAD ~ 0.03 (1 + z) of LSST photo-z, so the data resolve each knot."""
MASS_KNOTS = KnotSet("mf", "log_mstar", 6, False, 1.0, 0.3, 3.0)
"""Spacing 1.1 dex on the 7-12.5 box: the scale over which the Leja et al. 2020 double
Schechter's slope changes (its M* ~ 10.8 and low-mass slope)."""
KNOT_SETS: dict[str, KnotSet] = {k.prefix: k for k in (REDSHIFT_KNOTS, MASS_KNOTS)}

FLEXIBLE_HYPERPARAMETERS: dict[str, float] = GROUNDED_HYPERPARAMETERS | dict.fromkeys(
    REDSHIFT_KNOTS.names + MASS_KNOTS.names, 0.0
)
FACTORS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = dict(GROUNDED_FACTORS) | {
    "redshift": (("redshift",), _SMF + REDSHIFT_KNOTS.names + MASS_KNOTS.names),
    "log_mstar": (("redshift", "log_mstar"), _SMF + MASS_KNOTS.names),
}
"""The grounded factors; the redshift factor also owns every knot (N_w(z) integrates the
reshaped mass function), the mass factor the mass knots."""


@dataclass
class FlexiblePrior(GroundedPrior):
    """:class:`GroundedPrior` with n(z) and the mass function's shape reshaped by knots."""

    hyperparameters: dict[str, float] = field(
        default_factory=lambda: dict(FLEXIBLE_HYPERPARAMETERS)
    )  # box and selection: the grounded prior's fields and defaults

    family = FAMILY
    family_version = FAMILY_VERSION
    defaults = FLEXIBLE_HYPERPARAMETERS
    factors = FACTORS

    def knot_positions(self, knots: KnotSet) -> np.ndarray:
        """Parameter values (redshift, log mass) of ``knots``."""
        lo, hi = knots.span(*self._bounds(knots.parameter))
        grid = np.linspace(lo, hi, knots.count)
        return np.expm1(grid) if knots.log1p else grid

    def _log_weight(self, knots: KnotSet, x: tf.Tensor) -> tf.Tensor:
        values = tf.stack([self._h(name) for name in knots.names])
        lo, hi = knots.span(*self._bounds(knots.parameter))
        u = tf.math.log1p(x) if knots.log1p else x
        return tfp.math.interp_regular_1d_grid(u, lo, hi, values, fill_value="constant_extension")

    def _redshift_log_weight(self, logz: tf.Tensor) -> tf.Tensor:
        return self._log_weight(REDSHIFT_KNOTS, tf.exp(logz))

    def _mass_log_weight(self, log_mstar: tf.Tensor) -> tf.Tensor:
        return self._log_weight(MASS_KNOTS, tf.cast(log_mstar, tf.float64))

    def mass_log_weight_numpy(self, log_mstar: np.ndarray) -> np.ndarray:
        lo, hi = MASS_KNOTS.span(*self._bounds("log_mstar"))
        values = [self._float(name) for name in MASS_KNOTS.names]
        return np.interp(log_mstar, np.linspace(lo, hi, MASS_KNOTS.count), values)

    def _table_key(self) -> tuple[float, ...]:
        knots = REDSHIFT_KNOTS.names + MASS_KNOTS.names
        return super()._table_key() + tuple(self._float(name) for name in knots)

    def log_hyperprior(self, values: dict[str, Any]) -> tf.Tensor:
        """ln p of the knot sets with a knot among ``values`` (see the module docstring); the
        knots not among them are held at this prior's values."""
        total = tf.constant(0.0, tf.float64)
        for knots in KNOT_SETS.values():
            if not set(knots.names) & set(values):
                continue
            vector = tf.stack([
                tf.cast(values[name], tf.float64) if name in values else self._h(name)
                for name in knots.names
            ])  # fmt: skip
            total += knots.log_hyperprior(vector)
        return total

    def changed_factors(self, other: PopulationPrior) -> tuple[str, ...]:
        """A plain ``"grounded"`` prior is this family with zero knots, so only the factors
        whose hyperparameters differ change between them."""
        if type(other) is GroundedPrior and other.box == self.box:
            other = lift(other)
        return super().changed_factors(other)


def lift(prior: PopulationPrior) -> FlexiblePrior:
    """``prior`` (``"grounded"`` v1, or already this family) as a :class:`FlexiblePrior` with
    the same density: zero knots where it had none."""
    if isinstance(prior, FlexiblePrior):
        return prior
    if type(prior) is not GroundedPrior:
        raise ConfigError(
            f"the flexible n(z) and mass function extend the 'grounded' prior family, "
            f"not {prior.family!r}"
        )
    return FlexiblePrior(
        hyperparameters=dict(FLEXIBLE_HYPERPARAMETERS) | dict(prior.hyperparameters),
        box=dict(prior.box),
        selection=dict(prior.selection),
    )
