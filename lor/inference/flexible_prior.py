"""The published-relations prior with a redshift distribution the data may reshape:
family ``"grounded-nz"`` v1.

Why: one or two shifts of published relations cannot reach a population whose redshift
distribution differs from theirs (issue #12: on a Smail-form population with median z 1.26,
``smf_phi_evolution`` moved by +0.03 and PIT KS stayed at 0.075; on an external LSST-like
catalog the prior suppressed the right mode of z < 0.3 galaxies). Step 2 therefore fits a
flexible n(z), as hierarchical photo-z inference does (Leistedt, Mortlock & Peiris 2016,
MNRAS 460, 4258: a histogram n(z) fitted to the photometry; Malz & Hogg 2022, ApJ 929, 182:
the same from stored interim-prior posteriors, as lor's Step 2 does).

The density is the ``"grounded"`` prior's with its redshift factor multiplied by a smooth
positive function and renormalized,

    p(z) = dV/dz N(z) w(z) / C,     ln w = linear interpolation of ``nz_0 .. nz_{K-1}``

at :data:`NZ_KNOTS` knots evenly spaced in ln(1 + z) over the box; every other factor
(mass given z, metallicity, star formation, dust, nebular) stays the published one. Zero
weights give exactly the ``"grounded"`` prior, so a run under it lifts to this family with
nothing changed (:func:`lift`).

The knots carry a hyperprior (:meth:`RedshiftWeightedPrior.log_hyperprior`), which the
Step 2 fit adds to its marginal likelihood: each ``nz_k`` ~ N(0, :data:`NZ_SCALE`) (a factor
e either way at 1σ) and each second difference ~ N(0, :data:`NZ_SMOOTHNESS`), the Gaussian
random-walk smoothing of Leistedt et al. 2016 that keeps the deconvolution of broad
photometric posteriors from ringing between neighbouring knots.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from lor.inference.grounded_prior import FACTORS as GROUNDED_FACTORS
from lor.inference.grounded_prior import GROUNDED_HYPERPARAMETERS, GroundedPrior
from lor.inference.prior import DEFAULT_SELECTION, PopulationPrior
from lor.sps.parameters import default_training_box

FAMILY = "grounded-nz"
FAMILY_VERSION = "1"

NZ_KNOTS = 12
"""Knots of ln w(z): spacing 0.14 in ln(1 + z) on the 0.01-4 box (Δz 0.28 at z = 1), several
times the σ_NMAD ~ 0.03 (1 + z) of LSST photo-z, so the data resolve each knot."""
NZ_NAMES: tuple[str, ...] = tuple(f"nz_{k}" for k in range(NZ_KNOTS))
NZ_SCALE = 1.0
"""1σ of each knot's ln w about the published relations' n(z)."""
NZ_SMOOTHNESS = 0.3
"""1σ of each second difference of ln w between knots."""
NZ_BOUND = 3.0
"""Search bound of each knot (a factor of 20): a knot on it is reported as on a bound."""

FLEXIBLE_HYPERPARAMETERS: dict[str, float] = GROUNDED_HYPERPARAMETERS | dict.fromkeys(
    NZ_NAMES, 0.0
)
FACTORS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = dict(GROUNDED_FACTORS) | {
    "redshift": (("redshift",), GROUNDED_FACTORS["redshift"][1] + NZ_NAMES)
}
"""The grounded factors; the redshift factor also owns the knots (the mass factor given z
reads N(z), which the weights do not change)."""


@dataclass
class RedshiftWeightedPrior(GroundedPrior):
    """:class:`GroundedPrior` with its redshift distribution reshaped by ``nz_*`` knots."""

    hyperparameters: dict[str, float] = field(
        default_factory=lambda: dict(FLEXIBLE_HYPERPARAMETERS)
    )
    box: dict[str, tuple[float, float]] = field(default_factory=default_training_box)
    selection: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_SELECTION))

    family = FAMILY
    family_version = FAMILY_VERSION
    defaults = FLEXIBLE_HYPERPARAMETERS
    factors = FACTORS

    def __post_init__(self) -> None:
        super().__post_init__()
        z_lo, z_hi = self._bounds("redshift")
        self._knot_u = (float(np.log1p(z_lo)), float(np.log1p(z_hi)))

    @property
    def knot_redshifts(self) -> np.ndarray:
        """Redshifts of the knots ``nz_0 .. nz_{K-1}``."""
        return np.expm1(np.linspace(*self._knot_u, NZ_KNOTS))

    def _redshift_log_weight(self, logz: tf.Tensor) -> tf.Tensor:
        knots = tf.stack([self._h(name) for name in NZ_NAMES])
        u = tf.math.log1p(tf.exp(logz))
        return tfp.math.interp_regular_1d_grid(
            u, self._knot_u[0], self._knot_u[1], knots, fill_value="constant_extension"
        )

    def _table_key(self) -> tuple[float, ...]:
        return super()._table_key() + tuple(self._float(name) for name in NZ_NAMES)

    def log_hyperprior(self, values: dict[str, tf.Tensor]) -> tf.Tensor:
        """ln p of the knots among ``values`` (see the module docstring); the knots not among
        them are held at this prior's values."""
        knots = tf.stack([
            tf.cast(values[name], tf.float64) if name in values else self._h(name)
            for name in NZ_NAMES
        ])  # fmt: skip
        second = knots[2:] - 2.0 * knots[1:-1] + knots[:-2]
        return -0.5 * (
            tf.reduce_sum(tf.square(knots / NZ_SCALE))
            + tf.reduce_sum(tf.square(second / NZ_SMOOTHNESS))
        )

    def changed_factors(self, other: PopulationPrior) -> tuple[str, ...]:
        """A plain ``"grounded"`` prior is this family with zero knots, so only the factors
        whose hyperparameters differ change between them."""
        if type(other) is GroundedPrior and other.box == self.box:
            other = lift(other)
        return super().changed_factors(other)


def lift(prior: PopulationPrior) -> RedshiftWeightedPrior:
    """``prior`` (``"grounded"`` v1, or already this family) as a :class:`RedshiftWeightedPrior`
    with the same density: zero knots when it had none."""
    if isinstance(prior, RedshiftWeightedPrior):
        return prior
    if type(prior) is not GroundedPrior:
        from lor.errors import ConfigError

        raise ConfigError(
            f"a flexible n(z) extends the 'grounded' prior family, not {prior.family!r}"
        )
    return RedshiftWeightedPrior(
        hyperparameters=dict(prior.hyperparameters) | dict.fromkeys(NZ_NAMES, 0.0),
        box=dict(prior.box),
        selection=dict(prior.selection),
    )
