"""Per-object random streams, so an object's draws do not depend on which objects share its batch.

Every random draw on the processing path (posterior-predictive check, MCMC fallback,
importance reweighting) reads a counter-based stream keyed by the object: a 64-bit key
hashed from the run id and the object's uuid (:func:`object_keys`), and, for each draw, the
SplitMix64 output function (Steele, Lea & Flood 2014, "Fast splittable pseudorandom number
generators", OOPSLA) of ``key + (counter + 1) * golden gamma``. The draw number ``counter``
counts within one object's stream, so draw ``j`` of object ``o`` is the same whatever the
batch size or the object's row in it. Each draw site folds its own ``stream`` number into
the key, so sites never share draws. The TensorFlow twin (:func:`tf_uniforms`) computes the
same function for the compiled MCMC loop.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import numpy as np

GOLDEN_GAMMA = 0x9E3779B97F4A7C15
"""SplitMix64's increment (2^64 / golden ratio, odd)."""
_M1, _M2 = 0xBF58476D1CE4E5B9, 0x94D049BB133111EB
_TO_UNIT = 2.0**-53

# Draw sites: each has its own stream, so no two sites reuse an object's draws.
SAMPLE = 0
"""A posterior representation's draws, under keys the caller already folded its site into."""
FIT_CHECK = 1
"""The posterior-predictive fit check's posterior draws (:mod:`lor.inference.amortized`)."""
MCMC_START = 2
"""The MCMC fallback's initial walkers."""
MCMC_STEPS = 3
"""The MCMC fallback's per-step uniforms (:class:`lor.inference.mcmc.EnsembleSampler`)."""
IMPORTANCE = 4
"""Importance-reweighting draws of a reprocess run (:mod:`lor.hierarchy.reweight`)."""

Keys = np.ndarray
"""``(N,)`` uint64: one key per object."""


def _mix(z: np.ndarray) -> np.ndarray:
    """SplitMix64's output function, elementwise on uint64 (wrapping arithmetic)."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(_M1)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(_M2)
    return z ^ (z >> np.uint64(31))


def _uuid_words(object_id: Sequence[uuid.UUID] | Any) -> np.ndarray:
    """``(N, 2)`` uint64: the two big-endian halves of each uuid."""
    raw = getattr(object_id, "raw", None)  # lor.db.copy_binary.UuidColumn: (N, 16) uint8
    if raw is None:
        raw = np.frombuffer(b"".join(u.bytes for u in object_id), np.uint8)
    return np.ascontiguousarray(raw, np.uint8).reshape(-1, 16).view(">u8").astype(np.uint64)


def object_keys(run_id: int, object_id: Sequence[uuid.UUID] | Any) -> Keys:
    """One key per object: a hash of the run id and the object's uuid (list or UuidColumn).

    The same object in the same run always gets the same key, so redoing a batch, or
    processing the run in batches of another size, redraws the same samples.
    """
    words = _uuid_words(object_id)
    with np.errstate(over="ignore"):
        key = _mix(np.full(len(words), np.uint64(run_id % 2**64) + np.uint64(GOLDEN_GAMMA)))
        key = _mix(key ^ words[:, 0])
        return _mix(key ^ words[:, 1])


def index_keys(seed: int, n: int) -> Keys:
    """Keys of rows ``0..n-1`` under one integer seed: for callers without object ids (tests,
    benchmarks on arrays); row ``i`` draws the same samples whatever ``n`` is."""
    with np.errstate(over="ignore"):
        base = _mix(np.uint64(seed % 2**64) + np.uint64(GOLDEN_GAMMA))
        return _mix(base ^ _mix(np.arange(1, n + 1, dtype=np.uint64) * np.uint64(GOLDEN_GAMMA)))


def as_keys(seed: int | np.ndarray, n: int) -> Keys:
    """Per-row keys: ``seed`` itself when it is ``(n,)`` keys, else :func:`index_keys`."""
    if np.ndim(seed) == 0:
        return index_keys(int(seed), n)
    keys = np.asarray(seed)
    if keys.shape != (n,) or keys.dtype != np.uint64:
        raise ValueError(f"per-object keys must be ({n},) uint64, not {keys.shape} {keys.dtype}")
    return keys


def stream_keys(keys: Keys, stream: int) -> Keys:
    """The keys of one draw site's stream (see the module docstring)."""
    with np.errstate(over="ignore"):
        return _mix(np.asarray(keys, np.uint64) ^ _mix(np.uint64(stream) * np.uint64(_M1)))


def uniforms(keys: Keys, stream: int, shape: tuple[int, ...]) -> np.ndarray:
    """``(N, *shape)`` float64 uniforms in the open interval (0, 1), one stream per object."""
    keys = stream_keys(keys, stream)
    count = int(np.prod(shape, dtype=np.int64))
    counter = np.arange(1, count + 1, dtype=np.uint64) * np.uint64(GOLDEN_GAMMA)
    with np.errstate(over="ignore"):
        bits = _mix(keys[:, None] + counter[None, :])
    unit = ((bits >> np.uint64(11)).astype(np.float64) + 0.5) * _TO_UNIT
    return unit.reshape(len(keys), *shape)


def normals(keys: Keys, stream: int, shape: tuple[int, ...], dtype: Any = np.float64) -> np.ndarray:
    """``(N, *shape)`` standard normals (inverse CDF of :func:`uniforms`), one stream per object."""
    from scipy.special import ndtri

    return ndtri(uniforms(keys, stream, shape)).astype(dtype, copy=False)


def tf_uniforms(keys: Any, counter_start: Any, shape: tuple[int, int, int], dtype: Any) -> Any:
    """TensorFlow twin of :func:`uniforms` for ``shape = (S, N, W)`` with the objects on axis 1:
    element ``(s, n, w)`` is draw ``counter_start + s * W + w`` of object ``n``'s stream
    (``keys`` already :func:`stream_keys`, a uint64 tensor ``(N,)``)."""
    import tensorflow as tf

    s, _, w = shape
    u64 = tf.uint64
    index = tf.cast(tf.range(1, s * w + 1, dtype=tf.int64), u64)[:, None]  # (S*W, 1)
    counter = tf.cast(counter_start, u64) + index
    z = keys[None, :] + counter * tf.constant(GOLDEN_GAMMA, u64)  # (S*W, N)
    for shift, mult in ((30, _M1), (27, _M2)):
        z = tf.bitwise.bitwise_xor(z, tf.bitwise.right_shift(z, tf.constant(shift, u64)))
        z = z * tf.constant(mult, u64)
    z = tf.bitwise.bitwise_xor(z, tf.bitwise.right_shift(z, tf.constant(31, u64)))
    unit = (tf.cast(tf.bitwise.right_shift(z, tf.constant(11, u64)), tf.float64) + 0.5) * _TO_UNIT
    unit = tf.transpose(tf.reshape(unit, (s, w, -1)), (0, 2, 1))  # (S, N, W)
    return tf.cast(unit, dtype)
