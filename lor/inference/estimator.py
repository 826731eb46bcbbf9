"""The amortized posterior estimator: (fluxes, errors) -> compressed flow posterior, one pass.

Neural posterior estimation: a network maps an object's photometry to the parameters of its
posterior in the representation its spec names (an
:class:`~lor.posteriors.base.AmortizedRepresentation`, built through the representation
registry; the shipped one is ``gmm_flow``), trained by maximizing
``log q(theta_true | x)`` over simulated pairs (interim prior -> emulator -> data model ->
selection). It conditions on each object's reported errors and is trained over survey depths
of 1-10 years with scattered errors and randomly missing bands, so one model serves any
catalog in that range. Inputs outside what it saw are flagged through a Gaussian-mixture
density over its input features (:mod:`lor.inference.flags`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from lor.artifacts import read_artifact, write_artifact
from lor.batching import padded_batches
from lor.errors import ArtifactError
from lor.posteriors.base import AmortizedRepresentation, RepresentationError
from lor.posteriors.registry import from_spec

FAMILY = "npe_mlp"
FAMILY_VERSION = "1"
FLUX_SOFTENING_NJY = 10.0
"""asinh softening of the flux features (nJy, ~29 AB): log-like above, linear below."""
MISSING_ERROR_NJY = 1e7
"""Error given to a missing band's feature (its flux feature is 0 and its indicator 1)."""


def input_features(flux: np.ndarray, flux_err: np.ndarray, missing: np.ndarray) -> np.ndarray:
    """Network inputs (N, 3B): asinh fluxes, log errors, missing-band indicators."""
    missing = (
        np.asarray(missing, bool) | ~np.isfinite(flux) | ~np.isfinite(flux_err) | (flux_err <= 0)
    )
    f = np.where(missing, 0.0, flux)
    e = np.where(missing, MISSING_ERROR_NJY, flux_err)
    return np.concatenate(
        [
            np.arcsinh(f / (2 * FLUX_SOFTENING_NJY)),
            np.log(e / FLUX_SOFTENING_NJY),
            missing.astype(np.float64),
        ],
        axis=1,
    ).astype(np.float32)


class EstimatorNetwork(tf.Module):
    """MLP with SiLU activations and a linear head sized for the representation."""

    def __init__(self, n_in: int, n_out: int, hidden: list[int], seed: int = 0) -> None:
        super().__init__(name="npe")
        rng = np.random.default_rng(seed)
        sizes = [n_in, *hidden, n_out]
        self.layers_w: list[tf.Variable] = []
        self.layers_b: list[tf.Variable] = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
            scale = np.sqrt(2.0 / a) if i < len(hidden) else 0.01 * np.sqrt(1.0 / a)
            self.layers_w.append(
                tf.Variable(rng.normal(0, scale, (a, b)).astype(np.float32), name=f"w{i}")
            )
            self.layers_b.append(tf.Variable(np.zeros(b, np.float32), name=f"b{i}"))

    def __call__(self, x: tf.Tensor) -> tf.Tensor:
        for w, b in zip(self.layers_w[:-1], self.layers_b[:-1], strict=True):
            x = tf.nn.silu(x @ w + b)
        return x @ self.layers_w[-1] + self.layers_b[-1]

    def arrays(self) -> dict[str, np.ndarray]:
        return {f"w{i}": w.numpy() for i, w in enumerate(self.layers_w)} | {
            f"b{i}": b.numpy() for i, b in enumerate(self.layers_b)
        }

    def assign(self, arrays: dict[str, np.ndarray]) -> None:
        for i, (w, b) in enumerate(zip(self.layers_w, self.layers_b, strict=True)):
            w.assign(arrays[f"w{i}"])
            b.assign(arrays[f"b{i}"])


class AmortizedEstimator:
    """A trained estimator: photometry -> stored posterior parameters (and OOD scores)."""

    family = FAMILY
    family_version = FAMILY_VERSION

    def __init__(self, spec: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        self.spec = spec
        self.band_names: list[str] = list(spec["band_names"])
        self.representation = output_representation(spec)
        n_in = 3 * len(self.band_names)
        self.network = EstimatorNetwork(n_in, self.representation.n_raw, spec["hidden"])
        self.network.assign(arrays)
        self._x_mean = tf.constant(arrays["x_mean"], tf.float32)
        self._x_std = tf.constant(arrays["x_std"], tf.float32)
        self.ood = {k[4:]: v for k, v in arrays.items() if k.startswith("ood_")}
        self.chol_scale = np.asarray(
            arrays.get("chol_scale", np.ones(self.representation.n_dim)), np.float32
        )
        self._multiplier = tf.constant(self.representation.width_multiplier(self.chol_scale))
        self._forward = self._compiled()

    def _compiled(self):  # type: ignore[no-untyped-def]
        """The network and output layer, traced once for any batch length (XLA compiles once
        per bucket shape of :func:`lor.batching.padded_batches`): no retracing."""
        rows = tf.TensorSpec([None, 3 * len(self.band_names)], tf.float32)
        return tf.function(self._graph, jit_compile=True, input_signature=[rows])

    @classmethod
    def load(cls, folder: Path, sha256: str) -> AmortizedEstimator:
        spec, arrays = read_artifact(folder, sha256)
        if (spec.get("family"), spec.get("family_version")) != (FAMILY, FAMILY_VERSION):
            raise ArtifactError(f"{folder} is not a {FAMILY} v{FAMILY_VERSION} estimator")
        return cls(spec, arrays)

    def save(self, folder: Path) -> str:
        arrays = self.network.arrays() | {
            "x_mean": self._x_mean.numpy(),
            "x_std": self._x_std.numpy(),
            "chol_scale": self.chol_scale,
        }
        arrays |= {f"ood_{k}": v for k, v in self.ood.items()}
        return write_artifact(folder, self.spec, arrays)

    def _graph(self, x: tf.Tensor) -> tf.Tensor:
        raw = self.network((x - self._x_mean) / self._x_std)
        return self.representation.from_network_outputs(raw) * self._multiplier

    def set_chol_scale(self, scale: np.ndarray) -> None:
        """Widen (>1) or narrow (<1) every posterior along each parameter (recalibration)."""
        self.chol_scale = np.asarray(scale, np.float32)
        self._multiplier = tf.constant(self.representation.width_multiplier(self.chol_scale))
        self._forward = self._compiled()

    def input_features(
        self, flux: np.ndarray, flux_err: np.ndarray, missing: np.ndarray
    ) -> np.ndarray:
        """This family's network inputs: :func:`input_features`."""
        return input_features(flux, flux_err, missing)

    def standardized(self, features: np.ndarray) -> np.ndarray:
        return (features - self._x_mean.numpy()) / self._x_std.numpy()

    def posterior_params(self, features: np.ndarray) -> np.ndarray:
        """Stored representation parameters (N, P) float32 for input features (N, 3B)."""
        return padded_batches(
            self._forward, np.asarray(features, np.float32), self.representation.floats_per_object
        )


def output_representation(spec: dict[str, Any]) -> AmortizedRepresentation:
    """The representation an estimator spec records, built through the registry; it must
    be one a network can output (:class:`~lor.posteriors.base.AmortizedRepresentation`)."""
    try:
        rep = from_spec(spec["representation"])
    except (KeyError, RepresentationError) as exc:
        raise ArtifactError(f"estimator {spec.get('name')!r}: {exc}") from exc
    if not isinstance(rep, AmortizedRepresentation):
        raise ArtifactError(
            f"estimator {spec.get('name')!r}: representation {rep.name} v{rep.version} "
            "cannot be a network's output (see lor.posteriors.base.AmortizedRepresentation)"
        )
    return rep
