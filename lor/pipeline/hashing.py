"""Vectorized 128-bit row hashing for deterministic ids and change detection.

Ingestion hashes every row (≈1e6 per second is needed); ``hashlib`` per row costs more than
the whole COPY, so rows are hashed as arrays of 64-bit words with a splitmix64-style mixer run
twice with different seeds. This is not a cryptographic hash: it detects changed measurements
and makes re-ingest idempotent (identical rows → identical ids). Hashes are RFC 9562 UUIDv8.
"""

from __future__ import annotations

import numpy as np

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _mix(x: np.ndarray) -> np.ndarray:
    x = x ^ (x >> np.uint64(30))
    x = x * _M1
    x = x ^ (x >> np.uint64(27))
    x = x * _M2
    return x ^ (x >> np.uint64(31))


def hash64(words: np.ndarray, seed: int) -> np.ndarray:
    """Hash each row of a (N, W) uint64 word matrix to one uint64."""
    with np.errstate(over="ignore"):
        h = np.full(
            words.shape[0], np.uint64(seed) * _GOLDEN + np.uint64(words.shape[1]), np.uint64
        )
        for j in range(words.shape[1]):
            h = _mix(h ^ (words[:, j] + _GOLDEN * np.uint64(j + 1)))
        return h


def hash128_uuid(words: np.ndarray, seeds: tuple[int, int] = (1, 2)) -> np.ndarray:
    """Hash rows to UUIDv8 bytes, shape (N, 16) uint8 (version 8, RFC 9562 variant)."""
    hi, lo = hash64(words, seeds[0]), hash64(words, seeds[1])
    out = np.empty((words.shape[0], 2), dtype=">u8")
    out[:, 0], out[:, 1] = hi, lo
    raw = out.view(np.uint8).reshape(-1, 16).copy()
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x80  # version 8
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80  # variant 10xx
    return raw


def object_ids(catalog_id: np.ndarray, input_hash: np.ndarray) -> np.ndarray:
    """Deterministic object-version keys, shape (N, 16) uint8 (stored as PostgreSQL uuid).

    Bytes 0-7: the catalog id, big-endian with the sign bit flipped, so keys sort by catalog
    id and index inserts of a catalog in id order are near-sequential rather than random. Bytes 8-15: the first half of the 128-bit ``input_hash``, so a
    changed measurement gives a new version key and an identical one the same key.
    """
    out = np.empty((len(catalog_id), 16), np.uint8)
    flipped = catalog_id.astype(np.int64).view(np.uint64) ^ np.uint64(1 << 63)
    out[:, :8] = flipped.astype(">u8").view(np.uint8).reshape(-1, 8)
    out[:, 8:] = input_hash[:, :8]
    return out


def as_words(*columns: np.ndarray) -> np.ndarray:
    """Pack columns (1-D or 2-D, any fixed-width dtype) into a (N, W) uint64 word matrix.

    Each column's bytes are zero-padded to a multiple of 8 per row. NaNs are canonicalized so
    that different NaN payloads hash alike.
    """
    parts = []
    for col in columns:
        arr = np.asarray(col)
        if arr.dtype.kind == "f":
            arr = np.where(np.isnan(arr), arr.dtype.type(np.nan), arr)
        arr = np.ascontiguousarray(arr.reshape(arr.shape[0], -1))
        raw = arr.view(np.uint8).reshape(arr.shape[0], -1)
        pad = (-raw.shape[1]) % 8
        if pad:
            raw = np.concatenate([raw, np.zeros((raw.shape[0], pad), np.uint8)], axis=1)
        parts.append(raw.view("<u8"))
    return np.concatenate(parts, axis=1)
