"""Row hashes stay what they were: object ids and input hashes of stored catalogs depend on them."""

from __future__ import annotations

import numpy as np

from lor.catalog.hashing import as_words, hash64, hash128_uuid

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _reference_hash64(words: np.ndarray, seed: int) -> np.ndarray:
    """The definition: splitmix64's finaliser over the words, one seed and word at a time."""

    def mix(x: np.ndarray) -> np.ndarray:
        x = x ^ (x >> np.uint64(30))
        x = x * _M1
        x = x ^ (x >> np.uint64(27))
        x = x * _M2
        return x ^ (x >> np.uint64(31))

    with np.errstate(over="ignore"):
        h = np.full(words.shape[0], np.uint64(seed) * _GOLDEN + np.uint64(words.shape[1]))
        for j in range(words.shape[1]):
            h = mix(h ^ (words[:, j] + _GOLDEN * np.uint64(j + 1)))
    return h


def test_hashes_match_the_reference_definition() -> None:
    rng = np.random.default_rng(7)
    flux = rng.normal(size=(5000, 6))
    flux[::17, 2] = np.nan
    words = as_words(rng.integers(0, 1000, 5000).astype(np.int32), flux, flux.astype(np.float32))
    for seed in (0, 11, 12, 2**40 + 3):
        assert np.array_equal(hash64(words, seed), _reference_hash64(words, seed))
    raw = hash128_uuid(words, (11, 12))
    hi = _reference_hash64(words, 11).astype(">u8").view(np.uint8).reshape(-1, 8)
    lo = _reference_hash64(words, 12).astype(">u8").view(np.uint8).reshape(-1, 8)
    expected = np.concatenate([hi, lo], axis=1)
    expected[:, 6] = (expected[:, 6] & 0x0F) | 0x80
    expected[:, 8] = (expected[:, 8] & 0x3F) | 0x80
    assert np.array_equal(raw, expected)
    assert len({r.tobytes() for r in raw}) == len(raw)  # no collisions among distinct rows
