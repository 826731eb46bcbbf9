"""Bandpass loading: speclite names, short aliases, errors, and filter files."""

from __future__ import annotations

import numpy as np
import pytest

from lor.bands import load_band_set
from lor.errors import UnknownBandError
from lor.sps.bandpasses import (
    available_band_names,
    load_bandpasses,
    resolve_band_name,
    write_filter_files,
)
from lor.sps.model import SPSModel


def test_unknown_band_lists_available_names() -> None:
    with pytest.raises(UnknownBandError) as info:
        load_bandpasses(["lsst2023-r", "nonsense-q"])
    message = str(info.value)
    assert "nonsense-q" in message
    assert "lsst2023-u" in message and "sdss2010-r" in message
    with pytest.raises(UnknownBandError):  # before any grid is read
        SPSModel(bands=["r", "nonsense-q"])


def test_short_band_aliases() -> None:
    bands = load_bandpasses(list("ugrizy"))
    assert [b.name for b in bands] == list(load_band_set("lsst").filter_names)
    assert "u" in available_band_names()
    pivots = [b.pivot_wavelength for b in bands]
    assert np.all(np.diff(pivots) > 0)


def test_resolve_band_name() -> None:
    assert resolve_band_name("g") == "lsst2023-g"
    assert resolve_band_name("hsc2017-i") == "hsc2017-i"
    with pytest.raises(UnknownBandError, match="lsst2023-y"):
        resolve_band_name("lsst2023-q")


def test_write_filter_files_round_trip(tmp_path) -> None:
    bands = load_bandpasses(["r", "sdss2010-z"])
    paths = write_filter_files(bands, tmp_path)
    for band, path in zip(bands, paths, strict=True):
        table = np.loadtxt(path)
        np.testing.assert_allclose(table[:, 0], band.wavelength, rtol=1e-8)
        np.testing.assert_allclose(table[:, 1], band.response, rtol=1e-8, atol=1e-30)
        assert band.support[0] < band.pivot_wavelength < band.support[1]


def test_euclid_short_names_and_filter_files(tmp_path) -> None:
    assert resolve_band_name("H_E") == "Euclid-H"
    assert [b.name for b in load_bandpasses(["I_E", "J_E"])] == ["Euclid-VIS", "Euclid-J"]
    import shutil

    from speclite.filters import get_path_of_data_file

    path = tmp_path / "mine-VIS.ecsv"
    shutil.copy(get_path_of_data_file("filters/Euclid-VIS.ecsv"), path)
    (band,) = load_bandpasses([str(path)])
    np.testing.assert_allclose(band.pivot_wavelength, load_bandpasses(["I_E"])[0].pivot_wavelength)
