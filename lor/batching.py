"""Fixed-shape batching for compiled TensorFlow functions (emulators, estimators)."""

from __future__ import annotations

import numpy as np
import tensorflow as tf


def padded_batches(fn, x: np.ndarray, batch_size: int, n_out: int) -> np.ndarray:  # type: ignore[no-untyped-def]
    """Apply a compiled ``fn`` in fixed-size batches (the last one zero-padded).

    XLA compiles once per input shape; without padding every distinct batch length would
    pay a fresh compile (hundreds of ms) on the hot path.
    """
    n = len(x)
    out = np.empty((n, n_out), np.float32)
    size = min(
        batch_size, 1 << max(int(np.ceil(np.log2(max(n, 1)))), 8)
    )  # small batches stay small
    for i in range(0, n, size):
        chunk = x[i : i + size]
        if len(chunk) < size:
            chunk = np.concatenate([chunk, np.zeros((size - len(chunk), x.shape[1]), x.dtype)])
        out[i : i + size] = fn(tf.constant(chunk)).numpy()[: min(size, n - i)]
    return out
