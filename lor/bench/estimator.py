"""``lor bench estimator``: the shipped amortized estimator on held-out simulated objects.

Held-out set: objects drawn from lor's own model (the estimator's training prior -> shipped
emulator -> LSST data model) at 10-year depth with 0.05 dex of error scatter, the i < 25.3
selection and a seed training never used -- the same held-out recipe since the estimator was
first shipped, so figures compare across estimators. MCMC (the same likelihood, model error
included, x the same prior) runs side by side on a subset for the ``mcmc_*`` figures and the
per-object speedup.
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np

from lor.inference.validation import (
    coverage,
    mcmc_reference,
    photoz_metrics,
    pit_ks,
    recovery_metrics,
)

HELD_OUT_SEED = 555_000_123
HELD_OUT_ERROR_SCATTER_DEX = 0.05


def evaluate(
    n_objects: int = 20_000, n_mcmc: int = 200, seed: int = HELD_OUT_SEED
) -> dict[str, Any]:
    """All figures plus the arrays ``lor validate`` plots (under the key ``arrays``)."""
    from lor.emulators.registry import load_shipped_emulator
    from lor.inference.amortized import PhotometryPosteriors
    from lor.inference.prior_registry import estimator_prior
    from lor.inference.registry import SHIPPED_ESTIMATOR, load_shipped_estimator
    from lor.inference.simulate import simulate_catalog

    emulator = load_shipped_emulator()
    estimator = load_shipped_estimator()
    engine = PhotometryPosteriors(estimator, emulator)
    rep = estimator.representation
    cat = simulate_catalog(
        n_objects,
        emulator,
        seed=seed,
        years=10.0,
        prior=estimator_prior(estimator.spec),
        error_scatter=HELD_OUT_ERROR_SCATTER_DEX,
    )
    engine.infer(cat.flux[:256], cat.flux_err[:256])  # compile
    t0 = time.perf_counter()
    result = engine.infer(cat.flux, cat.flux_err, seed=seed)
    amortized_s = (time.perf_counter() - t0) / n_objects

    z_true = cat.theta[:, 0]
    pit_z = np.asarray(rep.marginal(result.params, 0).cdf(z_true), np.float64).reshape(-1)
    figures: dict[str, Any] = photoz_metrics(result.summaries["z_q50"], z_true)
    figures |= {
        "pit_ks": pit_ks(pit_z),
        "coverage68_z": coverage(pit_z, 0.68),
        "coverage95_z": coverage(pit_z, 0.95),
        "objects_per_s": 1.0 / amortized_s,
        "floats_per_object": rep.floats_per_object,
        "flagged_frac": float(np.mean(result.flags != 0)),
        "coverage_per_parameter": recovery_metrics(
            rep, result.params, cat.theta, list(estimator.spec["param_names"])
        ),
    }
    arrays: dict[str, Any] = {
        "z_true": z_true,
        "z_phot": result.summaries["z_q50"],
        "pit_z": pit_z,
        "theta": cat.theta,
        "params": result.params,
    }
    if n_mcmc:
        idx = np.arange(n_mcmc)
        data = engine.prepare(cat.flux[idx], cat.flux_err[idx])  # model error included
        t0 = time.perf_counter()
        samples, acceptance = mcmc_reference(
            emulator,
            estimator_prior(estimator.spec),
            rep,
            result.params[idx],
            data.flux,
            data.err,
            seed=seed,
        )
        mcmc_s = (time.perf_counter() - t0) / n_mcmc
        z50_mcmc = np.median(samples[:, :, 0], axis=1)
        dz50 = np.abs(result.summaries["z_q50"][idx] - z50_mcmc) / (1 + z50_mcmc)
        figures |= {
            "speedup_vs_mcmc": mcmc_s / amortized_s,
            "mcmc_dz50": float(np.median(dz50)),
            "mcmc_sigma_nmad": photoz_metrics(z50_mcmc, z_true[idx])["sigma_nmad"],
            "amortized_sigma_nmad_same_objects": photoz_metrics(
                result.summaries["z_q50"][idx], z_true[idx]
            )["sigma_nmad"],
            "mcmc_objects": n_mcmc,
            "mcmc_acceptance_median": float(np.median(acceptance)),
            "mcmc_s_per_object": mcmc_s,
        }
        arrays |= {"mcmc_samples": samples[:8], "mcmc_index": idx[:8]}
    figures["data"] = (
        f"{n_objects} held-out simulated objects (the estimator's training prior "
        f"{estimator.spec['prior']['family']}, shipped emulator, LSST 10-year depth, "
        f"i < 25.3, seed {seed}); MCMC on the first {n_mcmc}"
    )
    figures["estimator"] = {"name": SHIPPED_ESTIMATOR[0], "sha256": SHIPPED_ESTIMATOR[1]}
    figures["cpu_count"] = os.cpu_count()
    figures["arrays"] = arrays
    return figures


def run_estimator_benchmark(n_objects: int = 20_000, n_mcmc: int = 200) -> dict[str, Any]:
    figures = evaluate(n_objects, n_mcmc)
    figures.pop("arrays")
    return figures
