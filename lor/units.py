"""The AB magnitude system in lor's flux unit, nJy: one definition for every module.

``m_AB = -2.5 log10(f / 3631 Jy)`` (Oke & Gunn 1983, ApJ 266, 713), so a source of
``AB_ZEROPOINT_NJY`` nJy has ``m_AB = 0`` and a source of 1 nJy has ``m_AB = AB_MAG_OF_1_NJY``
(31.4). The SQL side has the same conversion as ``lor.njy_to_abmag``.
"""

from __future__ import annotations

from typing import Final

import numpy as np

AB_ZEROPOINT_NJY: Final[float] = 3631e9
"""Flux density (nJy) of an ``m_AB = 0`` source."""

AB_MAG_OF_1_NJY: Final[float] = float(2.5 * np.log10(AB_ZEROPOINT_NJY))
"""AB magnitude (31.40007) of a 1 nJy source: ``m_AB = AB_MAG_OF_1_NJY - 2.5 log10(f / nJy)``."""


def abmag_to_njy(mag: np.ndarray | float) -> np.ndarray:
    """Flux density (nJy) of AB magnitudes ``mag``."""
    return AB_ZEROPOINT_NJY * np.power(10.0, -0.4 * np.asarray(mag, np.float64))


def njy_to_abmag(flux: np.ndarray | float) -> np.ndarray:
    """AB magnitudes of flux densities ``flux`` (nJy); ``-inf``/NaN (with a NumPy warning)
    for zero/negative fluxes, so callers that meet them mask first."""
    return -2.5 * np.log10(np.asarray(flux, np.float64) / AB_ZEROPOINT_NJY)
