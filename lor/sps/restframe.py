"""Rest-frame spectra without the IGM, and their exact projection onto bands on a z grid.

The forward model's rest-frame spectrum depends on the redshift only through the population
age (``age_frac * t_universe(z)``) and the IGM. With the age given in years, the spectrum
``S(lambda; theta6)`` before the IGM is a function of six redshift-independent parameters
(:data:`RESTFRAME_PARAMS`), and the photometry at redshift ``z`` is linear in it:

    <L>_b(z) = sum_k S_k W_kb(z) + sum_l S_l V_lb(z),

where ``W`` and ``V`` hold the IGM transmission at ``z`` (:mod:`lor.sps.igm`), the band
throughput at ``lambda (1 + z)`` and the photon-weighting of
:class:`lor.sps.photometry.RedshiftedBands`. :class:`TrackProjector` tabulates ``W`` and
``V`` on a redshift grid, so one rest-frame spectrum gives its whole magnitude-redshift
track in every band at the cost of one matrix product: the training set of the
``restframe`` emulator (:mod:`lor.emulators.restframe`).
"""

from __future__ import annotations

from typing import Final

import numpy as np

from lor.sps.model import C_ANGSTROM_S, IGM_DZ, L_SUN_ERG_S, SPSModel
from lor.sps.parameters import PARAM_NAMES
from lor.sps.photometry import OVERSAMPLE
from lor.units import AB_ZEROPOINT_NJY

RESTFRAME_PARAMS: Final[tuple[str, ...]] = (
    "log_zmet",
    "log_tau",
    "log_age_yr",
    "av",
    "dust_n",
    "log_u",
)
"""The redshift-independent parameters of a rest-frame spectrum (age in log10 years)."""

_IDX = {name: i for i, name in enumerate(PARAM_NAMES)}


def rest_frame_before_igm(model: SPSModel, theta6: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Continuum (N, K) in Lsun/A and lines (N, L) in Lsun per Msun formed, no IGM.

    ``theta6`` is ``(N, 6)`` in :data:`RESTFRAME_PARAMS` order. The forward model's own
    :meth:`SPSModel._rest_frame` is evaluated at ``z = 0`` with ``age_frac = age / t0``:
    its IGM transmission at ``z = 0`` is exactly 1 (no absorber lies between ``z = 0`` and
    the observer), so this is the same code path, not a copy of the physics.
    """
    theta6 = np.asarray(theta6, np.float64)
    p = np.zeros((theta6.shape[0], len(PARAM_NAMES)))
    for j, name in enumerate(RESTFRAME_PARAMS):
        if name != "log_age_yr":
            p[:, _IDX[name]] = theta6[:, j]
    p[:, _IDX["age_frac"]] = 10.0 ** theta6[:, 2] / model.cosmology.age_today_yr
    parts = [
        model._rest_frame(p[i : i + model.chunk_size])
        for i in range(0, p.shape[0], model.chunk_size)
    ]
    return np.concatenate([c for c, _ in parts]), np.concatenate([v for _, v in parts])


def restframe_params(params: np.ndarray, model: SPSModel) -> np.ndarray:
    """The six :data:`RESTFRAME_PARAMS` of full parameter vectors ``(N, D)``."""
    z = params[:, _IDX["redshift"]]
    log_age = np.log10(params[:, _IDX["age_frac"]] * model.cosmology.age(z))
    cols = {name: params[:, _IDX[name]] for name in RESTFRAME_PARAMS if name != "log_age_yr"}
    cols["log_age_yr"] = log_age
    return np.stack([cols[name] for name in RESTFRAME_PARAMS], axis=1)


class TrackProjector:
    """Exact band projection of rest-frame spectra at the redshifts of a grid.

    Parameters
    ----------
    model
        The forward model (its pixels, lines, bands, IGM tables and cosmology).
    z_grid
        Redshifts (increasing) at which the tracks are tabulated.
    """

    def __init__(self, model: SPSModel, z_grid: np.ndarray) -> None:
        self.model = model
        self.z_grid = np.asarray(z_grid, np.float64)
        phot = model.photometry
        g = model.grids
        n_z, n_b = self.z_grid.size, len(model.band_names)
        k, n_lines = g.wavelength.size, g.line_wavelength.size
        self.continuum_weights = np.zeros((n_z, k, n_b))
        self.line_weights = np.zeros((n_z, n_lines, n_b))
        scale = OVERSAMPLE / phot.dlnlam
        tables = phot._tables
        for iz, z in enumerate(self.z_grid):
            igm_c, igm_l = self._igm(z)
            pos = np.log1p(z) * scale
            start = int(np.floor(pos))
            frac = pos - start
            index = start + phot._stride
            line_pos = np.log(g.line_wavelength / phot.centres[0]) * scale + pos
            line_pos = np.clip(line_pos, 0.0, tables.shape[1] - 1.000001)
            line_index = line_pos.astype(np.int64)
            line_frac = line_pos - line_index
            for b, table in enumerate(tables):
                resp = table[index] + frac * (table[index + 1] - table[index])
                norm = resp @ phot.lam_dlam
                resp_line = table[line_index] + line_frac * (
                    table[line_index + 1] - table[line_index]
                )
                self.continuum_weights[iz, :, b] = igm_c * phot.lam_dlam * resp / norm
                self.line_weights[iz, :, b] = igm_l * g.line_wavelength * resp_line / norm
        self.distance_term = self.mag_offset(self.z_grid)
        self._flat: dict[str, np.ndarray] = {}

    def _igm(self, z: float) -> tuple[np.ndarray, np.ndarray]:
        """Continuum and line IGM transmissions at ``z``, interpolated as the model does."""
        m = self.model
        iz = min(int(z / IGM_DZ), m._igm_z.size - 2)
        fz = (z - m._igm_z[iz]) / IGM_DZ
        cont = np.ones(m.grids.wavelength.size)
        cont[: m._n_blue] = (1 - fz) * m._igm_cont[iz] + fz * m._igm_cont[iz + 1]
        lines = (1 - fz) * m._igm_lines[iz] + fz * m._igm_lines[iz + 1]
        return cont, lines

    def mag_offset(self, z: np.ndarray) -> np.ndarray:
        """``m_b - (-2.5 log10 <L>_b)`` at ``z``, shape ``(len(z), B)``: distance, ``1 + z``,
        pivot and units (exact; as :meth:`SPSModel._fluxes_unit_mass`)."""
        z = np.asarray(z, np.float64)
        dl = self.model.cosmology.luminosity_distance(z)
        factor = L_SUN_ERG_S / (4.0 * np.pi * dl**2 * (1.0 + z))
        pivot = self.model.photometry.pivot**2 / C_ANGSTROM_S * 1e32 / AB_ZEROPOINT_NJY
        return -2.5 * np.log10(factor[:, None] * pivot[None, :])

    def mean_luminosity(
        self, continuum: np.ndarray, lines: np.ndarray, dtype: type = np.float64
    ) -> np.ndarray:
        """``<L>_b`` (Lsun/A) at every grid redshift: shape ``(N, n_z, B)``.

        ``dtype=np.float32`` halves the cost (one matrix product of ``(N, K + L)`` by
        ``(K + L, n_z B)``) at a relative precision of 1e-6, i.e. micro-magnitudes.
        """
        key = np.dtype(dtype).name
        if key not in self._flat:
            n_z, n_b = self.z_grid.size, len(self.model.band_names)
            both = np.concatenate([self.continuum_weights, self.line_weights], axis=1)
            self._flat[key] = np.ascontiguousarray(
                both.transpose(1, 0, 2).reshape(-1, n_z * n_b), dtype=dtype
            )
        spectra = np.concatenate([continuum, lines], axis=1).astype(dtype)
        return (spectra @ self._flat[key]).reshape(len(spectra), self.z_grid.size, -1)
