"""The small example catalog shipped in the repo: a simulated LSST 10-year Object table.

Objects are drawn from the interim population prior, pushed through the shipped emulator and
the LSST data model (10-year depth, i < 25.3), placed in four tracts, and written with the
Rubin Object-table column names; a few rows carry the defects real catalogs have (a missing
band, a NaN row) so the demo shows the flags. The true parameters go to a separate file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

EXAMPLE_DIR = Path(__file__).resolve().parents[1] / "data" / "example"
EXAMPLE_CATALOG = EXAMPLE_DIR / "example_objects.parquet"
EXAMPLE_TRUTH = EXAMPLE_DIR / "example_truth.parquet"


def make_example_catalog(
    n: int = 2000, seed: int = 20261125, out_dir: Path = EXAMPLE_DIR
) -> tuple[Path, Path]:
    from lor.emulators.registry import load_shipped_emulator
    from lor.inference.simulate import simulate_catalog
    from lor.sps.parameters import PARAM_NAMES

    emulator = load_shipped_emulator()
    cat = simulate_catalog(n, emulator, seed=seed, years=10.0, error_scatter=0.05)
    rng = np.random.default_rng(seed)
    tract = rng.choice(np.array([9813, 9814, 10053, 10054]), size=n)
    ra = 149.0 + (tract % 2) * 1.5 + rng.uniform(0, 1.5, n)
    dec = 1.0 + (tract > 10000) * 1.5 + rng.uniform(0, 1.5, n)
    flux, err = cat.flux.copy(), cat.flux_err.copy()
    flux[5, 0] = err[5, 0] = np.nan  # u band not measured
    flux[6, :] = np.nan  # a blended/failed measurement: nothing usable
    ids = 1_700_000_000_000 + np.arange(n, dtype=np.int64) * 7
    cols = {"objectId": ids, "coord_ra": ra, "coord_dec": dec, "tract": tract.astype(np.int64)}
    for b, band in enumerate(emulator.band_names):
        cols[f"{band}_cModelFlux"] = flux[:, b]
        cols[f"{band}_cModelFluxErr"] = err[:, b]
    out_dir.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(cols), out_dir / EXAMPLE_CATALOG.name)
    truth = {"objectId": ids} | {name: cat.theta[:, i] for i, name in enumerate(PARAM_NAMES)}
    pq.write_table(pa.table(truth), out_dir / EXAMPLE_TRUTH.name)
    return out_dir / EXAMPLE_CATALOG.name, out_dir / EXAMPLE_TRUTH.name


if __name__ == "__main__":
    print(make_example_catalog())
