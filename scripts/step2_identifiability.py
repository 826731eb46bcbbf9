"""Which hyperparameters of the shipped estimator's prior family broad-band photometry
constrains: a Fisher-style check on a simulated survey (issue #12).

Simulates N objects from the family's default population (shipped emulator, LSST 10-year
depth, i < 25.3), infers their posteriors with the shipped estimator, fits *every*
hyperparameter of the family at once from them (lor.hierarchy.calibrate), and prints, per
hyperparameter, the fitted value, its Laplace error, the error relative to its search range,
the largest |correlation| with another one, and whether it ended on a bound. A hyperparameter
whose error is a small fraction of its range and that is not strongly degenerate with another
is one Step 2 can fit. Usage: python scripts/step2_identifiability.py [N]
"""

from __future__ import annotations

import json
import sys

import numpy as np


def main(n: int = 5000) -> dict:
    from lor.emulators.registry import load_shipped_emulator
    from lor.hierarchy.calibrate import HYPER_BOUNDS, fit_hyperparameters
    from lor.inference.amortized import PhotometryPosteriors
    from lor.inference.prior_registry import estimator_prior
    from lor.inference.registry import load_shipped_estimator
    from lor.inference.simulate import simulate_catalog

    posteriors = PhotometryPosteriors(load_shipped_estimator(), load_shipped_emulator())
    prior = estimator_prior(posteriors.estimator.spec)
    cat = simulate_catalog(n, posteriors.emulator, prior, seed=99)
    params = posteriors.infer(cat.flux, cat.flux_err, seed=1).params
    free = [h for h in prior.hyperparameters if h in HYPER_BOUNDS]
    fit = fit_hyperparameters(posteriors, params, free, prior)
    err = np.sqrt(np.clip(np.diag(fit.covariance), 1e-300, None))
    corr = fit.covariance / np.outer(err, err)
    np.fill_diagonal(corr, 0.0)
    out = {"objects": n, "family": prior.family, "hyperparameters": {}}
    for i, h in enumerate(free):
        lo, hi = HYPER_BOUNDS[h]
        out["hyperparameters"][h] = {
            "true": prior.hyperparameters[h], "fitted": fit.hyperparameters[h],
            "error": float(err[i]), "error_over_range": float(err[i] / (hi - lo)),
            "max_abs_corr": float(np.max(np.abs(corr[i]))),
            "with": free[int(np.argmax(np.abs(corr[i])))], "at_bound": h in fit.at_bound,
        }  # fmt: skip
    return out


if __name__ == "__main__":
    print(json.dumps(main(int(sys.argv[1]) if len(sys.argv) > 1 else 5000), indent=1))
