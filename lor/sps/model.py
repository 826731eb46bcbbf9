"""The SPS forward model: parameters -> rest-frame spectra -> AB band fluxes, batched.

Physics (mirroring bagpipes' ``model_galaxy`` with ``delayed`` SFH, ``CF00`` dust with
``eta = 2``, ``nebular`` emission and its always-on IGM, so that the two agree to better
than 0.02 mag, see ``tests/sps/test_bagpipes_crosscheck.py``):

1. Star-formation history: delayed tau, integrated on a fine age grid into the SSP age bins
   (:mod:`lor.sps.sfh`), unit mass formed.
2. Stellar populations: BC03 SSPs, linearly interpolated in metallicity ``Z/Zsun`` between
   the two nearest grid values (0.005-5 Zsun; values outside are rejected).
3. Birth clouds: stars younger than 10 Myr emit nothing below 912 A; their ionizing photons
   power a Cloudy nebular continuum and 124 lines, interpolated linearly in log U (grid
   -4 to 0) and Z.
4. Dust (Charlot & Fall 2000, as in bagpipes ``CF00``): everything is attenuated by
   ``A(lambda) = av * (lambda / 5500 A)**-dust_n``; stars younger than 10 Myr and all
   nebular emission by ``eta * A(lambda)``, ``eta = 2``. Dust emission is left out: the
   Draine & Li (2007) templates bagpipes adds are zero below 1 micron rest frame, so it
   only reaches the y band at ``z < 0.1``, where it adds 0.2 per cent on average (at most
   2 per cent) even for ``av = 2-3`` and young populations.
5. IGM: Inoue et al. (2014) mean transmission (:mod:`lor.sps.igm`), averaged over pixels
   and interpolated linearly in redshift on a 0.01 grid; emission lines take the
   transmission just blueward of their wavelength (so Lyman alpha is absorbed as in
   bagpipes).
6. Observation: ``f_lambda = L_lambda / (4 pi D_L**2 (1 + z))`` at ``lambda (1 + z)``, the
   photon-weighted mean through each band, converted to ``f_nu`` with the band's pivot
   wavelength; ``Lsun = 3.826e33 erg/s`` (the BC03 value); distances and ages from the
   cosmology (astropy ``Planck18`` by default; bagpipes uses ``FlatLambdaCDM(70, 0.3)``).

Spectra live on a log-uniform rest-frame grid (``dlnlam = 0.005`` by default, bagpipes'
photometric sampling) from the bluest band edge divided by ``1 + z_max`` to the reddest
band edge. Fluxes are linear in the mass formed, so ``log_mstar`` enters the magnitudes as
the exact shift ``-2.5 * log_mstar`` (see :meth:`SPSModel.magnitudes_unit_mass`).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from lor.errors import ConfigError, ParameterError
from lor.sps.bandpasses import LSST_BANDS, Bandpass, load_bandpasses
from lor.sps.cosmology import CosmologyTable
from lor.sps.grids import LOG_U, METALLICITIES, SPSGrids, load_raw_grids, log_pixel_edges
from lor.sps.igm import (
    LYMAN_ALPHA,
    inoue14_transmission,
    load_lyman_series_coefficients,
    pixel_averaged_transmission,
)
from lor.sps.parameters import (
    ETA_BIRTH_CLOUD,
    MASS_INDEX,
    PARAM_NAMES,
    T_BIRTH_CLOUD_GYR,
    as_param_array,
)
from lor.sps.photometry import RedshiftedBands
from lor.sps.sfh import AgeGrid
from lor.units import njy_to_abmag

if TYPE_CHECKING:
    from lor.sps.flexible import SPSExtensions

L_SUN_ERG_S = 3.826e33
"""Solar luminosity (erg/s) in which the BC03 grids are expressed."""

C_ANGSTROM_S = 2.99792458e18
"""Speed of light (Angstrom/s)."""

MODEL_NAME = "bc03-delayed-cf00-nebular-igm"
"""Name stamped on artifacts derived from this forward model."""

MODEL_VERSION = "1"
"""Bumped whenever the physics or the numerics change the magnitudes."""

IGM_DZ = 0.01
"""Redshift step of the tabulated IGM transmission (bagpipes uses the same)."""

_IDX = dict(zip(PARAM_NAMES, range(len(PARAM_NAMES)), strict=True))


@dataclass(frozen=True)
class Spectra:
    """Rest-frame model spectra (after dust and IGM), for the mass formed in the params.

    Attributes
    ----------
    wavelength
        Pixel centres (Angstrom), shape ``(K,)``.
    continuum
        Luminosity density (Lsun/A), shape ``(N, K)``, pixel averages.
    line_wavelength
        Emission-line wavelengths (Angstrom), shape ``(L,)``.
    line_luminosity
        Line luminosities (Lsun), shape ``(N, L)``.
    """

    wavelength: np.ndarray
    continuum: np.ndarray
    line_wavelength: np.ndarray
    line_luminosity: np.ndarray


def _grid_interp(values: np.ndarray, grid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lower grid index and linear weight of the upper node, clamped at the grid edges."""
    lo = np.clip(np.searchsorted(grid, values, side="left") - 1, 0, grid.size - 2)
    frac = np.clip((values - grid[lo]) / (grid[lo + 1] - grid[lo]), 0.0, 1.0)
    return lo, frac


def _interpolated_sum(
    weights: np.ndarray, grid: np.ndarray, lo: np.ndarray, frac: np.ndarray
) -> np.ndarray:
    """``sum_corners w_corner * (weights @ grid[corner])`` for multilinear interpolation.

    ``grid`` has shape ``(*D, a, K)``; ``lo`` and ``frac`` are ``(N, len(D))`` lower node
    indices and upper-node weights; ``weights`` is ``(N, a)``. Objects are grouped by
    their interpolation cell so that each cell costs a few small matrix products.
    """
    dims = grid.shape[:-2]
    out = np.zeros((weights.shape[0], grid.shape[-1]))
    keys = np.ravel_multi_index(tuple(lo.T), dims)
    order = np.argsort(keys, kind="stable")
    starts = np.flatnonzero(np.diff(keys[order], prepend=-1))
    for group in np.split(order, starts[1:]):
        cell = lo[group[0]]
        for corner in itertools.product((0, 1), repeat=len(dims)):
            index = tuple(int(c) + int(k) for c, k in zip(cell, corner, strict=True))
            w = np.ones(group.size)
            for axis, k in enumerate(corner):
                w = w * (frac[group, axis] if k else 1.0 - frac[group, axis])
            out[group] += w[:, None] * (weights[group] @ grid[index])
    return out


class SPSModel:
    """Composite stellar population forward model, vectorized over parameter vectors.

    Parameters
    ----------
    bands
        speclite filter names (or aliases ``u g r i z y``); default LSST ugrizy.
    cosmology
        An ``astropy.cosmology.FLRW`` instance; default ``Planck18``.
    z_max
        Largest redshift the model accepts (sets the blue end of the rest-frame grid).
    dlnlam
        Width of the rest-frame pixels in ``ln(lambda)``.
    pixel_edges
        Explicit rest-frame pixel edges (Angstrom, uniform in ``ln(lambda)``), overriding
        ``dlnlam`` and the automatic range; they must cover the bands from ``z = 0`` to
        ``z_max``.
    sampling
        ``"average"`` (default): SSP and nebular spectra are averaged over each pixel
        (flux-conserving). ``"point"``: interpolated at pixel centres like bagpipes does,
        which aliases absorption lines; for cross-checks only.
    chunk_size
        Objects per vectorized chunk (bounds memory: about 60 kB per object).

    Raises
    ------
    lor.errors.UnknownBandError
        If a band name is unknown.
    lor.errors.ConfigError
        If bagpipes (which ships the grids) is not installed, or ``pixel_edges`` do not
        cover the bands.
    """

    def __init__(
        self,
        bands: Sequence[str] = LSST_BANDS,
        cosmology=None,
        z_max: float = 6.0,
        dlnlam: float = 0.005,
        pixel_edges: np.ndarray | None = None,
        sampling: str = "average",
        chunk_size: int = 2048,
    ) -> None:
        if cosmology is None:
            from astropy.cosmology import Planck18

            cosmology = Planck18
        self.bands: list[Bandpass] = load_bandpasses(bands)
        self.band_names: list[str] = [b.name for b in self.bands]
        self.z_max = float(z_max)
        self.sampling = sampling
        self.chunk_size = int(chunk_size)
        self.cosmology = CosmologyTable.from_astropy(cosmology, z_max=self.z_max)

        lam_lo = min(b.support[0] for b in self.bands) / (1.0 + self.z_max)
        lam_hi = max(b.support[1] for b in self.bands)
        if pixel_edges is None:
            edges = log_pixel_edges(0.99 * lam_lo, 1.01 * lam_hi, dlnlam)
        else:
            edges = np.asarray(pixel_edges, dtype=np.float64)
            if edges[0] > lam_lo or edges[-1] < lam_hi:
                raise ConfigError(
                    f"pixel_edges span {edges[0]:.1f}-{edges[-1]:.1f} A but the bands need "
                    f"{lam_lo:.1f}-{lam_hi:.1f} A rest frame up to z = {self.z_max}"
                )
        ages = AgeGrid.for_age_of_universe(self.cosmology.age_today_yr)
        raw = load_raw_grids()
        self.grids = SPSGrids.build(raw, edges, ages, T_BIRTH_CLOUD_GYR * 1e9, sampling)
        self.photometry = RedshiftedBands(self.bands, edges, self.z_max)

        self._log_wave_5500 = np.log(self.grids.wavelength / 5500.0)
        self._log_line_5500 = np.log(self.grids.line_wavelength / 5500.0)
        coefs = load_lyman_series_coefficients(raw.igm_coefficients_path)
        self._igm_z = np.arange(0.0, self.z_max + 2 * IGM_DZ, IGM_DZ)
        self._n_blue = int(np.count_nonzero(edges[:-1] < LYMAN_ALPHA))
        self._igm_cont = pixel_averaged_transmission(edges[: self._n_blue + 1], self._igm_z, coefs)
        # Lines take the transmission just blueward of their wavelength.
        self._igm_lines = inoue14_transmission(
            self.grids.line_wavelength * (1.0 - 1e-9), self._igm_z, coefs
        )

    @property
    def param_names(self) -> tuple[str, ...]:
        """Names of the parameter columns (:data:`lor.sps.parameters.PARAM_NAMES`)."""
        return PARAM_NAMES

    def describe(self) -> dict:
        """JSON-serializable description of this model, for provenance of derived artifacts."""
        from importlib.metadata import PackageNotFoundError, version

        try:
            grids_version = version("bagpipes")
        except PackageNotFoundError:  # pragma: no cover - grids found without metadata
            grids_version = "unknown"
        edges = self.grids.edges
        return {
            "name": MODEL_NAME,
            "version": MODEL_VERSION,
            "param_names": list(PARAM_NAMES),
            "bands": list(self.band_names),
            "cosmology": self.cosmology.name,
            "z_max": self.z_max,
            "pixels": {"n": int(edges.size - 1), "min": float(edges[0]), "max": float(edges[-1])},
            "sampling": self.sampling,
            "eta_birth_cloud": ETA_BIRTH_CLOUD,
            "t_birth_cloud_gyr": T_BIRTH_CLOUD_GYR,
            "grids": f"bagpipes {grids_version} BC03 MILES + Cloudy nebular",
        }

    @property
    def wavelength(self) -> np.ndarray:
        """Rest-frame pixel centres (Angstrom)."""
        return self.grids.wavelength

    # -- public API ---------------------------------------------------------------------

    def fluxes_njy(self, params: np.ndarray) -> np.ndarray:
        """AB fluxes (nJy) in each band, shape ``(N, B)``.

        Parameters
        ----------
        params
            Shape ``(N, D)`` (or ``(D,)``) in :data:`PARAM_NAMES` order.

        Raises
        ------
        lor.errors.ParameterError
            On a wrong shape, NaN/inf, or values outside what the model can compute.
        """
        params = self._check(params)
        unit = self._in_chunks(self._fluxes_unit_mass, params)
        return unit * 10.0 ** params[:, MASS_INDEX, None]

    def magnitudes(self, params: np.ndarray) -> np.ndarray:
        """AB magnitudes in each band, shape ``(N, B)`` (see :meth:`fluxes_njy`)."""
        params = self._check(params)
        return self._magnitudes_unit_mass(params) - 2.5 * params[:, MASS_INDEX, None]

    def magnitudes_unit_mass(self, params: np.ndarray) -> np.ndarray:
        """AB magnitudes for 1 Msun formed; the ``log_mstar`` column is ignored.

        ``magnitudes(p) == magnitudes_unit_mass(p) - 2.5 * p[:, MASS_INDEX, None]``
        exactly (fluxes are linear in the mass formed), so an emulator can learn this
        mass-free function and add the mass analytically.
        """
        return self._magnitudes_unit_mass(self._check(params))

    def spectra(self, params: np.ndarray) -> Spectra:
        """Rest-frame spectra after dust and IGM, scaled to the mass formed.

        Returns
        -------
        Spectra
            Continuum ``(N, K)`` in Lsun/A and lines ``(N, L)`` in Lsun.
        """
        params = self._check(params)
        mass = 10.0 ** params[:, MASS_INDEX, None]
        parts = [
            self._rest_frame(params[i : i + self.chunk_size])
            for i in range(0, params.shape[0], self.chunk_size)
        ]
        continuum = np.concatenate([p[0] for p in parts]) * mass
        lines = np.concatenate([p[1] for p in parts]) * mass
        return Spectra(self.wavelength, continuum, self.grids.line_wavelength, lines)

    # -- internals ----------------------------------------------------------------------

    def _check(self, params: np.ndarray) -> np.ndarray:
        params = as_param_array(params)
        z = params[:, _IDX["redshift"]]
        problems = []
        if np.any((z <= 0.0) | (z > self.z_max)):
            problems.append(f"redshift must be in (0, {self.z_max}]")
        age_frac = params[:, _IDX["age_frac"]]
        if np.any((age_frac <= 0.0) | (age_frac > 1.0)):
            problems.append("age_frac must be in (0, 1]")
        else:
            age = age_frac * self.cosmology.age(z)
            if np.any(age <= self.grids.ages.fine_ages[0]):
                problems.append("the population age age_frac * t_universe(z) must exceed 1 Myr")
        if np.any(params[:, _IDX["av"]] < 0.0):
            problems.append("av must be >= 0")
        zmet_lo, zmet_hi = np.log10(METALLICITIES[[0, -1]])
        log_zmet = params[:, _IDX["log_zmet"]]
        if np.any((log_zmet < zmet_lo - 1e-9) | (log_zmet > zmet_hi + 1e-9)):
            problems.append(f"log_zmet must be within the BC03 grid [{zmet_lo:.3f}, {zmet_hi:.3f}]")
        log_u = params[:, _IDX["log_u"]]
        if np.any((log_u < LOG_U[0]) | (log_u > LOG_U[-1])):
            problems.append(f"log_u must be within the nebular grid [{LOG_U[0]}, {LOG_U[-1]}]")
        if np.any(np.abs(params[:, _IDX["log_tau"]]) > 3.0):
            problems.append("log_tau must be within [-3, 3] (tau from 1 Myr to 1000 Gyr)")
        if problems:
            raise ParameterError("invalid SPS parameters: " + "; ".join(problems))
        return params

    def _magnitudes_unit_mass(self, params: np.ndarray) -> np.ndarray:
        flux = self._in_chunks(self._fluxes_unit_mass, params)
        return njy_to_abmag(flux)

    def _in_chunks(self, func, params: np.ndarray) -> np.ndarray:
        return np.concatenate(
            [
                func(params[i : i + self.chunk_size])
                for i in range(0, params.shape[0], self.chunk_size)
            ]
        )

    def _rest_frame(
        self, p: np.ndarray, ext: SPSExtensions | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Continuum (N, K) in Lsun/A and lines (N, L) in Lsun per Msun formed.

        ``ext`` switches on the departures of :mod:`lor.sps.flexible` (a burst, scaled
        lines, a 2175 A bump) for the model-flexibility experiments; ``None`` is the model.
        """
        g = self.grids
        z = p[:, _IDX["redshift"]]
        age_yr = p[:, _IDX["age_frac"]] * self.cosmology.age(z)
        tau_yr = 10.0 ** (p[:, _IDX["log_tau"]] + 9.0)
        mass = g.ages.delayed_tau_weights(age_yr, tau_yr)  # (N, A)
        if ext is not None:
            mass = ext.mass_weights(mass, g.ages, age_yr)

        young = mass[:, : g.n_young].copy()
        young[:, -1] *= 1.0 - g.old_fraction
        old = mass[:, g.n_young - 1 :].copy()
        old[:, 0] *= g.old_fraction

        z_lo, z_frac = _grid_interp(10.0 ** p[:, _IDX["log_zmet"]], METALLICITIES)
        u_lo, u_frac = _grid_interp(p[:, _IDX["log_u"]], LOG_U)
        zu_lo = np.column_stack([z_lo, u_lo])
        zu_frac = np.column_stack([z_frac, u_frac])
        spec_young = _interpolated_sum(young, g.young, zu_lo, zu_frac)
        spec_old = _interpolated_sum(old, g.old, z_lo[:, None], z_frac[:, None])
        lines = _interpolated_sum(young, g.lines, zu_lo, zu_frac)

        # Dust: ln(10**(-0.4 * A)) = -0.4 ln(10) * av * (lambda / 5500)**-n
        k = -0.4 * np.log(10.0) * p[:, _IDX["av"], None]
        n = p[:, _IDX["dust_n"], None]
        curve = np.exp(-n * self._log_wave_5500[None, :])
        line_curve = np.exp(-n * self._log_line_5500[None, :])
        if ext is not None:
            curve = curve + ext.extra_attenuation(self.grids.wavelength)
            line_curve = line_curve + ext.extra_attenuation(self.grids.line_wavelength)
            lines = lines * ext.line_factor()
        ln_trans = k * curve
        continuum = spec_young * np.exp(ETA_BIRTH_CLOUD * ln_trans) + spec_old * np.exp(ln_trans)
        lines = lines * np.exp(ETA_BIRTH_CLOUD * k * line_curve)

        # IGM, linear in redshift on the IGM_DZ grid.
        iz = np.minimum((z / IGM_DZ).astype(np.int64), self._igm_z.size - 2)
        fz = (z - self._igm_z[iz]) / IGM_DZ
        fz = fz[:, None]
        continuum[:, : self._n_blue] *= (1 - fz) * self._igm_cont[iz] + fz * self._igm_cont[iz + 1]
        lines = lines * ((1 - fz) * self._igm_lines[iz] + fz * self._igm_lines[iz + 1])
        return continuum, lines

    def _fluxes_unit_mass(self, p: np.ndarray, ext: SPSExtensions | None = None) -> np.ndarray:
        """AB fluxes (nJy) per Msun formed for one chunk, shape (N, B)."""
        continuum, lines = self._rest_frame(p, ext)
        z = p[:, _IDX["redshift"]]
        mean_l = self.photometry.mean_luminosity(
            continuum, z, self.grids.line_wavelength, lines
        )  # Lsun/A
        dl = self.cosmology.luminosity_distance(z)
        f_lambda = mean_l * (L_SUN_ERG_S / (4.0 * np.pi * dl**2 * (1.0 + z)))[:, None]
        f_nu = f_lambda * (self.photometry.pivot**2 / C_ANGSTROM_S)[None, :]  # erg/s/cm2/Hz
        return f_nu * 1e32  # nJy
