"""``lor bench sps-flexibility``: which SPS departures would the data ask for? (issue #12)

Before paying for an emulator and an estimator with more parameters, measure what each
candidate departure from lor's model (:mod:`lor.sps.flexible`: a recent burst, scaled
emission lines, a 2175 A bump) buys on the misspecification suite's catalogs. For each
variant, the noise-free fluxes of ``objects`` galaxies (drawn with the suite's recipe and
seed, i < 25.3) are fitted at their true redshift by lor's exact forward model, with and
without the departure, by a cross-entropy search vectorized over objects (the mass formed
is the closed-form best amplitude). The best fit's misfit is measured against:

- the catalog's own flux errors: ``chi2_noise`` -- a misfit the photometry can see when it
  is comparable to the number of bands;
- lor's full error budget (errors plus the model error, :mod:`lor.inference.model_error`):
  ``chi2_budget`` -- a misfit the likelihood already absorbs when it is well below the
  number of bands.

A departure is worth its parameters when it removes misfit the budget does not absorb. The
search starts from the parameters the variant's draw began with (and the departure's search
from the base model's best fit, the departure switched off), so each figure is an upper
bound on the best misfit and a departure never fits worse than the base model. The control
``bagpipes-baseline`` (bagpipes with lor's own model) is the bagpipes-versus-lor numerical
difference every bagpipes variant carries.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from lor.bench.harness import bench_report
from lor.sps.flexible import EXTENSION_BOXES, FlexibleSPSModel, SPSExtensions
from lor.sps.parameters import PARAM_NAMES, default_training_box

SHAPE_NAMES = ("log_zmet", "log_tau", "age_frac", "av", "dust_n", "log_u")
"""Base-model parameters searched (redshift is fixed at the truth, the mass is closed-form)."""

EXPERIMENTS: dict[str, tuple[str, ...]] = {
    "bagpipes-baseline": (),
    "burst-sfh": ("burst",),
    "dblplaw-sfh": ("burst",),
    "constant-sfh": ("burst",),
    "strong-nebular": ("line_scale",),
    "calzetti-dust": ("bump",),
    "salim-dust": ("bump",),
}
"""Variant -> departures tried on it (each the one its recipe suggests)."""


def _catalog(name: str, objects: int):  # type: ignore[no-untyped-def]
    from lor.emulators.registry import load_shipped_emulator
    from lor.inference.misspecification import VARIANTS, Variant, simulate_variant
    from lor.inference.prior_registry import estimator_prior
    from lor.inference.registry import load_shipped_estimator

    emulator = load_shipped_emulator()
    prior = estimator_prior(load_shipped_estimator().spec)
    if name == "bagpipes-baseline":
        variant = Variant(name, "bagpipes, lor's model (delayed, CF00)", "bagpipes", 1291)
    else:
        variant = VARIANTS[name]
    return simulate_variant(variant, objects, emulator, prior), emulator


def _best_amplitude_chi2(flux: np.ndarray, unit: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Chi-square of ``flux (N, 1, B)`` against ``A * unit (N, M, B)`` at the best ``A >= 0``."""
    amp = np.sum(flux * unit * weight, axis=-1) / np.maximum(
        np.sum(unit * unit * weight, axis=-1), 1e-300
    )
    amp = np.maximum(amp, 0.0)[..., None]
    return np.sum(weight * (flux - amp * unit) ** 2, axis=-1), amp[..., 0]


def fit_misfit(
    model: FlexibleSPSModel,
    redshift: np.ndarray,
    flux: np.ndarray,
    sigma: np.ndarray,
    extensions: tuple[str, ...],
    seed: int,
    start: np.ndarray | None = None,
    n_initial: int = 256,
    n_round: int = 128,
    rounds: int = 5,
    n_elite: int = 16,
) -> tuple[np.ndarray, np.ndarray]:
    """Best-fitting parameters and their chi-square for each object (cross-entropy search).

    ``start`` (objects x searched columns) seeds the search, e.g. with the base model's
    best fit and every departure switched off, so adding a departure never fits worse.
    """
    rng = np.random.default_rng(seed)
    box = default_training_box()
    ext_names = [k for e in extensions for k in EXTENSION_BOXES[e]]
    ext_box = {k: v for e in extensions for k, v in EXTENSION_BOXES[e].items()}
    names = list(SHAPE_NAMES) + ext_names
    lo = np.array([box.get(k, ext_box.get(k))[0] for k in names])
    hi = np.array([box.get(k, ext_box.get(k))[1] for k in names])
    n_obj, dim = flux.shape[0], len(names)
    weight = 1.0 / sigma**2

    def evaluate(x: np.ndarray) -> np.ndarray:  # x (N, M, dim) -> chi2 (N, M)
        m = x.shape[1]
        params = np.zeros((n_obj * m, len(PARAM_NAMES)))
        params[:, 0] = np.repeat(redshift, m)
        for j, name in enumerate(SHAPE_NAMES):
            params[:, PARAM_NAMES.index(name)] = x[:, :, j].ravel()
        ext = SPSExtensions.from_columns(ext_names, x[:, :, 6:].reshape(n_obj * m, dim - 6))
        unit = model.fluxes_unit_mass(params, ext).reshape(n_obj, m, -1)
        return _best_amplitude_chi2(flux[:, None, :], unit, weight[:, None, :])[0]

    x = lo + (hi - lo) * rng.uniform(size=(n_obj, n_initial, dim))
    if start is not None:
        x[:, 0, : start.shape[1]] = start
        x[:, 0, start.shape[1] :] = [_off(k) for k in names[start.shape[1] :]]
    chi2 = evaluate(x)
    for _ in range(rounds):
        order = np.argsort(chi2, axis=1)[:, :n_elite]
        elite = np.take_along_axis(x, order[:, :, None], axis=1)
        mean, std = elite.mean(axis=1), elite.std(axis=1) + 1e-3 * (hi - lo)
        new = np.clip(mean[:, None] + std[:, None] * rng.normal(size=(n_obj, n_round, dim)), lo, hi)
        x = np.concatenate([elite, new], axis=1)
        chi2 = np.concatenate([np.take_along_axis(chi2, order, axis=1), evaluate(new)], axis=1)
    best = np.argmin(chi2, axis=1)
    return x[np.arange(n_obj), best], chi2[np.arange(n_obj), best]


def _off(name: str) -> float:
    """The value of a departure's parameter that switches it off."""
    return {"burst_frac": 0.0, "log_burst_age_yr": 8.0, "log_line_scale": 0.0,
            "bump_amplitude": 0.0}[name]  # fmt: skip


def _summary(chi2: np.ndarray, n_bands: int) -> dict[str, float]:
    return {
        "median": float(np.median(chi2)),
        "p90": float(np.quantile(chi2, 0.9)),
        "frac_above_n_bands": float(np.mean(chi2 > n_bands)),
    }


def run_sps_flexibility_benchmark(
    objects: int = 100,
    variants: list[str] | None = None,
    echo: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Misfit of lor's model with and without each departure, per variant (module doc)."""
    from lor.inference.model_error import ModelError
    from lor.sps.model import SPSModel

    names = list(variants or EXPERIMENTS)
    with bench_report("sps-flexibility", repeats=3) as out:
        out["repeats"] = 1  # accuracy figures: one deterministic pass (fixed seeds)
        results: dict[str, Any] = {}
        model = None
        for k, name in enumerate(names):
            cat, emulator = _catalog(name, objects)
            if model is None:
                model = FlexibleSPSModel(SPSModel(bands=list(emulator.band_names)))
                model_error = ModelError.for_emulator(emulator)
            n_bands = cat.flux.shape[1]
            budget = model_error.effective_error(cat.true_flux, cat.flux_err)
            z = cat.theta[:, 0]
            row: dict[str, Any] = {}
            truth = cat.theta[:, [PARAM_NAMES.index(n) for n in SHAPE_NAMES]]
            base_x, _ = fit_misfit(
                model, z, cat.true_flux, cat.flux_err, (), seed=1300 + k, start=truth
            )
            row["base"] = _misfits(model, z, cat, base_x, (), budget, n_bands)
            for ext in EXPERIMENTS[name]:
                x, _ = fit_misfit(
                    model, z, cat.true_flux, cat.flux_err, (ext,), seed=1400 + k, start=base_x
                )
                row[ext] = _misfits(model, z, cat, x, (ext,), budget, n_bands)
            results[name] = row
            echo(f"{name}: " + "; ".join(
                f"{m} chi2_noise median {v['chi2_noise']['median']:.2f} "
                f"(>{n_bands}: {v['chi2_noise']['frac_above_n_bands']:.0%}), chi2_budget "
                f"median {v['chi2_budget']['median']:.2f}"
                for m, v in row.items()
            ))  # fmt: skip
        out |= {
            "data": f"{objects} objects per variant (suite recipes and seeds, i < 25.3, "
            "LSST 10-year errors), noise-free fluxes fitted at the true redshift",
            "variants": results,
        }
    return out


def _misfits(model, z, cat, x, extensions, budget, n_bands) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    ext_names = [k for e in extensions for k in EXTENSION_BOXES[e]]
    params = np.zeros((len(z), len(PARAM_NAMES)))
    params[:, 0] = z
    for j, name in enumerate(SHAPE_NAMES):
        params[:, PARAM_NAMES.index(name)] = x[:, j]
    unit = model.fluxes_unit_mass(params, SPSExtensions.from_columns(ext_names, x[:, 6:]))
    chi2_noise, amp = _best_amplitude_chi2(
        cat.true_flux[:, None], unit[:, None], cat.flux_err[:, None] ** -2
    )
    fit = amp * unit
    dmag = -2.5 * np.log10(np.maximum(fit, 1e-30) / cat.true_flux)
    bright = cat.true_flux / cat.flux_err > 20.0
    rms = [float(np.sqrt(np.mean(dmag[bright[:, b], b] ** 2))) if bright[:, b].any() else None
           for b in range(n_bands)]  # fmt: skip
    chi2_budget = np.sum(((cat.true_flux - fit) / budget) ** 2, axis=1)
    out: dict[str, Any] = {
        "chi2_noise": _summary(chi2_noise[:, 0], n_bands),
        "chi2_budget": _summary(chi2_budget, n_bands),
        "rms_mag_snr_gt_20": rms,
    }
    if ext_names:
        out["fitted"] = {k: float(np.median(x[:, 6 + i])) for i, k in enumerate(ext_names)}
    return out
