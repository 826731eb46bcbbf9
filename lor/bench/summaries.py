"""``lor bench posteriors``: throughput of :meth:`GaussianMixtureFlow.summaries`.

Reports objects per second for the analytic columns alone (redshift and stellar mass) and
with ``log_sfr`` from samples through a cheap stand-in ``derived`` function, so the figure
measures lor's work and not an SFH model's.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from lor.bench.harness import bench_report, rate_figures
from lor.posteriors.gmm_flow import GaussianMixtureFlow
from lor.posteriors.synthetic import random_params
from lor.sps.parameters import box_arrays, default_training_box


def _stand_in_log_sfr(theta: np.ndarray) -> dict[str, np.ndarray]:
    """A smooth function of several parameters, as a real log SFR is."""
    return {"log_sfr": theta[:, 1] - 9.5 - 0.5 * theta[:, 3] + np.log10(theta[:, 4])}


def run_summaries_benchmark(
    n_objects: int = 10_000,
    n_components: int = 4,
    n_samples: int = 256,
    repeats: int = 5,
    seed: int = 0,
) -> dict[str, Any]:
    """Objects/s of ``summaries`` on synthetic posteriors (D=8): the median of ``repeats``
    with min and max (:mod:`lor.bench.harness`).

    CPU-time rates are reported beside the wall-clock ones, with the load average, because a
    shared machine's wall clock mostly measures the neighbours.
    """
    lo, hi = box_arrays(default_training_box())
    flow = GaussianMixtureFlow(lo, hi, n_components)
    params = random_params(flow, n_objects, seed)
    with bench_report("posterior_summaries", repeats) as result:
        result["data"] = {
            "n_objects": n_objects,
            "n_components": n_components,
            "n_dim": flow.n_dim,
            "floats_per_object": flow.floats_per_object,
            "params": f"lor.posteriors.synthetic.random_params(seed={seed})",
            "n_samples_for_log_sfr": n_samples,
        }
        for key, derived in (("analytic", None), ("with_log_sfr", _stand_in_log_sfr)):
            wall, cpu = [], []
            for _ in range(repeats):
                t0, c0 = time.perf_counter(), time.process_time()
                flow.summaries(params, derived=derived, n_samples=n_samples, seed=seed)
                wall.append(time.perf_counter() - t0)
                cpu.append(time.process_time() - c0)
            result |= rate_figures(f"{key}_objects_per_s", n_objects, wall)
            # CPU seconds are what a busy, shared machine still measures fairly.
            result |= rate_figures(f"{key}_objects_per_cpu_s", n_objects, cpu)
    return result
