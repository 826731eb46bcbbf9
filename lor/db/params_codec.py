"""How posterior parameters are stored: the one codec between ``(N, P)`` float32 arrays and
the two columns of ``lor.posteriors`` (migration 0010).

A gmm_flow row (header K, D, z_lo, z_hi; K logits; K x D means; K packed Cholesky factors,
see :mod:`lor.posteriors.gmm_flow`) is split in two:

- ``params`` (``real[]``, float32, exact): the redshift marginal, itself a gmm_flow array
  with D = 1 -- header ``(K, 1, z_lo, z_hi)``, the K logits, the K redshift means and the K
  factors ``L_k[0, 0]``. These are the only entries the SQL functions (``lor.pz_*``,
  ``lor.nz``) read, at the positions a D = 1 header gives them, so they compute with the
  same float32 values in the same order as on the full array: bit-identical results;
- ``params_rest`` (``bytea``): every other mean and Cholesky entry, in the stored order,
  as little-endian IEEE float16 (relative rounding error <= 2**-11; D is recovered from
  the length).

Float16 halves the 168 non-redshift floats of a K = 4, D = 8 row; the redshift marginal
stays float32 because the SQL functions and the stored redshift summaries promise to be
exact. Rows of any other representation keep their whole float32 array in ``params`` and an
empty ``params_rest``; an empty ``params_rest`` always means that. Every reader and writer
of params goes through :func:`split` and :func:`join`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import numpy as np

from lor.errors import LorError

HEADER_SIZE: Final[int] = 4
"""Floats before the mixture parameters: K, D, z_lo, z_hi (as in gmm_flow)."""
REST_DTYPE: Final[np.dtype] = np.dtype("<f2")
"""Storage type of ``params_rest``: little-endian IEEE half precision."""
FLOAT16_MAX: Final[float] = float(np.finfo(np.float16).max)
SPLIT_REPRESENTATIONS: Final[frozenset[tuple[str, str]]] = frozenset({("gmm_flow", "1")})
"""Representations stored split (their layout is the one described above)."""
RELATIVE_ERROR: Final[float] = 2.0**-11
"""Bound on the relative rounding error of a ``params_rest`` entry in float16's normal
range (magnitudes >= 2**-14); below it the absolute error is <= 2**-25."""


class ParamsCodecError(LorError):
    """Parameters that the stored layout cannot hold (bad header, float16 overflow)."""


def _layout(k: int, d: int) -> tuple[np.ndarray, np.ndarray]:
    """Column indexes of the redshift marginal (D = 1 layout order) and of the rest in a
    full row of K components and D dimensions."""
    n_tril = d * (d + 1) // 2
    means = HEADER_SIZE + k + np.arange(k) * d
    chol = HEADER_SIZE + k + k * d + np.arange(k) * n_tril
    z_cols = np.concatenate([np.arange(HEADER_SIZE + k), means, chol])
    rest = np.ones(HEADER_SIZE + k * (1 + d + n_tril), bool)
    rest[z_cols] = False
    return z_cols, np.flatnonzero(rest)


def _header(params: np.ndarray) -> tuple[int, int]:
    k, d = params[0, 0], params[0, 1]
    if not (k >= 1 and d >= 1 and k == int(k) and d == int(d)):
        raise ParamsCodecError(f"params header must start with K >= 1, D >= 1; got {k}, {d}")
    k, d = int(k), int(d)
    if params.shape[1] != HEADER_SIZE + k * (1 + d + d * (d + 1) // 2):
        raise ParamsCodecError(f"params has {params.shape[1]} floats, header (K={k}, D={d})")
    if np.any(params[:, :2] != params[:1, :2]):
        raise ParamsCodecError("params rows of one batch must share K and D")
    return k, d


def split(
    params: np.ndarray, name: str = "gmm_flow", version: str = "1"
) -> tuple[np.ndarray, np.ndarray]:
    """``(N, P)`` float32 parameters of representation ``name`` ``version`` as the stored
    columns: ``params`` ``(N, 4 + 3K)`` float32 (the redshift marginal, header D = 1) and
    ``params_rest`` ``(N, B)`` uint8; for a representation not in
    :data:`SPLIT_REPRESENTATIONS`, ``params`` whole and ``params_rest`` ``(N, 0)``.

    Raises
    ------
    ParamsCodecError
        If the header is not a gmm_flow one, or an entry overflows float16.
    """
    p = np.asarray(params, np.float32)
    if p.ndim != 2:
        raise ParamsCodecError(f"params must be (N, P); got shape {p.shape}")
    if len(p) == 0:
        return np.zeros((0, 0), np.float32), np.zeros((0, 0), np.uint8)
    if (name, str(version)) not in SPLIT_REPRESENTATIONS:
        return p.copy(), np.zeros((len(p), 0), np.uint8)
    k, d = _header(p)
    z_cols, rest_cols = _layout(k, d)
    z = np.ascontiguousarray(p[:, z_cols])
    z[:, 1] = 1.0
    rest = p[:, rest_cols]
    if np.any(np.abs(rest) > FLOAT16_MAX):
        raise ParamsCodecError(f"params entries beyond float16's range ({FLOAT16_MAX:g})")
    half = np.ascontiguousarray(rest.astype(REST_DTYPE))
    return z, half.view(np.uint8).reshape(len(p), -1)


def join(z: np.ndarray, rest: np.ndarray) -> np.ndarray:
    """The ``(N, P)`` float32 parameters from the stored columns: ``z`` ``(N, 4 + 3K)``
    float32 and ``rest`` ``(N, B)`` uint8 (or ``N`` equal-length bytes).

    Raises
    ------
    ParamsCodecError
        If the columns do not fit one gmm_flow layout.
    """
    z = np.asarray(z, np.float32)
    if not isinstance(rest, np.ndarray):
        rest = np.frombuffer(b"".join(rest), np.uint8).reshape(len(z), -1)
    if z.ndim != 2 or len(z) != len(rest):
        raise ParamsCodecError(f"params {z.shape} and params_rest {rest.shape} do not match")
    n = len(z)
    if n == 0:
        return np.zeros((0, 0), np.float32)
    if rest.shape[1] == 0:  # stored whole (another representation, or nothing to split)
        return z.copy()
    k = int(z[0, 0])
    if z.shape[1] != HEADER_SIZE + 3 * k or np.any(z[:, 1] != 1):
        raise ParamsCodecError(f"stored params of shape {z.shape} are not a D = 1 marginal")
    per_component = rest.shape[1] // (REST_DTYPE.itemsize * k)
    d = int(round((-3 + np.sqrt(25 + 8 * per_component)) / 2))
    if rest.shape[1] != REST_DTYPE.itemsize * k * (d - 1 + d * (d + 1) // 2 - 1):
        raise ParamsCodecError(f"params_rest of {rest.shape[1]} bytes fits no D for K={k}")
    z_cols, rest_cols = _layout(k, d)
    out = np.empty((n, HEADER_SIZE + k * (1 + d + d * (d + 1) // 2)), np.float32)
    out[:, z_cols] = z
    out[:, 1] = d
    out[:, rest_cols] = np.ascontiguousarray(rest).view(REST_DTYPE).astype(np.float32)
    return out


def join_rows(z: Sequence[Sequence[float]], rest: Sequence[bytes]) -> np.ndarray:
    """:func:`join` of rows read one by one (``real[]`` as float lists, ``bytea`` as bytes)."""
    if not len(z):
        return np.zeros((0, 0), np.float32)
    return join(np.asarray(z, np.float32).reshape(len(z), -1), [bytes(r) for r in rest])


def round_trip(params: np.ndarray, name: str = "gmm_flow", version: str = "1") -> np.ndarray:
    """What storing and reading back ``params`` gives (for accuracy measurements)."""
    return join(*split(params, name, version))
