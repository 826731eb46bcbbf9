"""Simulated training sets for flux emulators: parameters drawn from a box, magnitudes.

``log_mstar`` is not sampled: magnitudes depend on it only through the exact shift
``-2.5 * log_mstar`` (:meth:`lor.sps.model.SPSModel.magnitudes_unit_mass`), so every
sample is computed at the fixed :data:`REFERENCE_LOG_MSTAR` and an emulator learns the
mass-free function; add ``-2.5 * (log_mstar - REFERENCE_LOG_MSTAR)`` to use another mass.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from tqdm.auto import tqdm

from lor.errors import ParameterError
from lor.sps.bandpasses import LSST_BANDS
from lor.sps.model import SPSModel
from lor.sps.parameters import MASS_INDEX, PARAM_NAMES, box_arrays, default_training_box

REFERENCE_LOG_MSTAR = 10.0
"""The fixed ``log_mstar`` of simulated training samples (dex Msun)."""


def sample_box(n: int, box: dict[str, tuple[float, float]], rng: np.random.Generator) -> np.ndarray:
    """Draw ``n`` parameter vectors uniformly in ``box``, ``log_mstar`` fixed.

    Returns
    -------
    numpy.ndarray
        ``(n, D)`` in :data:`~lor.sps.parameters.PARAM_NAMES` order, with
        ``log_mstar = REFERENCE_LOG_MSTAR``.
    """
    low, high = box_arrays(box)
    params = rng.uniform(low, high, size=(n, len(PARAM_NAMES)))
    params[:, MASS_INDEX] = REFERENCE_LOG_MSTAR
    return params


def simulate_training_set(
    n: int,
    box: dict[str, tuple[float, float]] | None = None,
    seed: int = 0,
    bands: Sequence[str] = LSST_BANDS,
    chunk_size: int = 10_000,
    model: SPSModel | None = None,
    progress: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Draw parameters uniformly in ``box`` and compute their AB magnitudes.

    Parameters
    ----------
    n
        Number of samples.
    box
        ``{name: (low, high)}`` for every parameter; default
        :func:`~lor.sps.parameters.default_training_box`. The ``log_mstar`` range is
        ignored (see the module docstring).
    seed
        Seed of the numpy random generator; the same seed gives the same set.
    bands
        Band names for the model (ignored when ``model`` is given).
    chunk_size
        Samples per progress-bar step.
    model
        A ready :class:`SPSModel` to reuse; built from ``bands`` when omitted.
    progress
        Show a tqdm progress bar.

    Returns
    -------
    params : numpy.ndarray
        ``(n, D)`` parameters.
    mags : numpy.ndarray
        ``(n, B)`` AB magnitudes at ``log_mstar = REFERENCE_LOG_MSTAR``.
    """
    if n <= 0:
        raise ParameterError(f"n must be positive, got {n}")
    box = default_training_box() if box is None else box
    model = SPSModel(bands=bands) if model is None else model
    params = sample_box(n, box, np.random.default_rng(seed))
    mags = np.empty((n, len(model.band_names)))
    with tqdm(total=n, unit="obj", disable=not progress, desc="SPS") as bar:
        for start in range(0, n, chunk_size):
            stop = min(start + chunk_size, n)
            mags[start:stop] = model.magnitudes(params[start:stop])
            bar.update(stop - start)
    return params, mags
