"""``lor bench emulator``: accuracy and speed of the photometry emulator, side by side.

Held-out set: fresh draws from the training box (the broad interim prior) with a seed the
training never used, pushed through lor's forward model. Speed: the emulator batched
against bagpipes' ``model_galaxy`` photometry per call (what a user would otherwise run)
and against lor's own vectorized forward model, all measured in this run. ``peak_fraction``
is the emulator's achieved FLOP/s over that of a large float32 matrix product in TF.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import numpy as np
import tensorflow as tf

from lor.bands import DEFAULT_BAND_SET, band_set_of
from lor.bench.harness import MIN_REPEATS, bench_report, rate_figures, repeat
from lor.emulators.accuracy import error_model
from lor.emulators.registry import (
    SHIPPED_DIR,
    SHIPPED_EMULATORS,
    load_emulator,
    load_shipped_emulator,
    named_emulator_pin,
)
from lor.emulators.speculator import FEATURES, SpeculatorEmulator
from lor.errors import ConfigError

HELD_OUT_SEED = 777_000_001


def _best_time(fn, repeats: int = 3) -> float:  # type: ignore[no-untyped-def]
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def matmul_flops_per_s(n: int = 4096, repeats: int = 3) -> float:
    """This CPU's float32 matmul FLOP/s in TF: the best of ``repeats`` products of n x n."""
    a = tf.random.normal((n, n))
    f = tf.function(lambda x: tf.linalg.matmul(x, x))
    f(a).numpy()
    return 2 * n**3 / _best_time(lambda: f(a).numpy(), repeats)


def emulator_flops(emulator: SpeculatorEmulator) -> int:
    if hasattr(emulator, "flops_per_object"):  # families that count their own (restframe)
        return int(emulator.flops_per_object())
    sizes = [len(FEATURES), *emulator.spec["hidden"], len(emulator.band_names)]
    matmul = sum(2 * a * b for a, b in zip(sizes[:-1], sizes[1:], strict=True))
    gates = 5 * sum(emulator.spec["hidden"])  # sigmoid, 2 multiplies, 2 adds per unit
    return matmul + gates


def run_emulator_benchmark(
    n_held_out: int = 20_000, n_speed: int = 1_000_000, n_bagpipes: int = 30,
    emulator_name: str | None = None,
    repeats: int = MIN_REPEATS, band_set: str = DEFAULT_BAND_SET,
) -> dict[str, Any]:  # fmt: skip
    """Accuracy on the held-out set; every speed the median of ``repeats`` with min and max
    (the forward model's on the first 2,000 held-out vectors); the shipped emulator of
    ``band_set``."""
    from lor.sps import SPSModel, simulate_training_set
    from lor.sps.bagpipes_reference import BagpipesReference
    from lor.sps.training_set import sample_box

    with bench_report("emulator", repeats) as out:
        emulator = load_shipped_emulator(band_set)
        pin = None if emulator_name is None else named_emulator_pin(emulator_name)
        if pin is not None:
            emulator = load_emulator(SHIPPED_DIR / pin[0], pin[1])
            if band_set_of(emulator.spec).name != band_set:
                raise ConfigError(f"emulator {pin[0]} is not of band set {band_set!r}")
        model = SPSModel(bands=emulator.band_names)
        params, mags = simulate_training_set(
            n_held_out, seed=HELD_OUT_SEED, model=model, progress=False
        )
        n_forward = min(2000, n_held_out)
        forward_s = repeat(
            lambda: simulate_training_set(n_forward, seed=HELD_OUT_SEED, model=model,
                                          progress=False),
            repeats,
        )  # fmt: skip
        err = emulator.magnitudes(params).astype(np.float64) - mags
        rms = np.sqrt(np.mean(err**2, axis=0))
        p999 = np.percentile(np.abs(err), 99.9, axis=0)

        rng = np.random.default_rng(HELD_OUT_SEED + 1)
        box = {
            n: (lo, hi)
            for n, lo, hi in zip(
                emulator.param_names, emulator.box_lo, emulator.box_hi, strict=True
            )
        }
        speed_params = sample_box(n_speed, box, rng).astype(np.float32)
        emulator.magnitudes(speed_params[:100_000])  # compile
        emulator_s = repeat(lambda: emulator.magnitudes(speed_params), repeats)

        reference = BagpipesReference(bands=emulator.band_names)
        reference.magnitudes(params[:1])  # build the model_galaxy once, as a user would
        bagpipes_s = repeat(lambda: reference.magnitudes(params[1 : 1 + n_bagpipes]), repeats)

        peak = matmul_flops_per_s(repeats=repeats)
        flops = emulator_flops(emulator)
        speed = rate_figures("objects_per_s", n_speed, emulator_s)
        per_object = statistics.median(emulator_s) / n_speed
        bagpipes_per_call = statistics.median(bagpipes_s) / n_bagpipes
        out |= {
            "data": f"{n_held_out} held-out draws from the training box (seed {HELD_OUT_SEED}) "
            f"through lor's forward model; speed on {n_speed} box draws; bagpipes on "
            f"{n_bagpipes} vectors; the forward model's speed on {n_forward}",
            "band_set": band_set,
            "emulator": {
                "name": SHIPPED_EMULATORS[band_set][0],
                "sha256": SHIPPED_EMULATORS[band_set][1],
                "hidden": emulator.spec["hidden"],
                "training_minutes": emulator.spec.get("metrics", {}).get("train_minutes"),
                "training_epochs": emulator.spec.get("metrics", {}).get("epochs"),
                "training_samples": emulator.spec.get("training_stats", {}).get("n_train"),
            },
            "rms_mag": float(rms.max()),
            "p999_abs_mag": float(p999.max()),
            "rms_mag_per_band": dict(zip(emulator.band_names, rms.round(5).tolist(), strict=True)),
            "p999_abs_mag_per_band": dict(
                zip(emulator.band_names, p999.round(5).tolist(), strict=True)
            ),
            "speedup_vs_bagpipes": bagpipes_per_call / per_object,
            "speedup_vs_forward_model": statistics.median(forward_s) / n_forward / per_object,
            **speed,
            "peak_fraction": flops * speed["objects_per_s"] / peak,
            "emulator_flops_per_object": flops,
            "matmul_flops_per_s": peak,
            "bagpipes_s_per_object": bagpipes_per_call,
            **rate_figures("forward_model_objects_per_s", n_forward, forward_s),
        }
        if pin is not None:
            out["emulator"] |= {"name": pin[0], "sha256": pin[1]}
        trained = emulator.spec.get("metrics") or {}
        out["training"] = {
            "minutes": trained.get("train_minutes"),
            "epochs": trained.get("epochs"),
            "hardware": trained.get("hardware", "not recorded (trained before issue #13)"),
        }
        z = params[:, emulator.param_names.index("redshift")]
        out["error_by_redshift"] = error_model(emulator.band_names, z, err)
    return out
