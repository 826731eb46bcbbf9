"""The interface every stored posterior representation implements.

A representation turns a per-object posterior over the D SPS parameters into a fixed-length
float32 vector (one ``lor.posteriors.params`` row) and back. Every stored row carries the
representation's ``name`` and ``version``, and readers rebuild the representation from those
two strings and its configuration through :func:`lor.posteriors.registry.get_representation`,
never from pickles (the ``qp`` habit: one class per representation behind one interface).

The interface is a set of protocols, each what one kind of caller needs:
:class:`PosteriorRepresentation` (every reader and the pipeline), :class:`AmortizedRepresentation`
(an estimator's output layer and training objective), :class:`GaussianComponents` (the
cubature reweighting) and :class:`SelfDescribing` (rows that carry their own configuration).
A new representation is one module with one class plus one line in
:data:`lor.posteriors.registry.REPRESENTATION_CLASSES`.

Parameter index 0 is always redshift and index 1 always ``log_mstar`` (see
:data:`lor.sps.parameters.PARAM_NAMES`); the redshift marginal is what SQL needs, so every
representation must provide it analytically or at least cheaply.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Final, Protocol, runtime_checkable

import numpy as np

from lor.errors import LorError
from lor.sps.parameters import MASS_INDEX, PARAM_NAMES

if TYPE_CHECKING:
    import tensorflow as tf
    import tensorflow_probability as tfp

REDSHIFT_INDEX: Final[int] = PARAM_NAMES.index("redshift")
"""Column of redshift in every parameter array (0)."""

LOG_MSTAR_INDEX: Final[int] = MASS_INDEX
"""Column of ``log_mstar`` in every parameter array (1): :data:`lor.sps.parameters.MASS_INDEX`."""

SUMMARY_QUANTILES: Final[dict[str, float]] = {
    "q025": 0.025,
    "q16": 0.16,
    "q50": 0.5,
    "q84": 0.84,
    "q975": 0.975,
}
"""Quantile columns stored for each summarised quantity, by column suffix."""

SUMMARY_STATS: Final[tuple[str, ...]] = ("mean", "mode", "std", *SUMMARY_QUANTILES)
"""Suffixes of the summary columns of one quantity, in ``lor.posteriors`` column order."""

SUMMARY_QUANTITIES: Final[tuple[str, ...]] = ("z", "log_mstar", "log_sfr")
"""Quantities summarised in the ``lor.posteriors`` table."""

SUMMARY_COLUMNS: Final[tuple[str, ...]] = tuple(
    f"{quantity}_{stat}" for quantity in SUMMARY_QUANTITIES for stat in SUMMARY_STATS
)
"""The 24 summary column names, exactly as in the ``lor.posteriors`` table."""

DerivedFn = Callable[[np.ndarray], Mapping[str, np.ndarray]]
"""Maps parameter samples ``(M, D)`` to derived quantities, e.g. ``{"log_sfr": (M,)}``."""


class RepresentationError(LorError):
    """Posterior parameters or a representation's configuration are malformed or unknown."""


@runtime_checkable
class Marginal(Protocol):
    """A one-parameter marginal of N posteriors; points broadcast as in :meth:`z_pdf`."""

    def pdf(self, x: Any) -> np.ndarray: ...

    def cdf(self, x: Any) -> np.ndarray: ...

    def quantile(self, q: Any) -> np.ndarray: ...


@runtime_checkable
class PosteriorRepresentation(Protocol):
    """A compressed, stored posterior over D bounded SPS parameters: everything the pipeline
    calls on one (storage, SQL export, summaries, OOD checks, MCMC compression).

    Implementations set the class attributes ``name`` and ``version`` (stamped on every
    stored row) and may subclass this protocol explicitly, which makes the abstract methods
    mandatory and inherits :meth:`z_prob`. All arrays of stored parameters are
    ``(N, floats_per_object)`` float32, one row per object; every method is vectorized over
    objects, because the pipeline processes catalogs of millions of rows. The stored layout
    is the representation's own business: callers read parameters only through these methods.
    """

    name: ClassVar[str]
    version: ClassVar[str]

    @property
    @abstractmethod
    def n_dim(self) -> int:
        """Number of SPS parameters D."""

    @property
    @abstractmethod
    def floats_per_object(self) -> int:
        """Length of the stored float32 vector of one object."""

    @abstractmethod
    def config(self) -> dict[str, Any]:
        """JSON-serialisable arguments that rebuild this representation via the registry."""

    @abstractmethod
    def validate(self, params: np.ndarray) -> np.ndarray:
        """Check stored parameters and return them as a ``(N, P)`` float32 array.

        Raises
        ------
        RepresentationError
            If the shape, header or values are not a valid posterior of this representation.
        """

    @abstractmethod
    def encode(self, samples: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
        """Compress (weighted) posterior samples ``(N, S, D)`` inside the box into stored
        parameters (MCMC chains, importance-reweighted draws). ``weights`` are non-negative,
        ``(N, S)``, any normalisation; ``None`` means equal."""

    @abstractmethod
    def decode(self, params: Any) -> tfp.distributions.Distribution:
        """A TFP distribution over parameters, batch shape ``(N,)``, event shape ``(D,)``."""

    @abstractmethod
    def log_prob(self, params: np.ndarray, theta: np.ndarray) -> np.ndarray:
        """Log density at ``theta`` of shape ``(N, D)`` or ``(N, M, D)``; returns ``(N[, M])``."""

    @abstractmethod
    def sample(
        self, params: np.ndarray, n: int, seed: int | np.ndarray | None = None
    ) -> np.ndarray:
        """Draw ``n`` samples per object: ``(N, n, D)`` float64, reproducible for a seed.

        ``seed`` may be ``(N,)`` uint64 per-object keys (:mod:`lor.seeds`): each object's
        draws then come from its own stream, whatever the other rows (the processing path
        passes these, so stored results do not depend on batching)."""

    @abstractmethod
    def sample_at(self, params: np.ndarray, points: np.ndarray, n_dims: int) -> np.ndarray:
        """Draws ``(N, S, n_dims)`` of the first ``n_dims`` parameters at unit-cube
        ``points`` ``(S, 1 + n_dims)`` shared by every object (a low-discrepancy set), so
        sample summaries are a deterministic function of the posterior. Coordinate 0 is for
        the representation's own discrete choice (a mixture component), the others map to
        the parameters."""

    @abstractmethod
    def edge_mass(self, params: np.ndarray, fraction: float) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mass ``(N, D)`` within ``fraction`` of the box width of each parameter's
        lower and upper edge (the PRIOR_EDGE check)."""

    @abstractmethod
    def candidates(self, params: np.ndarray) -> np.ndarray:
        """A few high-density points ``(N, C, D)`` of each posterior in parameter space,
        most probable first (where the posterior-predictive fit check looks first)."""

    @abstractmethod
    def marginal(self, params: np.ndarray, dim: int) -> Marginal:
        """The 1-D marginal of parameter ``dim`` (PIT, quantiles, plots)."""

    @abstractmethod
    def z_pdf(self, params: np.ndarray, z: Any) -> np.ndarray:
        """Redshift marginal density.

        Points broadcast against the objects as in NumPy and TFP: a scalar or ``(N,)`` gives
        ``(N,)``, ``(N, G)`` gives ``(N, G)``, and a grid shared by all objects is ``(1, G)``.
        The same holds for :meth:`z_cdf`, :meth:`z_prob` and :meth:`z_quantile`.
        """

    @abstractmethod
    def z_cdf(self, params: np.ndarray, z: Any) -> np.ndarray:
        """Redshift marginal cumulative distribution, ``P(redshift <= z)``."""

    @abstractmethod
    def z_quantile(self, params: np.ndarray, q: Any) -> np.ndarray:
        """Inverse of :meth:`z_cdf`."""

    def z_prob(self, params: np.ndarray, z1: Any, z2: Any) -> np.ndarray:
        """``P(z1 < redshift < z2)``; zero where ``z2 <= z1``."""
        prob = self.z_cdf(params, z2) - self.z_cdf(params, z1)
        return np.clip(prob, 0.0, 1.0)

    @abstractmethod
    def summaries(
        self,
        params: np.ndarray,
        derived: DerivedFn | None = None,
        n_samples: int = 256,
        seed: int | None = 0,
    ) -> dict[str, np.ndarray]:
        """The :data:`SUMMARY_COLUMNS`, each an ``(N,)`` float64 array (NaN if unavailable)."""


@runtime_checkable
class AmortizedRepresentation(PosteriorRepresentation, Protocol):
    """A representation an amortized estimator can output: a differentiable output layer
    from unconstrained network outputs, and the training objective in its own coordinates
    (what :mod:`lor.inference.estimator` and its training call)."""

    @property
    @abstractmethod
    def n_raw(self) -> int:
        """Width of the network output that :meth:`from_network_outputs` consumes."""

    @abstractmethod
    def from_network_outputs(self, raw: tf.Tensor) -> tf.Tensor:
        """Valid stored parameters ``(N, P)`` from network outputs ``(N, n_raw)``
        (differentiable, so every network output is storable)."""

    @abstractmethod
    def width_multiplier(self, scale: np.ndarray) -> np.ndarray:
        """Elementwise factor ``(P,)`` on stored parameters that widens (>1) or narrows (<1)
        every posterior along each parameter d by ``scale[d]`` (width recalibration)."""

    @abstractmethod
    def to_u(self, theta: np.ndarray) -> np.ndarray:
        """Parameters ``(..., D)`` in the coordinates :meth:`u_log_prob` is evaluated in."""

    @abstractmethod
    def u_log_prob(self, params: tf.Tensor, u: tf.Tensor) -> tf.Tensor:
        """``log q(u | params)`` in those coordinates (the training objective, TF)."""


@runtime_checkable
class GaussianComponents(PosteriorRepresentation, Protocol):
    """A representation whose posteriors are Gaussian mixtures in a logit-of-box coordinate
    ``u``: what the cubature reweighting (:mod:`lor.hierarchy.cubature`) moment-matches."""

    box_lo: np.ndarray
    """Lower box edges ``(D,)``: ``u_d = logit((theta_d - lo_d) / (hi_d - lo_d))``."""
    box_hi: np.ndarray
    """Upper box edges ``(D,)``."""
    n_components: int
    """K, the number of mixture components."""

    @abstractmethod
    def unpack(self, params: Any) -> tuple[Any, Any, Any]:
        """Logits ``(N, K)``, means ``(N, K, D)`` and Cholesky factors ``(N, K, D, D)`` in ``u``."""

    @abstractmethod
    def pack(self, logits: Any, means: Any, chol: Any) -> Any:
        """Stored rows ``(N, P)`` from logits, means and Cholesky factors (inverse of unpack)."""


@runtime_checkable
class SelfDescribing(Protocol):
    """A representation class whose stored rows carry what reading their redshift marginal
    needs, so a reader with only a row rebuilds it (:func:`lor.posteriors.registry.from_row`)."""

    @classmethod
    def from_header(cls, row: Any) -> PosteriorRepresentation:
        """The representation that reads the redshift marginal of ``row`` and rows like it."""
        ...
