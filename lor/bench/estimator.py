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
import statistics
from typing import TYPE_CHECKING, Any

import numpy as np

from lor.bands import DEFAULT_BAND_SET
from lor.bench.harness import (
    MIN_REPEATS,
    bench_report,
    rate_figures,
    repeat,
    time_figures,
    timings,
)
from lor.inference.mcmc import mcmc_posterior_samples
from lor.inference.validation import (
    coverage,
    photoz_metrics,
    pit_ks,
    recovery_metrics,
)

if TYPE_CHECKING:
    from lor.inference.estimator import AmortizedEstimator

HELD_OUT_SEED = 555_000_123
HELD_OUT_ERROR_SCATTER_DEX = 0.05


def evaluate(
    n_objects: int = 20_000, n_mcmc: int = 200, seed: int = HELD_OUT_SEED,
    repeats: int = MIN_REPEATS, band_set: str = DEFAULT_BAND_SET,
) -> dict[str, Any]:  # fmt: skip
    """All figures plus the arrays ``lor validate`` plots (under the key ``arrays``); timings
    are medians of ``repeats`` (:mod:`lor.bench.harness`), accuracy from the first repeat
    (every repeat computes the same posteriors)."""
    from lor.emulators.registry import load_shipped_emulator
    from lor.inference.amortized import PhotometryPosteriors
    from lor.inference.prior_registry import estimator_prior
    from lor.inference.registry import SHIPPED_ESTIMATORS, load_shipped_estimator
    from lor.inference.simulate import simulate_catalog

    emulator = load_shipped_emulator(band_set)
    estimator = load_shipped_estimator(band_set)
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
    engine.warm_up()  # compile every bucket shape, as a worker does before its first batch
    seconds, results = timings(lambda _: engine.infer(cat.flux, cat.flux_err, seed=seed), repeats)
    result = results[0]
    amortized_s = statistics.median(seconds) / n_objects
    features = engine.prepare(cat.flux, cat.flux_err).features(np.arange(n_objects))
    network_s = repeat(lambda: estimator.posterior_params(features), repeats)

    z_true = cat.theta[:, 0]
    pit_z = np.asarray(rep.marginal(result.params, 0).cdf(z_true), np.float64).reshape(-1)
    figures: dict[str, Any] = photoz_metrics(result.summaries["z_q50"], z_true)
    figures |= {
        "pit_ks": pit_ks(pit_z),
        "coverage68_z": coverage(pit_z, 0.68),
        "coverage95_z": coverage(pit_z, 0.95),
        **rate_figures("objects_per_s", n_objects, seconds),
        **rate_figures("network_objects_per_s", n_objects, network_s),
        **_roofline(
            estimator,
            n_objects / statistics.median(seconds),
            n_objects / statistics.median(network_s),
            repeats,
        ),
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
        prior = estimator_prior(estimator.spec)
        mcmc_seconds, chains = timings(
            lambda _: mcmc_posterior_samples(
                emulator, prior, rep, result.params[idx], data.flux, data.err, seed=seed
            ),
            repeats,
        )
        samples, acceptance = chains[0]
        mcmc_s = statistics.median(mcmc_seconds) / n_mcmc
        figures |= time_figures("mcmc_run_s", mcmc_seconds)
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
        f"{estimator.spec['prior']['family']}, shipped emulator, band set {band_set} at its "
        f"depths (LSST 10-year), i < 25.3, seed {seed}); MCMC on the first {n_mcmc}"
    )
    name, sha = SHIPPED_ESTIMATORS[band_set]
    figures["band_set"] = band_set
    figures["estimator"] = {"name": name, "sha256": sha}
    figures["cpu_count"] = os.cpu_count()
    figures["arrays"] = arrays
    return figures


def estimator_flops(estimator: AmortizedEstimator) -> int:
    """Floating-point operations of one object through the network: the matrix products and
    about 4 per hidden unit (SiLU: exp, add, divide, multiply)."""
    sizes = [3 * len(estimator.band_names), *estimator.spec["hidden"]]
    sizes.append(estimator.representation.n_raw)
    matmul = sum(2 * a * b for a, b in zip(sizes[:-1], sizes[1:], strict=True))
    return matmul + 4 * sum(estimator.spec["hidden"])


def _roofline(
    estimator: AmortizedEstimator, objects_per_s: float, network_objects_per_s: float, repeats: int
) -> dict[str, Any]:
    """Network FLOPs per object x objects/s over this CPU's float32 matmul peak, measured
    here (the best of the repeats: a peak), end to end and for the network alone."""
    from lor.bench.emulator import matmul_flops_per_s

    peak, flops = matmul_flops_per_s(repeats=repeats), estimator_flops(estimator)
    return {
        "roofline_fraction": flops * objects_per_s / peak,
        "network_roofline_fraction": flops * network_objects_per_s / peak,
        "network_time_fraction": objects_per_s / network_objects_per_s,
        "network_flops_per_object": flops,
        "matmul_flops_per_s": peak,
    }


def run_estimator_benchmark(
    n_objects: int = 20_000,
    n_mcmc: int = 200,
    repeats: int = MIN_REPEATS,
    band_set: str = DEFAULT_BAND_SET,
) -> dict[str, Any]:
    with bench_report("estimator", repeats) as out:
        figures = evaluate(n_objects, n_mcmc, repeats=repeats, band_set=band_set)
        figures.pop("arrays")
        out |= figures
    return out
