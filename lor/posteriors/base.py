"""The interface every stored posterior representation implements.

A representation turns a per-object posterior over the D SPS parameters into a fixed-length
float32 vector (one ``lor.posteriors.params`` row) and back. Every stored row carries the
representation's ``name`` and ``version``, and readers rebuild the representation from those
two strings and its configuration through :func:`lor.posteriors.registry.get_representation`,
never from pickles (the ``qp`` habit: one class per representation behind one base class).

Parameter index 0 is always redshift and index 1 always ``log_mstar`` (see
:data:`lor.sps.parameters.PARAM_NAMES`); the redshift marginal is what SQL needs, so every
representation must provide it analytically or at least cheaply.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Final

import numpy as np

from lor.errors import LorError

if TYPE_CHECKING:
    import tensorflow_probability as tfp

REDSHIFT_INDEX: Final[int] = 0
"""Column of redshift in every parameter array."""

LOG_MSTAR_INDEX: Final[int] = 1
"""Column of ``log_mstar`` in every parameter array."""

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


class PosteriorRepresentation(ABC):
    """A compressed, stored posterior over D bounded SPS parameters.

    Subclasses set the class attributes ``name`` and ``version`` (stamped on every stored
    row) and implement the abstract methods. All arrays of stored parameters are
    ``(N, floats_per_object)`` float32, one row per object; every method is vectorized over
    objects, because the pipeline processes catalogs of millions of rows.
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
        """Compress (weighted) posterior samples ``(N, S, D)`` into stored parameters."""

    @abstractmethod
    def decode(self, params: Any) -> tfp.distributions.Distribution:
        """A TFP distribution over parameters, batch shape ``(N,)``, event shape ``(D,)``."""

    @abstractmethod
    def log_prob(self, params: np.ndarray, theta: np.ndarray) -> np.ndarray:
        """Log density at ``theta`` of shape ``(N, D)`` or ``(N, M, D)``; returns ``(N[, M])``."""

    @abstractmethod
    def sample(self, params: np.ndarray, n: int, seed: int | None = None) -> np.ndarray:
        """Draw ``n`` samples per object: ``(N, n, D)`` float64."""

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
