"""Band-set contract: every shipped band set loads, round-trips, agrees with the others on
shared band names, drives the data model, and has shipped models trained on it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from lor.bands import (
    LSST_BANDS,
    MAX_BANDS,
    Band,
    BandSet,
    band_set_of,
    load_band_set,
    shipped_band_set_names,
    shipped_band_sets,
)
from lor.errors import ConfigError
from lor.inference.data_model import DataModel
from lor.sps.bandpasses import load_bandpasses

SHIPPED = shipped_band_set_names()
MODELS = Path(__file__).resolve().parents[2] / "lor" / "data" / "models"


def test_shipped_band_sets_are_lsst_and_lsst_euclid() -> None:
    assert {"lsst", "lsst-euclid"} <= set(SHIPPED)
    assert load_band_set("lsst").band_names == LSST_BANDS == tuple("ugrizy")
    both = load_band_set("lsst-euclid")
    assert both.band_names[:6] == LSST_BANDS
    assert both.filter_names[6:] == ("Euclid-VIS", "Euclid-Y", "Euclid-J", "Euclid-H")


@pytest.mark.parametrize("name", SHIPPED)
def test_band_set_contract(name: str) -> None:
    band_set = load_band_set(name)
    assert band_set.name == name
    assert 1 <= len(band_set.bands) <= MAX_BANDS
    assert band_set.reference_band in band_set.band_names
    # The record is what the database and artifact specs store: it round-trips exactly.
    record = json.loads(json.dumps(band_set.as_record()))
    again = BandSet.from_record(record)
    assert again == band_set and again.sha256 == band_set.sha256
    # Every curve loads and the bands are in increasing pivot wavelength within a survey.
    curves = load_bandpasses(list(band_set.filter_names))
    pivots = np.array([c.pivot_wavelength for c in curves])
    assert np.all(pivots > 3000) and np.all(pivots < 25000)
    lsst = [i for i, f in enumerate(band_set.filter_names) if f.startswith("lsst2023-")]
    assert np.all(np.diff(pivots[lsst]) > 0)
    # The short names resolve to the same curves through the alias table.
    assert [c.name for c in load_bandpasses(list(band_set.band_names))] == [c.name for c in curves]
    # The data model reads its depths: at m5 (and the depth's own survey time) the error
    # model gives S/N = 1 / (0.2 ln10/2.5 ...) = 5.43 for every gamma (Ivezic+2019 Eq. 5).
    model = DataModel(bands=band_set.band_names, band_set=band_set)
    for b, band in enumerate(band_set.bands):
        years = band.m5_years or 10.0
        flux = np.full((1, len(band_set.bands)), 1.0)
        flux[0, b] = 3631e9 * 10 ** (-0.4 * band.m5)
        sigma = model.flux_error(flux, years=years)
        assert flux[0, b] / sigma[0, b] == pytest.approx(1 / (0.2 * np.log(10) / 2.5), rel=1e-6)


def test_one_short_name_is_one_band_everywhere() -> None:
    seen: dict[str, Band] = {}
    for band_set in shipped_band_sets():
        for band in band_set.bands:
            assert seen.setdefault(band.name, band) == band, band.name


@pytest.mark.parametrize("name", SHIPPED)
def test_every_band_set_has_shipped_models_trained_on_it(name: str) -> None:
    """Each shipped band set has a pinned emulator and estimator whose specs name it, and the
    estimator was trained on that emulator."""
    from lor.emulators.registry import SHIPPED_EMULATORS, load_shipped_emulator
    from lor.inference.registry import SHIPPED_ESTIMATORS, load_shipped_estimator

    band_set = load_band_set(name)
    emulator, estimator = load_shipped_emulator(name), load_shipped_estimator(name)
    for model in (emulator, estimator):
        assert band_set_of(model.spec).same_bands(band_set)
        assert tuple(model.band_names) == band_set.band_names
    assert estimator.spec["emulator"]["sha256"] == SHIPPED_EMULATORS[name][1]
    folders = {SHIPPED_EMULATORS[name][0], SHIPPED_ESTIMATORS[name][0]}
    assert folders <= {p.parent.name for p in MODELS.glob("*/spec.json")}


def test_fixed_depth_bands_do_not_follow_survey_years() -> None:
    model = DataModel(bands=("i", "H_E"))
    d1, d10 = model.depth(1.0), model.depth(10.0)
    assert d10[0] - d1[0] == pytest.approx(1.25)
    assert d10[1] == d1[1] == pytest.approx(24.3)


def test_malformed_band_sets_are_refused(tmp_path: Path) -> None:
    good = load_band_set("lsst").as_record()
    with pytest.raises(ConfigError, match="case-blind"):
        BandSet.from_record(good | {"bands": [*good["bands"], dict(good["bands"][5], name="Y")]})
    with pytest.raises(ConfigError, match="reference band"):
        BandSet.from_record(good | {"reference_band": "H_E"})
    many = [dict(good["bands"][0], name=f"b{i}") for i in range(MAX_BANDS + 1)]
    with pytest.raises(ConfigError, match="masks"):
        BandSet.from_record(good | {"bands": many, "reference_band": "b0"})
    with pytest.raises(ConfigError, match="unknown band set"):
        load_band_set("no-such-set")
    path = tmp_path / "mine.yaml"
    path.write_text(json.dumps(good | {"name": "mine"}))  # JSON is YAML
    assert load_band_set(str(path)).band_names == LSST_BANDS


def test_data_model_needs_a_definition_for_every_band() -> None:
    with pytest.raises(ConfigError, match="Ks"):
        DataModel(bands=("u", "Ks"))
    custom = DataModel(
        bands=("u", "Ks"), m5={"Ks": 22.0}, gamma={"Ks": 0.04}, m5_years={"Ks": None}
    )
    assert custom.depth(10.0)[1] == pytest.approx(22.0)
