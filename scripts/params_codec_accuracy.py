"""What storing posteriors through lor.db.params_codec (migration 0010) costs in accuracy.

The shipped estimator on the held-out set of ``lor bench estimator`` (same seed, same
recipe); each posterior compared with its stored-and-read-back copy
(:func:`lor.db.params_codec.round_trip`): the redshift marginal (median, 68/95% intervals,
PIT at the true redshift), every other parameter's marginal median and 68% interval, the
joint log density at the truth, and a prior-change reweighting (the one of
``lor bench reprocess``) from each copy. Prints one JSON object.

    PYTHONPATH=. python scripts/params_codec_accuracy.py [N_OBJECTS]
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np

from lor.bench.estimator import HELD_OUT_ERROR_SCATTER_DEX, HELD_OUT_SEED
from lor.db.params_codec import round_trip, split

MASS_SHIFT = {"smf_mstar_shift": 0.3}
"""A prior change whose ratio depends on stellar mass (the knee of the mass function moves
0.3 dex), so the reweighted redshift marginal depends on the float16 entries."""


def _stats(x: np.ndarray) -> dict[str, float]:
    a = np.abs(np.asarray(x, np.float64))
    return {
        "max": float(a.max()),
        "p99": float(np.percentile(a, 99)),
        "median": float(np.median(a)),
    }


def _z_figures(rep, a: np.ndarray, b: np.ndarray, z_true: np.ndarray) -> dict[str, object]:  # type: ignore[no-untyped-def]
    qs = np.array([0.025, 0.16, 0.5, 0.84, 0.975])
    qa = np.asarray(rep.z_quantile(a, qs[None, :]), np.float64)
    qb = np.asarray(rep.z_quantile(b, qs[None, :]), np.float64)
    one_plus_z = 1 + qa[:, 2]
    pit_a = np.asarray(rep.z_cdf(a, z_true[:, None]), np.float64).reshape(-1)
    pit_b = np.asarray(rep.z_cdf(b, z_true[:, None]), np.float64).reshape(-1)
    return {
        "dz50_over_1pz": _stats((qb[:, 2] - qa[:, 2]) / one_plus_z),
        "d_width68_over_1pz": _stats(((qb[:, 3] - qb[:, 1]) - (qa[:, 3] - qa[:, 1])) / one_plus_z),
        "d_width95_over_1pz": _stats(((qb[:, 4] - qb[:, 0]) - (qa[:, 4] - qa[:, 0])) / one_plus_z),
        "d_pit": _stats(pit_b - pit_a),
        "coverage68": [float(np.mean(np.abs(p - 0.5) < 0.34)) for p in (pit_a, pit_b)],
        "coverage95": [float(np.mean(np.abs(p - 0.5) < 0.475)) for p in (pit_a, pit_b)],
    }


def main(n_objects: int = 20_000) -> dict[str, object]:
    from lor.emulators.registry import load_shipped_emulator
    from lor.hierarchy.calibrate import validation_shift
    from lor.hierarchy.reweight import PriorRatio, reweight_by_cubature
    from lor.inference.amortized import PhotometryPosteriors
    from lor.inference.prior_registry import estimator_prior
    from lor.inference.registry import load_shipped_estimator
    from lor.inference.simulate import simulate_catalog

    start = time.perf_counter()
    emulator = load_shipped_emulator()
    estimator = load_shipped_estimator()
    rep = estimator.representation
    prior = estimator_prior(estimator.spec)
    cat = simulate_catalog(
        n_objects, emulator, seed=HELD_OUT_SEED, years=10.0, prior=prior,
        error_scatter=HELD_OUT_ERROR_SCATTER_DEX,
    )  # fmt: skip
    result = PhotometryPosteriors(estimator, emulator).infer(
        cat.flux, cat.flux_err, seed=HELD_OUT_SEED
    )
    has = np.isfinite(result.params).all(axis=1)
    a = np.asarray(result.params[has], np.float32)
    b = round_trip(a, rep.name, str(rep.version))
    theta = cat.theta[has]
    z, rest = split(a, rep.name, str(rep.version))
    out: dict[str, object] = {
        "objects": int(has.sum()),
        "floats_per_object": int(a.shape[1]),
        "stored_bytes_params": {
            "before": 24 + 4 * a.shape[1],
            "after": 24 + 4 * z.shape[1] + 4 + rest.shape[1],
        },
        "max_abs_change_of_a_parameter": float(np.abs(b - a).max()),
        "max_rel_change_of_a_parameter": float(
            (np.abs(b - a) / np.maximum(np.abs(a), 2.0**-14)).max()
        ),
        "redshift": _z_figures(rep, a, b, theta[:, 0]),
    }
    names = list(estimator.spec["param_names"])
    per_param = {}
    for dim, name in enumerate(names[1:], start=1):
        ma, mb = rep.marginal(a, dim), rep.marginal(b, dim)
        q = np.array([0.16, 0.5, 0.84])[None, :]
        qa, qb = np.asarray(ma.quantile(q), np.float64), np.asarray(mb.quantile(q), np.float64)
        width = qa[:, 2] - qa[:, 0]
        pit_a = np.asarray(ma.cdf(theta[:, dim : dim + 1]), np.float64).reshape(-1)
        pit_b = np.asarray(mb.cdf(theta[:, dim : dim + 1]), np.float64).reshape(-1)
        per_param[name] = {
            "d_median_over_width68": _stats((qb[:, 1] - qa[:, 1]) / width),
            "d_width68_rel": _stats(((qb[:, 2] - qb[:, 0]) - width) / width),
            "d_pit": _stats(pit_b - pit_a),
        }
    out["other_parameters"] = per_param
    out["d_log_p_at_truth_nats"] = _stats(rep.log_prob(b, theta) - rep.log_prob(a, theta))
    # the prior change of lor bench reprocess, and one that depends on stellar mass too
    changes = {"validation_shift": validation_shift(prior), "smf_mstar_shift": MASS_SHIFT}
    for label, change in changes.items():
        ratio = PriorRatio(prior.with_hyperparameters(prior.hyperparameters | change), prior)
        ra, _ = reweight_by_cubature(rep, a, ratio)
        rb, _ = reweight_by_cubature(rep, b, ratio)
        ok = np.isfinite(ra).all(axis=1) & np.isfinite(rb).all(axis=1)
        out[f"after_prior_change_{label}"] = {
            "change": change,
            "objects": int(ok.sum()),
        } | _z_figures(rep, ra[ok], rb[ok], theta[ok, 0])
    out["seconds"] = time.perf_counter() - start
    return out


if __name__ == "__main__":
    print(json.dumps(main(*(int(a) for a in sys.argv[1:2])), indent=1))
