"""Bandpasses from the ``speclite`` filter library.

Bands are named as speclite names them, ``<group>-<band>`` (e.g. ``lsst2023-r``); the short
names of the shipped band sets (:mod:`lor.bands`: ``u g r i z y``, ``I_E Y_E J_E
H_E``) are aliases for their curves, and a path to an ``.ecsv`` file loads that curve. A bandpass is
the dimensionless throughput ``R(lambda)`` of a photon-counting detector, so the AB flux
through it is the photon-weighted mean

    f_nu = int f_lambda R lambda dlambda / int R lambda dlambda * lambda_pivot**2 / c,

with ``lambda_pivot**2 = int R lambda dlambda / int R / lambda dlambda``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np

from lor.bands import LSST_BANDS, shipped_aliases
from lor.errors import UnknownBandError

BAND_ALIASES: Final[dict[str, str]] = shipped_aliases()
"""Short names accepted in place of speclite names: those of every shipped band set."""


@dataclass(frozen=True)
class Bandpass:
    """One filter throughput curve.

    Attributes
    ----------
    name
        The speclite filter name (aliases resolved).
    wavelength
        Wavelengths in Angstrom, increasing.
    response
        Dimensionless throughput at ``wavelength``, zero at both ends.
    """

    name: str
    wavelength: np.ndarray
    response: np.ndarray

    @property
    def pivot_wavelength(self) -> float:
        """Pivot wavelength (Angstrom), which converts mean ``f_lambda`` to ``f_nu``."""
        w, r = self.wavelength, self.response
        return float(np.sqrt(np.trapezoid(r * w, w) / np.trapezoid(r / w, w)))

    @property
    def support(self) -> tuple[float, float]:
        """Smallest and largest wavelength (Angstrom) with non-zero throughput."""
        nonzero = np.flatnonzero(self.response > 0)
        return float(self.wavelength[nonzero[0]]), float(self.wavelength[nonzero[-1]])


def _speclite_filter_dir() -> Path:
    from speclite.filters import get_path_of_data_file

    return Path(get_path_of_data_file("filters/lsst2023-u.ecsv")).parent


def _library_names() -> list[str]:
    return sorted(p.stem for p in _speclite_filter_dir().glob("*.ecsv"))


def available_band_names() -> list[str]:
    """The short aliases followed by every filter name in speclite's library, sorted."""
    return sorted(BAND_ALIASES) + _library_names()


def _unknown_band_error(unknown: Sequence[str]) -> UnknownBandError:
    return UnknownBandError(
        f"unknown band(s) {list(unknown)}; available bands: {', '.join(available_band_names())}"
    )


def resolve_band_name(name: str) -> str:
    """The speclite name for ``name`` (an alias or a speclite name).

    Raises
    ------
    UnknownBandError
        If ``name`` is neither an alias nor in speclite's library; the message lists the
        available names.
    """
    resolved = BAND_ALIASES.get(name, name)
    if resolved not in _library_names() and not _is_filter_file(resolved):
        raise _unknown_band_error([name])
    return resolved


def _is_filter_file(name: str) -> bool:
    return name.endswith(".ecsv") and Path(name).is_file()


def load_bandpasses(names: Sequence[str] = LSST_BANDS) -> list[Bandpass]:
    """Load throughput curves by name.

    Parameters
    ----------
    names
        speclite filter names (``lsst2023-g``, ``hsc2017-i``, ...), short names of the
        shipped band sets (``u g r i z y I_E Y_E J_E H_E``) or ``.ecsv`` filter files.

    Returns
    -------
    list of Bandpass
        In the order of ``names``.

    Raises
    ------
    UnknownBandError
        If a name is unknown (all unknown names are reported at once, with the list of
        available names), or no name is given.
    """
    if isinstance(names, str):
        names = [names]
    if len(names) == 0:
        raise UnknownBandError("no bands requested")
    library = set(_library_names())
    unknown = [
        n
        for n in names
        if BAND_ALIASES.get(n, n) not in library and not _is_filter_file(BAND_ALIASES.get(n, n))
    ]
    if unknown:
        raise _unknown_band_error(unknown)
    from speclite.filters import load_filter

    bands = []
    for name in names:
        resolved = BAND_ALIASES.get(name, name)
        curve = load_filter(resolved)  # a speclite name or an .ecsv path
        if _is_filter_file(resolved):
            resolved = f"{curve.meta['group_name']}-{curve.meta['band_name']}"
        wavelength = np.asarray(curve.wavelength, dtype=np.float64)
        response = np.asarray(curve.response, dtype=np.float64)
        bands.append(Bandpass(resolved, wavelength, response))
    return bands


def write_filter_files(bands: Sequence[Bandpass], directory: Path) -> list[Path]:
    """Write each curve as a two-column text file (Angstrom, throughput).

    This is the format of bagpipes' ``filt_list`` (and of most SED-fitting codes).

    Returns
    -------
    list of Path
        One file per band, named ``<name>.dat``, in the order of ``bands``.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for band in bands:
        path = directory / f"{band.name}.dat"
        np.savetxt(path, np.column_stack([band.wavelength, band.response]), fmt="%.8e")
        paths.append(path)
    return paths
