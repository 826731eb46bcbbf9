"""The small example catalogs shipped in the repo: simulated Object tables, one per band set.

Objects are drawn from the interim population prior, pushed through the band set's shipped
emulator and data model (LSST 10-year depth, i < 25.3; Euclid Wide depths for the Euclid
bands), placed in four tracts, and written with the Rubin Object-table column names; a few
rows carry the defects real catalogs have (a missing band, a NaN row) so the demo shows the
flags. The true parameters go to a separate file. ``lsst`` writes ``example_objects.parquet``;
another band set ``example_objects_<band set>.parquet`` (and ``example_truth_<...>``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from lor.bands import DEFAULT_BAND_SET

EXAMPLE_DIR = Path(__file__).resolve().parents[1] / "data" / "example"
EXAMPLE_CATALOG = EXAMPLE_DIR / "example_objects.parquet"
EXAMPLE_TRUTH = EXAMPLE_DIR / "example_truth.parquet"


def example_paths(band_set: str = DEFAULT_BAND_SET) -> tuple[Path, Path]:
    """The shipped example catalog and truth of ``band_set``."""
    if band_set == DEFAULT_BAND_SET:
        return EXAMPLE_CATALOG, EXAMPLE_TRUTH
    tag = band_set.replace("-", "_")
    return (
        EXAMPLE_DIR / f"example_objects_{tag}.parquet",
        EXAMPLE_DIR / f"example_truth_{tag}.parquet",
    )


def make_example_catalog(
    n: int = 2000,
    seed: int = 20261125,
    out_dir: Path = EXAMPLE_DIR,
    band_set: str = DEFAULT_BAND_SET,
) -> tuple[Path, Path]:
    from lor.emulators.registry import load_shipped_emulator
    from lor.inference.simulate import simulate_catalog
    from lor.sps.parameters import PARAM_NAMES

    emulator = load_shipped_emulator(band_set)
    catalog_path, truth_path = (out_dir / p.name for p in example_paths(band_set))
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
    pq.write_table(pa.table(cols), catalog_path)
    truth = {"objectId": ids} | {name: cat.theta[:, i] for i, name in enumerate(PARAM_NAMES)}
    pq.write_table(pa.table(truth), truth_path)
    return catalog_path, truth_path


if __name__ == "__main__":  # python -m lor.catalog.example [BAND_SET]
    import sys

    print(make_example_catalog(band_set=sys.argv[1] if len(sys.argv) > 1 else DEFAULT_BAND_SET))
