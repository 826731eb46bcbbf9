"""The population prior (ingredient C): p(theta | hyperparameters), in TensorFlow Probability.

Parameters follow :data:`lor.sps.parameters.PARAM_NAMES`. The family ``"population"`` v1:

* redshift: ``p(z) ∝ z**alpha * exp(-(z / z0)**beta)`` on the box (Smail et al. 1994 form);
* stellar mass given z: normal in ``log_mstar`` with a mean evolving as
  ``mass_mean + mass_evolution * log(1 + z)`` and width ``mass_sigma``;
* metallicity given mass: the mass-metallicity relation,
  ``log_zmet ~ N(mzr_zero + mzr_slope * (log_mstar - 10), mzr_sigma)``;
* star-formation history: ``log_tau ~ N(tau_mean, tau_sigma)``, ``age_frac ~ Beta(age_a, age_b)``;
* dust: ``av`` exponential with scale ``av_scale``; ``dust_n ~ N(dust_n_mean, dust_n_sigma)``;
* nebular: ``log_u ~ N(logu_mean, logu_sigma)``;

every factor truncated to the emulator's training box, so the prior never asks a model to
extrapolate. The survey's depth selection (e.g. ``i < 25.3`` on observed magnitudes) is part
of the prior version: :func:`lor.inference.simulate.simulate_catalog` applies it. The broad
*interim* prior (``INTERIM_HYPERPARAMETERS``) is what estimators are trained under; its
posteriors are reweighted to any other prior (``lor reprocess``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from lor.errors import ConfigError
from lor.sps.parameters import PARAM_NAMES, box_arrays, default_training_box

tfd = tfp.distributions

FAMILY = "population"
FAMILY_VERSION = "1"

INTERIM_HYPERPARAMETERS: dict[str, float] = {
    "z0": 0.9,
    "alpha": 1.6,
    "beta": 1.2,
    "mass_mean": 9.6,
    "mass_evolution": 0.3,
    "mass_sigma": 1.0,
    "mzr_zero": -0.3,
    "mzr_slope": 0.25,
    "mzr_sigma": 0.5,
    "tau_mean": 0.2,
    "tau_sigma": 0.6,
    "age_a": 1.6,
    "age_b": 1.4,
    "av_scale": 0.6,
    "dust_n_mean": 0.8,
    "dust_n_sigma": 0.4,
    "logu_mean": -2.5,
    "logu_sigma": 0.6,
}
"""Broad hyperparameters covering real galaxies: the interim prior estimators train under."""

FACTORS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "redshift": (("redshift",), ("z0", "alpha", "beta")),
    "log_mstar": (("redshift", "log_mstar"), ("mass_mean", "mass_evolution", "mass_sigma")),
    "log_zmet": (("log_mstar", "log_zmet"), ("mzr_zero", "mzr_slope", "mzr_sigma")),
    "log_tau": (("log_tau",), ("tau_mean", "tau_sigma")),
    "age_frac": (("age_frac",), ("age_a", "age_b")),
    "av": (("av",), ("av_scale",)),
    "dust_n": (("dust_n",), ("dust_n_mean", "dust_n_sigma")),
    "log_u": (("log_u",), ("logu_mean", "logu_sigma")),
}
"""Each factor of the prior: (the parameters its density reads, its hyperparameters). A change
of hyperparameters only changes the factors that own them, so a prior ratio needs only those
factors and depends only on their parameters (:mod:`lor.hierarchy.reweight` uses this)."""

DEFAULT_SELECTION: dict[str, Any] = {"band": "i", "mag_max": 25.3}
"""LSST gold-sample depth cut on the observed i-band magnitude."""

_Z_GRID = 2048


@dataclass
class PopulationPrior:
    """Population prior with named hyperparameters over the training box."""

    hyperparameters: dict[str, float] = field(default_factory=lambda: dict(INTERIM_HYPERPARAMETERS))
    box: dict[str, tuple[float, float]] = field(default_factory=default_training_box)
    selection: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_SELECTION))

    family = FAMILY
    family_version = FAMILY_VERSION
    defaults = INTERIM_HYPERPARAMETERS  # the family's hyperparameter names and defaults
    factors = FACTORS  # the family's factors (a subclass family has its own)

    def __post_init__(self) -> None:
        missing = set(self.defaults) - set(self.hyperparameters)
        unknown = set(self.hyperparameters) - set(self.defaults)
        if missing or unknown:
            raise ConfigError(
                f"prior hyperparameters: missing {sorted(missing)}, unknown {sorted(unknown)}"
            )
        self.low, self.high = box_arrays(self.box)
        self._col = {name: i for i, name in enumerate(PARAM_NAMES)}

    # -- densities ---------------------------------------------------------------------
    def _h(self, name: str) -> tf.Tensor:
        """A hyperparameter as a float64 tensor; values may themselves be tensors, so the
        density is differentiable in them (hierarchical calibration fits them)."""
        value = self.hyperparameters[name]
        if isinstance(value, (tf.Tensor, tf.Variable)):
            return tf.cast(value, tf.float64)
        return tf.constant(float(value), tf.float64)

    def _bounds(self, name: str) -> tuple[float, float]:
        i = self._col[name]
        return float(self.low[i]), float(self.high[i])

    def _trunc_normal(self, loc: tf.Tensor, scale: tf.Tensor, name: str) -> tfd.Distribution:
        lo, hi = self._bounds(name)
        return tfd.TruncatedNormal(loc, scale, lo, hi)

    def _redshift_log_norm(self) -> tf.Tensor:
        """log of the normalizing integral of z**alpha exp(-(z/z0)**beta) over the box."""
        lo, hi = self._bounds("redshift")
        z = tf.linspace(tf.constant(lo, tf.float64), hi, _Z_GRID)
        log_f = self._redshift_log_unnorm(z)
        dz = (hi - lo) / (_Z_GRID - 1)
        return tf.reduce_logsumexp(log_f) + np.log(dz)

    def _redshift_log_unnorm(self, z: tf.Tensor) -> tf.Tensor:
        return self._h("alpha") * tf.math.log(z) - (z / self._h("z0")) ** self._h("beta")

    def conditionals(self, theta: tf.Tensor) -> dict[str, tfd.Distribution]:
        """The factor distributions given the parent columns of ``theta`` (N, D)."""
        c = self._col
        z, mass = theta[:, c["redshift"]], theta[:, c["log_mstar"]]
        return {
            "log_mstar": self._trunc_normal(
                self._h("mass_mean") + self._h("mass_evolution") * tf.math.log1p(z),
                self._h("mass_sigma"),
                "log_mstar",
            ),
            "log_zmet": self._trunc_normal(
                self._h("mzr_zero") + self._h("mzr_slope") * (mass - 10.0),
                self._h("mzr_sigma"),
                "log_zmet",
            ),
            "log_tau": self._trunc_normal(self._h("tau_mean"), self._h("tau_sigma"), "log_tau"),
            "age_frac": _TruncatedByCdf(
                tfd.Beta(self._h("age_a"), self._h("age_b")), *self._bounds("age_frac")
            ),
            "av": _TruncatedByCdf(tfd.Exponential(1.0 / self._h("av_scale")), *self._bounds("av")),
            "dust_n": self._trunc_normal(self._h("dust_n_mean"), self._h("dust_n_sigma"), "dust_n"),
            "log_u": self._trunc_normal(self._h("logu_mean"), self._h("logu_sigma"), "log_u"),
        }

    def factor_log_probs(
        self, theta: np.ndarray | tf.Tensor, factors: tuple[str, ...] | None = None
    ) -> dict[str, tf.Tensor]:
        """log density of each factor (all, or ``factors``) at ``theta`` (N, D); -inf outside
        the box of the factor's own parameter."""
        theta = tf.convert_to_tensor(theta, tf.float64)
        wanted = tuple(self.factors) if factors is None else factors
        out: dict[str, tf.Tensor] = {}
        if "redshift" in wanted:
            z = theta[:, self._col["redshift"]]
            lo, hi = self._bounds("redshift")
            inside = (z >= lo) & (z <= hi)
            safe_z = tf.where(inside, z, (lo + hi) / 2)
            total = self._redshift_log_unnorm(safe_z) - self._redshift_log_norm()
            out["redshift"] = tf.where(inside, total, -np.inf)
        conditionals = self.conditionals(theta)
        for name in wanted:
            if name != "redshift":
                out[name] = conditionals[name].log_prob(theta[:, self._col[name]])
        return out

    def log_prob(self, theta: np.ndarray | tf.Tensor) -> tf.Tensor:
        """log p(theta | hyperparameters), shape (N,); -inf outside the box."""
        return tf.add_n(list(self.factor_log_probs(theta).values()))

    def factors_log_prob(
        self, theta: np.ndarray | tf.Tensor, factors: tuple[str, ...]
    ) -> tf.Tensor:
        """Sum of the log densities of ``factors`` at ``theta`` (N, D)."""
        return tf.add_n(list(self.factor_log_probs(theta, factors).values()))

    def log_hyperprior(self, values: dict[str, Any]) -> tf.Tensor:
        """ln p of hyperparameter ``values`` that Step 2 adds to the marginal likelihood:
        flat (0) for this family's few hyperparameters inside their search bounds; a family
        with many (:mod:`lor.inference.flexible_prior`) regularizes them."""
        return tf.constant(0.0, tf.float64)

    def changed_factors(self, other: PopulationPrior) -> tuple[str, ...]:
        """Factors whose density differs between this prior and ``other``: all of them
        across families (every family names its factors after the parameter they draw)."""
        same_family = (self.family, self.family_version) == (other.family, other.family_version)
        if self.box != other.box or not same_family:
            return tuple(self.factors)
        return tuple(
            name
            for name, (_, hyper) in self.factors.items()
            if any(self.hyperparameters[h] != other.hyperparameters[h] for h in hyper)
        )

    def with_hyperparameters(self, hyperparameters: dict[str, Any]) -> PopulationPrior:
        """The same family, box and selection under other hyperparameter values (floats or
        tensors), e.g. the ones a calibration fitted."""
        return type(self)(
            hyperparameters=dict(hyperparameters), box=self.box, selection=dict(self.selection)
        )

    def sample(self, n: int, seed: int) -> np.ndarray:
        """Draw (n, D) parameters (before any selection)."""
        rng = np.random.default_rng(seed)
        theta = np.zeros((n, len(PARAM_NAMES)))
        lo, hi = self._bounds("redshift")
        grid = np.linspace(lo, hi, 8 * _Z_GRID)
        pdf = np.exp(self._redshift_log_unnorm(tf.constant(grid)).numpy())
        cdf = np.cumsum(pdf)
        cdf = (cdf - cdf[0]) / (cdf[-1] - cdf[0])
        theta[:, self._col["redshift"]] = np.interp(rng.uniform(size=n), cdf, grid)
        seeds = iter(rng.integers(0, 2**31 - 1, size=len(PARAM_NAMES)))
        for name in PARAM_NAMES[1:]:  # parents come first in PARAM_NAMES
            dist = self.conditionals(tf.constant(theta))[name]
            theta[:, self._col[name]] = (
                dist.sample(
                    sample_shape=() if dist.batch_shape.rank else n,
                    seed=(int(next(seeds)), 0),  # a pair: stateless, so draws repeat exactly
                )
                .numpy()
                .reshape(n)
            )
        return np.clip(theta, self.low, self.high)

    def as_record(self) -> dict[str, Any]:
        """What a ``lor.prior_versions`` row stores."""
        return {
            "family": self.family,
            "family_version": self.family_version,
            "hyperparameters": dict(self.hyperparameters),
            "selection": dict(self.selection),
            "box": {k: list(v) for k, v in self.box.items()},
        }


@dataclass
class PriorMixture:
    """The population prior averaged over draws of its hyperparameters, ``mean_k pi_alpha_k``:
    reweighting to it marginalizes over the hyperparameters' uncertainty instead of fixing
    them at their best values. Serves wherever a prior's density is read (prior ratios,
    MCMC); it has no factorized form, so ratios take the changed factors of any component."""

    components: list[PopulationPrior]

    def __post_init__(self) -> None:
        if not self.components:
            raise ConfigError("a prior mixture needs at least one component")
        first = self.components[0]
        self.box, self.selection, self.low, self.high = (
            first.box,
            first.selection,
            first.low,
            first.high,
        )
        self.factors = first.factors

    def factors_log_prob(
        self, theta: np.ndarray | tf.Tensor, factors: tuple[str, ...]
    ) -> tf.Tensor:
        terms = tf.stack([c.factors_log_prob(theta, factors) for c in self.components])
        return tf.reduce_logsumexp(terms, axis=0) - np.log(len(self.components))

    def log_prob(self, theta: np.ndarray | tf.Tensor) -> tf.Tensor:
        return self.factors_log_prob(theta, tuple(self.factors))

    def changed_factors(self, other: PopulationPrior) -> tuple[str, ...]:
        changed = {f for c in self.components for f in c.changed_factors(other)}
        return tuple(f for f in self.factors if f in changed)


class _TruncatedByCdf(tfd.Distribution):
    """Inverse-CDF truncation of a scalar distribution with a quantile function."""

    def __init__(self, base: tfd.Distribution, low: float, high: float) -> None:
        self._base, self._low, self._high = base, low, high
        super().__init__(
            dtype=base.dtype,
            reparameterization_type=tfd.NOT_REPARAMETERIZED,
            validate_args=False,
            allow_nan_stats=True,
            parameters=dict(locals()),
            name="Truncated" + base.name,
        )

    def _batch_shape(self) -> tf.TensorShape:
        return self._base.batch_shape

    def _event_shape(self) -> tf.TensorShape:
        return tf.TensorShape([])

    def _mass(self) -> tuple[tf.Tensor, tf.Tensor]:
        lo = self._base.cdf(tf.constant(self._low, self.dtype))
        hi = self._base.cdf(tf.constant(self._high, self.dtype))
        return lo, hi

    def _log_prob(self, x: tf.Tensor) -> tf.Tensor:
        lo, hi = self._mass()
        inside = (x >= self._low) & (x <= self._high)
        safe = tf.where(inside, x, (self._low + self._high) / 2)
        return tf.where(inside, self._base.log_prob(safe) - tf.math.log(hi - lo), -np.inf)

    def _sample_n(self, n: int, seed: Any = None) -> tf.Tensor:
        lo, hi = self._mass()
        shape = tf.concat([[n], self.batch_shape_tensor()], axis=0)
        u = tf.random.stateless_uniform(
            shape, seed=tfp.random.sanitize_seed(seed), dtype=self.dtype
        )
        return self._base.quantile(lo + u * (hi - lo))
