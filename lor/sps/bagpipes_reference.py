"""bagpipes' own ``model_galaxy`` photometry for lor parameter vectors.

The reference lor's forward model is checked against (tests/sps) and the per-call cost an
emulator is compared with (``lor bench emulator``). Needs the ``sps`` extra (bagpipes,
GPL-3), imported only here.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from lor.sps.bandpasses import LSST_BANDS, load_bandpasses, write_filter_files
from lor.sps.parameters import ETA_BIRTH_CLOUD, PARAM_NAMES, T_BIRTH_CLOUD_GYR
from lor.units import njy_to_abmag


def bagpipes_components(p: np.ndarray, age_of_universe_gyr: float) -> dict:
    """bagpipes ``model_components`` for one lor parameter vector (delayed SFH, CF00 dust)."""
    values = dict(zip(PARAM_NAMES, p, strict=True))
    return {
        "redshift": values["redshift"],
        "t_bc": T_BIRTH_CLOUD_GYR,
        "delayed": {
            "massformed": values["log_mstar"],
            "metallicity": 10 ** values["log_zmet"],
            "age": values["age_frac"] * age_of_universe_gyr,
            "tau": 10 ** values["log_tau"],
        },
        "dust": {"type": "CF00", "Av": values["av"], "n": values["dust_n"], "eta": ETA_BIRTH_CLOUD},
        "nebular": {"logU": values["log_u"]},
    }


class BagpipesReference:
    """One reused ``bagpipes.model_galaxy``, updated per parameter vector (as a user would)."""

    def __init__(
        self, bands: Sequence[str] = LSST_BANDS, cosmology=None, filter_dir: Path | None = None
    ) -> None:  # type: ignore[no-untyped-def]
        import bagpipes

        self.cosmology = cosmology or bagpipes.utils.cosmo
        self._tmp = None if filter_dir else tempfile.TemporaryDirectory()
        folder = Path(filter_dir or self._tmp.name)  # type: ignore[union-attr]
        self.filt_list = [str(p) for p in write_filter_files(load_bandpasses(bands), folder)]
        self._bagpipes = bagpipes
        self._galaxy = None

    def age_of_universe_gyr(self, z: np.ndarray) -> np.ndarray:
        return np.asarray(self.cosmology.age(np.asarray(z)).to("Gyr").value)

    @property
    def wavelengths(self) -> np.ndarray:
        """bagpipes' photometric wavelength grid (after the first model was built)."""
        if self._galaxy is None:
            raise RuntimeError("no bagpipes model built yet: call magnitudes() first")
        return self._galaxy.wavelengths

    def magnitudes(self, params: np.ndarray) -> np.ndarray:
        """AB magnitudes (N, B), one bagpipes model update per row."""
        params = np.atleast_2d(params)
        ages = self.age_of_universe_gyr(params[:, 0])
        out = np.empty((len(params), len(self.filt_list)))
        for i, p in enumerate(params):
            components = bagpipes_components(p, float(ages[i]))
            if self._galaxy is None:
                self._galaxy = self._bagpipes.model_galaxy(
                    components, filt_list=self.filt_list, phot_units="mujy"
                )
            else:
                self._galaxy.update(components)
            out[i] = njy_to_abmag(self._galaxy.photometry * 1e3)  # uJy -> nJy -> AB
        return out
