"""Rest-frame track emulator: a network of the six redshift-independent parameters predicts
the PCA coefficients of the galaxy's whole magnitude-redshift track in every band.

Speculator's original design (Alsing et al. 2020, ApJS 249, 5: PCA basis + network) moved
to where the photometry is exact. The rest-frame spectrum before the IGM depends on
``theta6 = (log_zmet, log_tau, log_age_yr, av, dust_n, log_u)`` only
(:mod:`lor.sps.restframe`); redshifting, IGM and band integration are linear in it and are
tabulated exactly on a fine redshift grid per band set. The emulated quantity is the track
``-2.5 log10 <L>_b(z)`` on that grid: log units, because the photometry spans 40 magnitudes
(``av = 3``, ``dust_n = 2`` in the rest-frame UV), which a PCA in linear flux units cannot
represent (measured: 0.08-0.8 mag rms per band with 256 components; 96 log-track
components: 3e-4 mag). At run time a galaxy's magnitudes are its coefficients dotted with the basis rows of
the two grid redshifts around ``z`` (linear interpolation), plus the exact distance term and
``-2.5 log_mstar``.

The network and the basis are trained per band set (the basis spans the tracks of that band
set); the rest-frame physics and the training draws are shared, so a new band set costs one
projection table and one training run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from lor.artifacts import read_artifact, write_artifact
from lor.emulators.speculator import SpeculatorEmulator, SpeculatorNetwork, _interp
from lor.errors import ParameterError

FAMILY = "restframe"
FAMILY_VERSION = "1"
FEATURES = (
    "log_zmet",
    "log_tau",
    "log_age_yr",
    "log_age_over_tau",
    "av",
    "dust_n",
    "log_u",
)
"""Network inputs: the six rest-frame parameters plus log10(age / tau), where colours change
fastest."""

_LOG10 = float(np.log(10.0))


class RestframeEmulator(SpeculatorEmulator):
    """Parameters ``(N, D)`` -> magnitudes ``(N, B)`` through the rest-frame track basis.

    Input checks, the training-box flag, band lookup and the padded batching are the
    speculator family's (inherited); the graph and the stored arrays are this family's.
    """

    family = FAMILY
    family_version = FAMILY_VERSION

    def __init__(self, spec: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        self.spec = spec
        self.param_names = list(spec["param_names"])
        self.band_names = list(spec["band_names"])
        self.mass_index = self.param_names.index("log_mstar")
        self.reference_log_mstar = float(spec["reference_log_mstar"])
        self.box_lo = np.asarray(spec["training_box"]["low"], np.float64)
        self.box_hi = np.asarray(spec["training_box"]["high"], np.float64)
        self._col = {name: i for i, name in enumerate(self.param_names)}
        self._z_index = self._col["redshift"]
        grid = spec["z_grid"]
        self.z0, self.dz, self.n_z = float(grid["z0"]), float(grid["dz"]), int(grid["n"])
        self._arrays = dict(arrays)
        self._x_lo = tf.constant(arrays["x_lo"], tf.float32)
        self._x_scale = tf.constant(2.0 / (arrays["x_hi"] - arrays["x_lo"]), tf.float32)
        self._age_z = tf.constant(arrays["age_z"], tf.float32)
        self._log_age_yr = tf.constant(np.log10(arrays["age_gyr"] * 1e9), tf.float32)
        self._c_mean = tf.constant(arrays["coef_mean"], tf.float32)
        self._c_std = tf.constant(arrays["coef_std"], tf.float32)
        # (n_z, n_pc + 1, B): the track mean as row 0 (coefficient 1), then the basis.
        self._basis = tf.constant(arrays["basis"], tf.float32)
        self._dm_z = tf.constant(arrays["dm_z"], tf.float32)
        self._dm_smooth = tf.constant(arrays["dm_smooth"], tf.float32)
        self._band_const = tf.constant(arrays["band_const"], tf.float32)
        n_pc = int(arrays["basis"].shape[1]) - 1
        self.network = SpeculatorNetwork(len(FEATURES), n_pc, spec["hidden"])
        self.network.assign(arrays)
        rows = tf.TensorSpec([None, len(self.param_names)], tf.float32)
        self._predict = tf.function(self._graph, jit_compile=True, input_signature=[rows])

    @classmethod
    def load(cls, folder: Path, sha256: str) -> RestframeEmulator:
        spec, arrays = read_artifact(folder, sha256)
        if (spec.get("family"), spec.get("family_version")) != (FAMILY, FAMILY_VERSION):
            raise ParameterError(f"{folder} is not a {FAMILY} v{FAMILY_VERSION} emulator")
        return cls(spec, arrays)

    def arrays(self) -> dict[str, np.ndarray]:
        """Everything the artifact stores, with the network's current weights."""
        return self._arrays | self.network.arrays()

    def save(self, folder: Path, extra_spec: dict[str, Any] | None = None) -> str:
        return write_artifact(folder, {**self.spec, **(extra_spec or {})}, self.arrays())

    # -- prediction --------------------------------------------------------------------
    def features(self, theta: tf.Tensor) -> tf.Tensor:
        """Network inputs (N, len(FEATURES)) before normalization."""
        c = self._col
        z = theta[:, c["redshift"]]
        log_age = tf.math.log(theta[:, c["age_frac"]]) / _LOG10 + _interp(
            z, self._age_z, self._log_age_yr
        )
        return self.features_restframe(
            tf.stack(
                [
                    theta[:, c["log_zmet"]],
                    theta[:, c["log_tau"]],
                    log_age,
                    theta[:, c["av"]],
                    theta[:, c["dust_n"]],
                    theta[:, c["log_u"]],
                ],
                axis=1,
            )
        )

    @staticmethod
    def features_restframe(theta6: tf.Tensor) -> tf.Tensor:
        """Features from the six rest-frame parameters (log_age_yr in log10 years)."""
        over_tau = theta6[:, 2] - 9.0 - theta6[:, 1]
        return tf.concat([theta6[:, :3], over_tau[:, None], theta6[:, 3:]], axis=1)

    def coefficients(self, features: tf.Tensor) -> tf.Tensor:
        """PCA coefficients (N, n_pc) of the track for un-normalized features."""
        x = (features - self._x_lo) * self._x_scale - 1.0
        return self.network(x) * self._c_std + self._c_mean

    def track_at(self, coef: tf.Tensor, z: tf.Tensor) -> tf.Tensor:
        """``-2.5 log10 <L>_b`` (N, B) at redshifts ``z``: the track, interpolated linearly."""
        pos = tf.clip_by_value((z - self.z0) / self.dz, 0.0, self.n_z - 1.000001)
        i = tf.cast(tf.floor(pos), tf.int32)
        frac = (pos - tf.cast(i, tf.float32))[:, None]
        c1 = tf.concat([tf.ones_like(coef[:, :1]), coef], axis=1)[:, :, None]
        lo = tf.reduce_sum(c1 * tf.gather(self._basis, i), axis=1)
        hi = tf.reduce_sum(c1 * tf.gather(self._basis, i + 1), axis=1)
        return lo + frac * (hi - lo)

    def distance_term(self, z: tf.Tensor) -> tf.Tensor:
        """Exact ``m_b + 2.5 log10 <L>_b`` (N, B) for 1 Msun: distance, ``1 + z``, units.

        ``5 log10(D_L / z)`` is smooth and tabulated; ``5 log10 z`` is added analytically
        (linear interpolation of ``5 log10 D_L`` itself errs by 3 mmag at ``z = 0.01``).
        """
        smooth = _interp(z, self._dm_z, self._dm_smooth)
        exact = 5.0 * tf.math.log(z) / _LOG10 + 2.5 * tf.math.log(1.0 + z) / _LOG10
        return (smooth + exact)[:, None] + self._band_const[None, :]

    def _graph(self, theta: tf.Tensor) -> tf.Tensor:
        z = theta[:, self._z_index]
        track = self.track_at(self.coefficients(self.features(theta)), z)
        return track + self.distance_term(z) - 2.5 * theta[:, self.mass_index, None]

    def flops_per_object(self) -> int:
        """Multiply-adds x 2 of the network, the gated activations and the basis dot."""
        hidden = list(self.spec["hidden"])
        n_pc = int(self._basis.shape[1]) - 1
        sizes = [len(FEATURES), *hidden, n_pc]
        matmul = sum(2 * a * b for a, b in zip(sizes[:-1], sizes[1:], strict=True))
        return matmul + 5 * sum(hidden) + 2 * 2 * (n_pc + 1) * len(self.band_names)
