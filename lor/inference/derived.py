"""Derived physical quantities of SPS parameters (for posterior summaries).

``log_sfr``: the delayed-tau star-formation rate at the time of observation,
``SFR(T) = M T exp(-T/tau) / (tau**2 [1 - exp(-x)(1 + x)])`` with ``x = T / tau``, ``T`` the
population age (``age_frac`` times the age of the universe at z, Planck18) and ``M`` the
mass formed; in Msun/yr.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache

import numpy as np

from lor.sps.parameters import PARAM_NAMES

_C = {name: i for i, name in enumerate(PARAM_NAMES)}


@lru_cache(maxsize=1)
def _age_table() -> tuple[np.ndarray, np.ndarray]:
    from astropy.cosmology import Planck18

    z = np.linspace(0.0, 8.0, 8001)
    return z, Planck18.age(z).to("yr").value


def log_sfr(theta: np.ndarray) -> np.ndarray:
    theta = np.asarray(theta, np.float64)
    z_grid, age_grid = _age_table()
    age = theta[:, _C["age_frac"]] * np.interp(theta[:, _C["redshift"]], z_grid, age_grid)
    tau = 10.0 ** (theta[:, _C["log_tau"]] + 9.0)
    x = age / tau
    norm = -np.expm1(-x) - x * np.exp(-x)  # 1 - e^-x (1 + x), stable for small x
    norm = np.where(x < 1e-4, 0.5 * x**2, norm)
    return (
        theta[:, _C["log_mstar"]]
        + np.log10(age)
        - x / np.log(10.0)
        - 2.0 * np.log10(tau)
        - np.log10(norm)
    )


def derived_quantities(theta: np.ndarray) -> Mapping[str, np.ndarray]:
    """What :meth:`lor.posteriors.base.PosteriorRepresentation.summaries` asks for."""
    return {"log_sfr": log_sfr(theta)}
