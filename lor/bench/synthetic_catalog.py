"""Synthetic Rubin Object-table rows for loader benchmarks and tests.

The photometry here is not physical (that is what ``lor.sps`` is for): it only has the shape,
types, value ranges and noise levels of a real 6-band deep-field catalog, which is all that
ingestion speed and correctness depend on. 10-year 5-sigma depths from the LSST SRD.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from lor.db.catalog_store import LSST_BANDS
from lor.units import abmag_to_njy

#: LSST 10-year coadded 5-sigma point-source depths (AB), Ivezic et al. 2019 Table 1.
LSST_DEPTH_10YR = {"u": 25.6, "g": 26.9, "r": 26.9, "i": 26.4, "z": 25.6, "y": 24.8}


def synthetic_object_table(n: int, seed: int = 0, first_id: int = 1_000_000_000_000) -> pa.Table:
    """A Rubin-style Object table: objectId, coord_ra, coord_dec, tract, {band}_cModelFlux(Err)."""
    rng = np.random.default_rng(seed)
    ra = rng.uniform(50.0, 60.0, n)
    dec = np.degrees(
        np.arcsin(rng.uniform(np.sin(np.radians(-40.0)), np.sin(np.radians(-30.0)), n))
    )
    i_mag = 27.0 - rng.exponential(1.3, n)
    colour = rng.normal(0.0, 0.4, (n, len(LSST_BANDS))).cumsum(axis=1) * 0.5
    cols: dict[str, np.ndarray] = {
        "objectId": np.arange(first_id, first_id + n, dtype=np.int64),
        "coord_ra": ra,
        "coord_dec": dec,
        "tract": (5000 + (ra - 50.0).astype(np.int64) * 10 + ((dec + 40.0) // 1).astype(np.int64)),
    }
    for b, band in enumerate(LSST_BANDS):
        mag = i_mag + colour[:, b] - colour[:, 3]
        sigma = abmag_to_njy(np.full(n, LSST_DEPTH_10YR[band])) / 5.0
        cols[f"{band}_cModelFlux"] = abmag_to_njy(mag) + rng.normal(0.0, sigma)
        cols[f"{band}_cModelFluxErr"] = sigma * rng.uniform(0.9, 1.1, n)
    return pa.table(cols)


def write_synthetic_parquet(path: Path, n: int, seed: int = 0) -> Path:
    import pyarrow.parquet as pq

    pq.write_table(synthetic_object_table(n, seed), path)
    return path
