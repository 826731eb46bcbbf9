"""Synthetic Rubin Object-table rows for loader benchmarks and tests.

The photometry here is not physical (that is what ``lor.sps`` is for): it only has the shape,
types, value ranges and noise levels of a real 6-band deep-field catalog, which is all that
ingestion speed and correctness depend on. Errors at each band's 5-sigma depth from its band
set (:mod:`lor.bands`; LSST: 10-year depths, Ivezic et al. 2019 Table 1).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from lor.bands import DEFAULT_BAND_SET, load_band_set
from lor.units import abmag_to_njy


def synthetic_object_table(
    n: int, seed: int = 0, first_id: int = 1_000_000_000_000, band_set: str = DEFAULT_BAND_SET
) -> pa.Table:
    """A Rubin-style Object table: objectId, coord_ra, coord_dec, tract, {band}_cModelFlux(Err)
    for every band of ``band_set``."""
    bands = load_band_set(band_set)
    rng = np.random.default_rng(seed)
    ra = rng.uniform(50.0, 60.0, n)
    dec = np.degrees(
        np.arcsin(rng.uniform(np.sin(np.radians(-40.0)), np.sin(np.radians(-30.0)), n))
    )
    i_mag = 27.0 - rng.exponential(1.3, n)
    colour = rng.normal(0.0, 0.4, (n, len(bands.bands))).cumsum(axis=1) * 0.5
    ref = bands.index([bands.reference_band])[0]
    cols: dict[str, np.ndarray] = {
        "objectId": np.arange(first_id, first_id + n, dtype=np.int64),
        "coord_ra": ra,
        "coord_dec": dec,
        "tract": (5000 + (ra - 50.0).astype(np.int64) * 10 + ((dec + 40.0) // 1).astype(np.int64)),
    }
    for b, band in enumerate(bands.band_names):
        mag = i_mag + colour[:, b] - colour[:, ref]
        sigma = abmag_to_njy(np.full(n, bands.m5[band])) / 5.0
        cols[f"{band}_cModelFlux"] = abmag_to_njy(mag) + rng.normal(0.0, sigma)
        cols[f"{band}_cModelFluxErr"] = sigma * rng.uniform(0.9, 1.1, n)
    return pa.table(cols)


def write_synthetic_parquet(path: Path, n: int, seed: int = 0) -> Path:
    import pyarrow.parquet as pq

    pq.write_table(synthetic_object_table(n, seed), path)
    return path
