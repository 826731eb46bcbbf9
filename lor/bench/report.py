"""``lor validate``: a validation report (PNG plots + JSON) for the shipped estimator.

Plots: photo-z against true z, the PIT histogram, the coverage curve, recovery of every SPS
parameter, and a few amortized posteriors drawn over their MCMC samples. It lives with the
benches because its figures are those of ``lor bench estimator`` on the same held-out set
(:func:`lor.bench.estimator.evaluate`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from lor.bench.estimator import evaluate


def write_report(out: Path, n_objects: int = 10_000, n_mcmc: int = 200) -> dict[str, Any]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lor.inference.registry import load_shipped_estimator
    from lor.sps.parameters import PARAM_NAMES

    out.mkdir(parents=True, exist_ok=True)
    figures = evaluate(n_objects, n_mcmc)
    arrays = figures.pop("arrays")
    rep = load_shipped_estimator().representation

    fig, ax = plt.subplots(figsize=(5, 5))
    ax.scatter(arrays["z_true"], arrays["z_phot"], s=1, alpha=0.3)
    ax.plot([0, 4], [0, 4], "k-", lw=0.5)
    for s in (1, -1):
        ax.plot([0, 4], [0.15 * s, 4 + 5 * 0.15 * s], "r--", lw=0.5)
    ax.set(xlabel="z true", ylabel="z phot (posterior median)", xlim=(0, 4), ylim=(0, 4))
    ax.set_title(f"sigma_NMAD={figures['sigma_nmad']:.4f} outliers={figures['outlier_frac']:.3f}")
    fig.savefig(out / "zphot_vs_ztrue.png", dpi=120, bbox_inches="tight")
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.hist(arrays["pit_z"], bins=40, range=(0, 1), density=True, histtype="step")
    ax.axhline(1.0, color="k", lw=0.5)
    ax.set(xlabel="PIT (redshift)", ylabel="density", title=f"KS = {figures['pit_ks']:.4f}")
    fig.savefig(out / "pit_histogram.png", dpi=120, bbox_inches="tight")
    plt.close(fig)

    levels = np.linspace(0.02, 0.98, 49)
    fig, ax = plt.subplots(figsize=(5, 5))
    for dim, name in enumerate(PARAM_NAMES):
        pit = np.asarray(rep.marginal(arrays["params"], dim).cdf(arrays["theta"][:, dim])).reshape(
            -1
        )
        cov = [np.mean(np.abs(pit - 0.5) < lv / 2) for lv in levels]
        ax.plot(levels, cov, label=name, lw=1)
    ax.plot([0, 1], [0, 1], "k-", lw=0.5)
    ax.set(xlabel="credible level", ylabel="empirical coverage")
    ax.legend(fontsize=7)
    fig.savefig(out / "coverage.png", dpi=120, bbox_inches="tight")
    plt.close(fig)

    fig, axes = plt.subplots(2, 4, figsize=(13, 6.5))
    for dim, (name, ax) in enumerate(zip(PARAM_NAMES, axes.ravel(), strict=True)):
        med = np.asarray(rep.marginal(arrays["params"], dim).quantile(0.5)).reshape(-1)
        ax.scatter(arrays["theta"][:, dim], med, s=1, alpha=0.2)
        lo, hi = rep.box_lo[dim], rep.box_hi[dim]
        ax.plot([lo, hi], [lo, hi], "k-", lw=0.5)
        ax.set(title=name, xlabel="true", ylabel="posterior median")
    fig.tight_layout()
    fig.savefig(out / "parameter_recovery.png", dpi=110)
    plt.close(fig)

    if "mcmc_samples" in arrays:
        samples, idx = arrays["mcmc_samples"], arrays["mcmc_index"]
        fig, axes = plt.subplots(2, 4, figsize=(13, 6))
        grid = np.linspace(rep.box_lo[0], rep.box_hi[0], 800)
        for ax, j in zip(axes.ravel(), range(len(idx)), strict=False):
            pdf = np.asarray(
                rep.marginal(arrays["params"][idx[j] : idx[j] + 1], 0).pdf(grid[None, :])
            ).reshape(-1)
            peak = grid[np.argmax(pdf)]
            window = (max(grid[0], peak - 1.0), min(grid[-1], peak + 1.0))
            ax.hist(
                samples[j, :, 0],
                bins=np.linspace(*window, 61),
                density=True,
                alpha=0.4,
                label="MCMC",
            )
            ax.plot(grid, pdf, "r-", lw=1, label="amortized")
            ax.axvline(arrays["z_true"][idx[j]], color="k", lw=0.8)
            ax.set(xlim=window, xlabel="z")
        axes.ravel()[0].legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out / "posteriors_vs_mcmc.png", dpi=110)
        plt.close(fig)

    (out / "validation.json").write_text(json.dumps(figures, indent=1, default=float))
    return figures
