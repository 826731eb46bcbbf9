"""Departures from lor's SPS model, for deciding by measurement which ones the data ask for.

Issue #12 asks for SPS flexibility "where the data ask for it". Each departure here is one
the misspecification suite (:mod:`lor.inference.misspecification`) draws its catalogs with,
added to lor's forward model as optional per-object parameters, so that
``lor bench sps-flexibility`` can measure how much model misfit each one removes before
anyone pays for a new emulator and estimator with more parameters:

- **burst**: a recent instantaneous burst holding ``burst_frac`` of the mass formed, at age
  ``10**log_burst_age_yr`` (bagpipes' ``burst`` component, Carnall et al. 2018, MNRAS 480,
  4379); the rest follows the delayed-tau history.
- **line scale**: every nebular line luminosity multiplied by ``10**log_line_scale``, the
  scatter of line strengths at fixed stellar population that Leistedt et al. (2023, ApJS
  264, 23) fit as emission-line corrections.
- **2175 A bump**: a Drude profile added to the attenuation curve (Noll et al. 2009, A&A
  507, 1793, Eq. 3: ``D = E_b lam^2 dlam^2 / ((lam^2 - lam0^2)^2 + lam^2 dlam^2)``,
  ``lam0 = 2175 A``, ``dlam = 350 A``), divided by the Calzetti ``R_V = 4.05`` so that
  ``A(lam) / A_V = (lam / 5500)^-n + D(lam) / R_V``; Salim et al. (2018, ApJ 859, 11)
  find amplitudes ``E_b`` of about 1-1.3 for star-forming galaxies.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from lor.sps.model import SPSModel
from lor.sps.parameters import MASS_INDEX, as_param_array
from lor.sps.sfh import AgeGrid

BUMP_CENTRE_A = 2175.0
BUMP_WIDTH_A = 350.0
R_V_CALZETTI = 4.05

EXTENSION_BOXES: dict[str, dict[str, tuple[float, float]]] = {
    "burst": {"burst_frac": (0.0, 0.3), "log_burst_age_yr": (7.0, 8.6)},
    "line_scale": {"log_line_scale": (-0.7, 0.7)},
    "bump": {"bump_amplitude": (0.0, 4.0)},
}
"""Each departure's parameters and the ranges searched (they contain the suite's draws:
bursts of 1-20% aged 10-300 Myr, Salim ``B = 1``)."""


@dataclass(frozen=True)
class SPSExtensions:
    """Per-object departures from the base model, each shape ``(N,)``; ``None`` = off."""

    burst_frac: np.ndarray | None = None
    log_burst_age_yr: np.ndarray | None = None
    log_line_scale: np.ndarray | None = None
    bump_amplitude: np.ndarray | None = None

    @classmethod
    def from_columns(cls, names: list[str], values: np.ndarray) -> SPSExtensions:
        """Build from named columns of ``values`` (shape ``(N, len(names))``)."""
        return cls(**{name: values[:, i] for i, name in enumerate(names)})

    def rows(self, sl: slice) -> SPSExtensions:
        """The same departures for the objects ``sl`` (for chunked evaluation)."""
        return SPSExtensions(
            **{
                f.name: None if getattr(self, f.name) is None else getattr(self, f.name)[sl]
                for f in fields(self)
            }
        )

    def mass_weights(self, delayed: np.ndarray, ages: AgeGrid, age_yr: np.ndarray) -> np.ndarray:
        """Mix a burst into the delayed-tau mass weights ``(N, A)``.

        The burst's mass goes to the two SSP age bins around its age, linearly in log age,
        so the fluxes are smooth in ``log_burst_age_yr``; a burst older than the galaxy is
        placed at the galaxy's age.
        """
        if self.burst_frac is None:
            return delayed
        log_ages = np.log10(ages.ages)
        log_burst = np.minimum(np.asarray(self.log_burst_age_yr), np.log10(age_yr))
        j = np.clip(np.searchsorted(log_ages, log_burst) - 1, 0, log_ages.size - 2)
        w = np.clip((log_burst - log_ages[j]) / (log_ages[j + 1] - log_ages[j]), 0.0, 1.0)
        burst = np.zeros_like(delayed)
        rows = np.arange(delayed.shape[0])
        burst[rows, j] = 1.0 - w
        burst[rows, j + 1] += w
        f = np.asarray(self.burst_frac)[:, None]
        return (1.0 - f) * delayed + f * burst

    def line_factor(self) -> np.ndarray | float:
        """Multiplier of the line luminosities, ``(N, 1)`` or 1."""
        if self.log_line_scale is None:
            return 1.0
        return 10.0 ** np.asarray(self.log_line_scale)[:, None]

    def extra_attenuation(self, wavelength: np.ndarray) -> np.ndarray | float:
        """``D(lambda) / R_V`` of the 2175 A bump at rest ``wavelength``, ``(N, K)`` or 0."""
        if self.bump_amplitude is None:
            return 0.0
        lam2 = wavelength**2
        drude = lam2 * BUMP_WIDTH_A**2 / ((lam2 - BUMP_CENTRE_A**2) ** 2 + lam2 * BUMP_WIDTH_A**2)
        return np.asarray(self.bump_amplitude)[:, None] * drude[None, :] / R_V_CALZETTI


class FlexibleSPSModel:
    """lor's forward model with :class:`SPSExtensions` switched on per object."""

    def __init__(self, model: SPSModel) -> None:
        self.model = model

    def fluxes_unit_mass(self, params: np.ndarray, ext: SPSExtensions) -> np.ndarray:
        """AB fluxes (nJy) per Msun formed, ``(N, B)``; the ``log_mstar`` column is ignored."""
        params = self.model._check(as_param_array(params))
        step = self.model.chunk_size
        return np.concatenate(
            [
                self.model._fluxes_unit_mass(params[i : i + step], ext.rows(slice(i, i + step)))
                for i in range(0, params.shape[0], step)
            ]
        )

    def fluxes_njy(self, params: np.ndarray, ext: SPSExtensions) -> np.ndarray:
        """AB fluxes (nJy), ``(N, B)``, for the mass formed in ``params``."""
        params = as_param_array(params)
        return self.fluxes_unit_mass(params, ext) * 10.0 ** params[:, MASS_INDEX, None]
