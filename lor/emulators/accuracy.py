"""Held-out accuracy of an emulator against lor's exact forward model, for every family.

What training stores in an artifact's ``spec["metrics"]`` and ``lor bench emulator``
reports: per-band rms, 99.9th percentile and maximum of ``|emulated - exact|`` over draws
from the whole training box, and the per-band error in redshift bins. The bins are the
error model the likelihood reads (:class:`lor.inference.model_error.ModelError`): lines and
breaks crossing the bands make the error change with redshift.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lor.emulators.protocol import Emulator

ERROR_MODEL_Z_EDGES = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0)
"""Redshift bins of the stored error model."""


def accuracy(emulator: Emulator, params: np.ndarray, mags: np.ndarray) -> dict[str, Any]:
    """Per-band rms and 99.9th-percentile |dm| of the emulator against the forward model."""
    err = emulator.magnitudes(params).astype(np.float64) - mags
    return _band_figures(list(emulator.band_names), err)


def _band_figures(band_names: list[str], err: np.ndarray) -> dict[str, Any]:
    rms = np.sqrt(np.mean(err**2, axis=0))
    p999 = np.percentile(np.abs(err), 99.9, axis=0)
    return {
        "n": int(len(err)),
        "rms_mag": dict(zip(band_names, rms.round(5).tolist(), strict=True)),
        "p999_abs_mag": dict(zip(band_names, p999.round(5).tolist(), strict=True)),
        "max_abs_mag": dict(
            zip(band_names, np.abs(err).max(axis=0).round(4).tolist(), strict=True)
        ),
        "rms_mag_worst": float(rms.max()),
        "p999_abs_mag_worst": float(p999.max()),
    }


def error_model(
    band_names: list[str], z: np.ndarray, err: np.ndarray, edges=ERROR_MODEL_Z_EDGES
) -> dict[str, Any]:
    """Per-band rms and 99th percentile of ``|err|`` in redshift bins (held-out draws)."""
    edges = np.asarray(edges, np.float64)
    which = np.clip(np.searchsorted(edges, z, side="right") - 1, 0, edges.size - 2)
    rms, p99, counts = [], [], []
    for k in range(edges.size - 1):
        e = err[which == k]
        counts.append(int(e.shape[0]))
        rms.append(np.sqrt(np.mean(e**2, axis=0)) if e.size else np.zeros(len(band_names)))
        p99.append(np.percentile(np.abs(e), 99, axis=0) if e.size else np.zeros(len(band_names)))
    rms_a, p99_a = np.array(rms), np.array(p99)
    return {
        "kind": "redshift_bins",
        "z_edges": edges.tolist(),
        "n": counts,
        "rms_mag": {b: rms_a[:, i].round(5).tolist() for i, b in enumerate(band_names)},
        "p99_abs_mag": {b: p99_a[:, i].round(5).tolist() for i, b in enumerate(band_names)},
    }


def measure(emulator: Emulator, params: np.ndarray, mags: np.ndarray) -> dict[str, Any]:
    """:func:`accuracy` plus the per-redshift :func:`error_model` (what an artifact stores)."""
    bands = list(emulator.band_names)
    err = emulator.magnitudes(params).astype(np.float64) - mags
    z = params[:, list(emulator.param_names).index("redshift")]
    return _band_figures(bands, err) | {"error_model": error_model(bands, z, err)}
