"""``lor bench reprocess``: bringing stored posteriors up to date, through the run queue.

In a throwaway database: a catalog simulated under the interim prior (shipped emulator,
10-year depth, i < 25.3) is ingested and processed by the shipped estimator (an ordinary
run). Then, side by side on the same objects:

- ``objects_per_s_process``: processing the same objects from scratch (a run of the shipped
  estimator, models loaded before the clock); the first such run is the parent of the rest;
- ``objects_per_s_prior``: a reprocess run for a new prior version (z0, mass_mean, av_scale
  changed), processed in-process end to end, set-based (:mod:`lor.loop.prior_chunks`:
  ranges of the parent's posteriors read in one statement, reweighted from the stored
  params and flags, summaries and the prior-edge check, written by binary COPY with parent
  links, one transaction per range); ``objects_per_s_prior_vs_process`` is its ratio to
  processing from scratch, both medians of the same run;
  ``reweight_kernel_objects_per_s_prior`` is the reweighting alone on the same posteriors
  in memory;
- ``objects_per_s_calibration``: a reprocess run for a calibration version that shifts every
  band of half the tracts by up to 0.03 mag (only those tracts' objects are queued);
- ``ess_flag_frac``: the fraction of reprocessed rows flagged LOW_ESS, per run.

The whole loop is validated on a simulated survey (:func:`_loop_validation`): a population
whose z0, mass_mean and av_scale differ from the interim prior, tracts with injected
zeropoint offsets and noise scalings. ``zp_max_abs_err`` is the largest error of a fitted
offset (every band but the reference band i); hyperparameter pulls, reweighted redshifts
against MCMC on ``n_mcmc`` objects, and photo-z metrics before and after calibration.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import text

from lor.bench.harness import MIN_REPEATS, bench_report, rate_figures, repeat
from lor.bench.pipeline import (
    RELEASE,
    bench_priors,
    create_bench_run,
    write_simulated_catalog,
)
from lor.bench.profile import PLANS_ENV, reprocess_plans
from lor.db.admin import temporary_database
from lor.db.engine import make_engine, resolve_database_url
from lor.db.migrate import upgrade
from lor.db.params_codec import join_rows
from lor.hierarchy.calibrate import validation_shift


def _flag_fraction(engine, run_id: int) -> tuple[int, float]:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        n, low = conn.execute(
            text("SELECT count(*), count(*) FILTER (WHERE ood_flags & 64 <> 0) "
                 "FROM lor.posteriors WHERE run_id = :r"), {"r": run_id},
        ).one()  # fmt: skip
    return int(n), float(low) / max(int(n), 1)


def _timed_reprocess(engine, parent: int, **versions: Any) -> tuple[int, int, float]:  # type: ignore[no-untyped-def]
    from lor.loop.reprocess import create_reprocess_run
    from lor.runs.processing import clear_processor_cache, process_run, run_processor

    queued = create_reprocess_run(engine, parent, config={"batch_size": 2000}, **versions)
    if plans := os.environ.get(PLANS_ENV):  # python -m lor.bench.profile reprocess
        with open(plans, "a") as fh:
            fh.write(reprocess_plans(engine, queued.run.id))
    run_processor(engine, queued.run.id)  # models load before the clock starts
    t0 = time.perf_counter()
    counts = process_run(engine, queued.run.id, progress=False)
    elapsed = time.perf_counter() - t0
    clear_processor_cache()
    return queued.run.id, counts.done, elapsed


HYPER_OBJECTS = 20_000
"""Objects of the validation survey the hyperparameters are fitted to."""


def _loop_validation(tracts: int, per_tract: int, n_mcmc: int, echo=print) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """The whole loop on a simulated survey whose population differs from the interim prior
    (:func:`lor.hierarchy.calibrate.validation_shift`) and whose tracts carry injected zeropoint offsets
    (U(-0.03, 0.03) mag, every band) and noise scalings (U(1.0, 1.15)):

    1. interim posteriors of the uncalibrated catalog (the shipped estimator);
    2. hyperparameters fitted to them (:data:`HYPER_OBJECTS` of them, spread over the survey);
       a population density simulated under the fit;
    3. each tract's offsets and noise scalings fitted, the reference band (i) given its true
       offset, as the stellar calibration would (galaxies cannot see a gray offset);
    4. posteriors of the calibrated catalog, hyperparameters fitted again to them, the
       posteriors reweighted to that prior; checked against MCMC under the same prior and
       calibration; photo-z metrics before (step 1) and after.
    """
    from lor.emulators.registry import load_shipped_emulator
    from lor.hierarchy.calibrate import fit_hyperparameters
    from lor.hierarchy.reweight import PosteriorReweighter
    from lor.hierarchy.zeropoints import PopulationDensity, fit_tract
    from lor.inference.amortized import PhotometryPosteriors
    from lor.inference.mcmc import mcmc_posterior_samples
    from lor.inference.prior_registry import estimator_prior
    from lor.inference.registry import load_shipped_estimator
    from lor.inference.simulate import simulate_catalog
    from lor.inference.validation import photoz_metrics

    emulator = load_shipped_emulator()
    posteriors = PhotometryPosteriors(load_shipped_estimator(), emulator)
    interim = estimator_prior(posteriors.estimator.spec)
    shift = validation_shift(interim)
    bands = list(emulator.band_names)
    ref = bands.index("i")
    truth = interim.with_hyperparameters(interim.hyperparameters | shift)
    rng = np.random.default_rng(31)
    zp_true = rng.uniform(-0.03, 0.03, (tracts, len(bands)))
    scale_true = rng.uniform(1.0, 1.15, (tracts, len(bands)))
    cats = [simulate_catalog(per_tract, emulator, truth, seed=310 + t,
                             zeropoint_offset=zp_true[t], noise_scale=scale_true[t])
            for t in range(tracts)]  # fmt: skip
    flux = np.concatenate([c.flux for c in cats])
    err = np.concatenate([c.flux_err for c in cats])
    z_true = np.concatenate([c.theta[:, 0] for c in cats])
    tract = np.repeat(np.arange(tracts), per_tract)
    before = posteriors.infer(flux, err, seed=1)
    free = list(shift)
    # Hyperparameters from an even subset (the fit's cost grows with 64 draws per object).
    sub = np.linspace(0, len(flux) - 1, min(HYPER_OBJECTS, len(flux))).astype(int)
    first = fit_hyperparameters(posteriors, before.params[sub], free, interim)
    echo(f"loop: hyperparameters from uncalibrated posteriors {first.hyperparameters}")

    t0 = time.perf_counter()
    density = PopulationDensity.simulate(emulator, first.prior(interim), seed=5)
    density_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    fits = [fit_tract(density, t, bands, flux[tract == t], err[tract == t], "i",
                      float(zp_true[t, ref])) for t in range(tracts)]  # fmt: skip
    zp_fit_s = time.perf_counter() - t0
    zp_fit = np.array([f.zeropoint_offset for f in fits])
    zp_err = np.array([f.zeropoint_err for f in fits])
    scale_fit = np.array([f.noise_scale for f in fits])
    scale_err = np.array([f.noise_scale_err for f in fits])
    fitted = [b for b in range(len(bands)) if b != ref]
    zp_diff = (zp_fit - zp_true)[:, fitted]
    echo(f"loop: zeropoints max |error| {np.abs(zp_diff).max():.4f} mag")

    after_raw = posteriors.infer(flux, err, zeropoint_offset=zp_fit[tract],
                                 noise_scale=scale_fit[tract], seed=1)  # fmt: skip
    fit = fit_hyperparameters(posteriors, after_raw.params[sub], free, interim)
    prior = fit.prior(interim)
    zeros, ones = np.zeros_like(flux), np.ones_like(flux)
    data = posteriors.prepare(
        flux, err, zeropoint_offset=zp_fit[tract], noise_scale=scale_fit[tract]
    )
    after = PosteriorReweighter(posteriors, interim, prior).reweight(
        after_raw.params, data.flux, data.err, None, None, zeros, ones, zeros, ones, seed=2
    )
    pick = np.linspace(0, len(flux) - 1, n_mcmc).astype(int)
    samples, _ = mcmc_posterior_samples(emulator, prior, posteriors.rep, after_raw.params[pick],
                                data.flux[pick], data.err[pick], seed=3)  # fmt: skip
    z50_mcmc = np.median(samples[:, :, 0], axis=1)
    dz = np.abs(after.summaries["z_q50"][pick] - z50_mcmc) / (1 + z50_mcmc)
    dz_before = np.abs(before.summaries["z_q50"][pick] - z50_mcmc) / (1 + z50_mcmc)
    return {
        "zp_max_abs_err": float(np.abs(zp_diff).max()),
        "zp_rms_err": float(np.sqrt(np.mean(zp_diff**2))),
        "zp_max_abs_pull": float(np.abs(zp_diff / zp_err[:, fitted]).max()),
        "zp_median_reported_err": {b: float(np.median(zp_err[:, i])) for i, b in enumerate(bands)
                                   if i != ref},
        "noise_scale_max_abs_err": float(np.abs(scale_fit - scale_true).max()),
        "noise_scale_max_abs_pull": float(np.abs((scale_fit - scale_true) / scale_err).max()),
        "zp_injected_max_abs": float(np.abs(zp_true[:, fitted]).max()),
        "zp_density_s": density_s, "zp_fit_s": zp_fit_s,
        "hyper_fit_uncalibrated": {h: first.hyperparameters[h] for h in free},
        "hyper_fit": {h: {"fit": fit.hyperparameters[h], "err": fit.errors[h],
                          "true": shift[h],
                          "interim": interim.hyperparameters[h]} for h in free},
        "hyper_max_abs_pull": max(abs(fit.hyperparameters[h] - v) / fit.errors[h]
                                  for h, v in shift.items()),
        "hyper_fit_median_ess": fit.median_ess,
        "reweighted_vs_mcmc_median_dz50": float(np.median(dz)),
        "interim_uncalibrated_vs_mcmc_median_dz50": float(np.median(dz_before)),
        "hyper_objects": len(sub), "n_mcmc": n_mcmc, "validation_tracts": tracts,
        "validation_objects_per_tract": per_tract,
        "photoz_before": photoz_metrics(before.summaries["z_q50"], z_true),
        "photoz_after": photoz_metrics(after.summaries["z_q50"], z_true),
    }  # fmt: skip


def _process_rate(engine, release_models: dict[str, int], label: str) -> tuple[int, float]:  # type: ignore[no-untyped-def]
    """Objects and seconds of processing every object from scratch in a new run (its own copy
    of the interim prior), models loaded before the clock as for a reprocess run."""
    from lor.runs.processing import clear_processor_cache, process_run, run_processor

    prior = bench_priors(engine, (label,))[label]
    run_id = create_bench_run(engine, f"bench-{label}", release_models, prior, 2000)
    run_processor(engine, run_id)
    t0 = time.perf_counter()
    counts = process_run(engine, run_id, progress=False)
    elapsed = time.perf_counter() - t0
    clear_processor_cache()
    return counts.done, elapsed


def run_reprocess_benchmark(
    objects: int = 50_000, tracts: int = 10, validation_tracts: int = 4,
    validation_per_tract: int = 30_000, n_mcmc: int = 200, repeats: int = MIN_REPEATS,
    echo=print,  # type: ignore[no-untyped-def]
) -> dict[str, Any]:  # fmt: skip
    """Run the benchmark (see the module docstring); returns the figures.

    Every rate is the median of ``repeats`` runs over the same parent posteriors (each its
    own reprocess run, to its own copy of the new prior or calibration version), with min
    and max (:mod:`lor.bench.harness`). ``validation_tracts=0`` skips the loop validation.
    """
    from lor.catalog.ingest import ingest_catalog
    from lor.db.calibration_store import create_calibration_version
    from lor.db.model_store import register_prior_version
    from lor.hierarchy.reweight import PriorRatio, reweight_by_cubature
    from lor.inference.prior_registry import estimator_prior
    from lor.inference.registry import load_shipped_estimator
    from lor.reporting.demo import register_shipped_models
    from lor.runs.processing import limit_compute_threads

    limit_compute_threads()
    with (
        bench_report("reprocess", repeats) as out,
        tempfile.TemporaryDirectory() as tmp,
        temporary_database(resolve_database_url(), "lor_bench") as url,
    ):
        engine = make_engine(url)
        upgrade(engine)
        path = write_simulated_catalog(Path(tmp) / "objects.parquet", objects, tracts)
        n = ingest_catalog(engine, path, RELEASE, progress=False).rows_new
        models = register_shipped_models(engine)
        # Processing from scratch, side by side: the first run is the parent of the rest.
        runs = [_process_rate(engine, models, f"process-{i}") for i in range(repeats)]
        out |= rate_figures("objects_per_s_process", [r[0] for r in runs], [r[1] for r in runs])
        with engine.connect() as conn:
            parent, prior_id = conn.execute(text(
                "SELECT id, prior_version_id FROM lor.processing_runs WHERE name = "
                "'bench-process-0'")).one()  # fmt: skip
        echo(f"processed {n} objects in {tracts} tracts {repeats} times")

        interim = estimator_prior(load_shipped_estimator().spec)
        new_prior = interim.with_hyperparameters(
            interim.hyperparameters | validation_shift(interim)
        )
        rng = np.random.default_rng(3)
        with engine.begin() as conn:
            tract_ids = [r[0] for r in conn.execute(text(
                "SELECT DISTINCT tract_id FROM lor.objects ORDER BY 1"))]  # fmt: skip
            shifted = tract_ids[: len(tract_ids) // 2]
            terms = {t: {b: (float(rng.uniform(-0.03, 0.03)), None, 1.0, None) for b in "ugrizy"}
                     for t in shifted}  # fmt: skip
            versions = [(
                register_prior_version(
                    conn, f"bench-shifted-prior-{i}", new_prior.as_record(), "manual",
                    {"source": "lor.bench.reprocess"}, parent_id=prior_id,
                ),
                create_calibration_version(
                    conn, f"bench-offsets-{i}", terms, "manual", {"source": "lor.bench.reprocess"}
                ),
            ) for i in range(repeats)]  # fmt: skip

        with engine.connect() as conn:
            stored = conn.execute(text(
                "SELECT params, params_rest FROM lor.posteriors "
                "WHERE run_id = :r AND params IS NOT NULL"),
                {"r": parent}).all()  # fmt: skip
        params = join_rows([r.params for r in stored], [r.params_rest for r in stored])
        rep = load_shipped_estimator().representation
        ratio = PriorRatio(new_prior, interim)
        reweight_by_cubature(rep, params[:2000], ratio)
        kernel_s = repeat(lambda: reweight_by_cubature(rep, params, ratio), repeats)
        out |= rate_figures("reweight_kernel_objects_per_s_prior", len(params), kernel_s)

        prior_runs = [_timed_reprocess(engine, parent, prior_version=p) for p, _ in versions]
        out |= rate_figures("objects_per_s_prior", [r[1] for r in prior_runs],
                            [r[2] for r in prior_runs])  # fmt: skip
        out["objects_per_s_prior_vs_process"] = (
            out["objects_per_s_prior"] / out["objects_per_s_process"]
        )
        out["prior_rows"], out["ess_flag_frac_prior"] = _flag_fraction(engine, prior_runs[0][0])
        echo(f"prior change: {out['objects_per_s_prior']:.0f} objects/s (median)")
        cal_runs = [_timed_reprocess(engine, parent, calibration_version=c) for _, c in versions]
        out |= rate_figures("objects_per_s_calibration", [r[1] for r in cal_runs],
                            [r[2] for r in cal_runs])  # fmt: skip
        out["calibration_rows"], out["ess_flag_frac_calibration"] = _flag_fraction(
            engine, cal_runs[0][0]
        )
        out["calibration_tracts_affected"] = f"{len(shifted)} of {len(tract_ids)}"
        echo(f"calibration change: {out['objects_per_s_calibration']:.0f} objects/s (median)")
        engine.dispose()
        out["ess_flag_frac"] = out["ess_flag_frac_calibration"]
        if validation_tracts:
            validation = _loop_validation(validation_tracts, validation_per_tract, n_mcmc, echo)
            # One run each, minutes long: durations of the validation, not benchmark timings.
            out["validation_single_run_s"] = {
                k: validation.pop(k) for k in ("zp_density_s", "zp_fit_s")
            }
            out |= validation
        out.update(objects=n, tracts=tracts)
        out["data"] = (
            f"{n} objects simulated under the interim prior (shipped emulator, LSST 10-year "
            f"depth, i < 25.3) in {tracts} tracts, posteriors from the shipped estimator; new "
            f"prior {validation_shift(interim)}; calibration offsets U(-0.03, 0.03) mag in every "
            f"band of half the tracts; processing from scratch of the same objects in the same "
            f"run. Loop validation: {validation_tracts} tracts x {validation_per_tract} "
            f"objects drawn from the shifted population, offsets U(-0.03, 0.03) mag and noise "
            f"scalings U(1.0, 1.15) in every band (seed 31); i-band offsets given (stellar "
            f"calibration), the others fitted; MCMC under the fitted prior and calibration on "
            f"{n_mcmc} objects spread over the survey"
        )
    return out
