"""Fixed-shape batching for compiled TensorFlow functions (emulators, estimators)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import tensorflow as tf

SMALLEST_BUCKET = 1024
CHUNK = 8192
"""Rows per call of a compiled network: large enough that call overhead is negligible."""


def bucket_sizes(n: int, batch_size: int) -> list[int]:
    """Chunk lengths covering ``n`` rows: full ``batch_size`` chunks, then the remainder as
    descending powers of two (the last one padded), never below :data:`SMALLEST_BUCKET`.

    XLA compiles once per input shape, so only ``log2(batch_size / SMALLEST_BUCKET) + 1``
    shapes ever occur, while padding wastes fewer than SMALLEST_BUCKET rows (padding the remainder to one power of two would
    waste up to half of it).
    """
    sizes = [batch_size] * (n // batch_size)
    rest = n - len(sizes) * batch_size
    bucket = batch_size
    while rest > 0:
        while bucket > SMALLEST_BUCKET and bucket // 2 >= rest:
            bucket //= 2
        if bucket > rest and bucket > SMALLEST_BUCKET:
            bucket //= 2  # take a full smaller chunk, then cover the rest
        sizes.append(bucket)
        rest -= bucket
    return sizes


def padded_batches(
    fn: Callable[[tf.Tensor], tf.Tensor], x: np.ndarray, n_out: int, batch_size: int = CHUNK
) -> np.ndarray:
    """Apply a compiled ``fn`` in chunks of the :func:`bucket_sizes` shapes (last zero-padded); output in the input's dtype.

    Without fixed shapes every distinct batch length would pay a fresh XLA compile (hundreds
    of ms) on the hot path.
    """
    n = len(x)
    out = np.empty((n, n_out), x.dtype)
    start = 0
    for size in bucket_sizes(n, batch_size):
        chunk = x[start : start + size]
        used = len(chunk)
        if used < size:
            chunk = np.concatenate([chunk, np.zeros((size - used, x.shape[1]), x.dtype)])
        out[start : start + used] = fn(tf.constant(chunk)).numpy()[:used]
        start += used
    return out
