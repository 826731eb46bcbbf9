"""``lor bench prior``: the default population priors against published deep-field figures.

For the interim prior (``"population"`` v1) and the published-relations prior
(``"grounded"`` v1), ``repeats`` independent sets of draws go through the shipped emulator
and lor's LSST 10-year data model (:func:`lor.inference.prior_checks.predicted_figures`);
each figure is reported as the median, min and max over the repeats, beside the published
value (:func:`lor.inference.prior_checks.published_figures`). Also timed: (z, log_mstar)
and full prior draws per second of the grounded prior, on one core.
"""

from __future__ import annotations

import os
import statistics
import time
from typing import Any

import numpy as np

from lor.errors import ConfigError

FIGURES = (
    "acceptance", "median_z", "p90_z", "median_i", "median_z_22_22.5", "median_z_24.5_25",
    "frac_z_below_0p3", "frac_z_above_2p5",
)  # fmt: skip


def _spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def _rates(fn: Any, n: int, repeats: int) -> dict[str, float]:
    seconds = []
    for i in range(repeats):
        t0 = time.perf_counter()
        fn(n, i)
        seconds.append(time.perf_counter() - t0)
    return _spread([n / s for s in seconds])


def run_prior_benchmark(n_draws: int = 200_000, repeats: int = 3) -> dict[str, Any]:
    """The figures of ``lor bench prior`` (see the module docstring)."""
    from lor.emulators.registry import SHIPPED_EMULATOR, load_shipped_emulator
    from lor.inference.grounded_prior import GroundedPrior
    from lor.inference.prior import PopulationPrior
    from lor.inference.prior_checks import predicted_figures, published_figures
    from lor.version import code_version

    if repeats < 3 or n_draws < 10_000:
        raise ConfigError("lor bench prior needs repeats >= 3 and draws >= 10,000")
    out: dict[str, Any] = {
        "benchmark": "prior",
        "git_commit": code_version(),
        "load_avg_1m_start": os.getloadavg()[0],
        "data": {
            "emulator": SHIPPED_EMULATOR[0],
            "data_model": "LSST 10-year (Ivezic et al. 2019)",
            "n_draws_per_repeat": n_draws,
            "repeats": repeats,
            "selection": "i_obs < 25.3",
        },  # fmt: skip
        "published": published_figures(25.3),
    }
    emulator = load_shipped_emulator()
    for key, prior in (("interim_v1", PopulationPrior()), ("grounded", GroundedPrior())):
        runs = [predicted_figures(prior, emulator, n_draws, seed=s) for s in range(repeats)]
        fig: dict[str, Any] = {name: _spread([r[name] for r in runs]) for name in FIGURES}
        if "counts_per_arcmin2" in runs[0]:
            fig["counts_per_arcmin2"] = {
                m: _spread([r["counts_per_arcmin2"][m] for r in runs])
                for m in runs[0]["counts_per_arcmin2"]
            }
            fig["box_per_arcmin2"] = runs[0]["box_per_arcmin2"]
            fig["lbg_per_arcmin2"] = _spread([r["lbg_per_arcmin2"] for r in runs])
        out[key] = fig
    grounded = GroundedPrior()
    grounded.sample(1000, 0)  # sampling tables built once, outside the timing
    out["grounded_draws_per_s"] = {
        "redshift_mass": _rates(
            lambda n, i: grounded.sample_redshift_mass(n, np.random.default_rng(i)), 1_000_000, 3
        ),
        "all_parameters": _rates(grounded.sample, 1_000_000, 3),
        "threads": os.environ.get("LOR_COMPUTE_THREADS", "unset"),
    }
    g, pub = out["grounded"], out["published"]
    out["grounded_counts_ratio_25p3"] = (
        g["counts_per_arcmin2"]["25.3"]["median"] / (pub["counts_per_arcmin2"])
    )
    out["grounded_median_z_minus_lsst"] = g["median_z"]["median"] - pub["median_z"]
    out["interim_median_z_minus_lsst"] = out["interim_v1"]["median_z"]["median"] - pub["median_z"]
    out["load_avg_1m_end"] = os.getloadavg()[0]
    return out
