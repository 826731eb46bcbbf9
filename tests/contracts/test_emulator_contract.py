"""Contract tests over every registered emulator family, run on every shipped artifact of
each family (``lor/data/models``): what inference, the MCMC likelihood, the model error and
registration read (:class:`lor.emulators.protocol.Emulator`), checked the same way for each.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from lor.artifacts import read_artifact
from lor.emulators.protocol import Emulator
from lor.emulators.registry import FAMILIES, SHIPPED_DIR, SHIPPED_EMULATOR, load_emulator
from lor.errors import ArtifactError, ParameterError, UnknownBandError
from lor.units import abmag_to_njy
from tests.contracts.artifacts import EMULATOR_ARTIFACTS, shipped_artifacts

REQUIRED_SPEC = ("family", "family_version", "name", "param_names", "band_names", "training_box")


@pytest.fixture(
    scope="module", params=EMULATOR_ARTIFACTS, ids=[f.name for f, _ in EMULATOR_ARTIFACTS]
)
def artifact(request: pytest.FixtureRequest) -> tuple[Path, str]:
    return request.param


@pytest.fixture(scope="module")
def emulator(artifact: tuple[Path, str]) -> Emulator:
    return load_emulator(*artifact)


def _inside(emulator: Emulator, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.uniform(emulator.box_lo, emulator.box_hi, (n, len(emulator.box_lo)))


def test_every_shipped_artifact_has_a_registered_family() -> None:
    from lor.inference.registry import FAMILIES as ESTIMATORS

    for folder, _, key in shipped_artifacts():
        assert key in FAMILIES or key in ESTIMATORS, (folder, key)


def test_the_shipped_pin_is_among_the_artifacts() -> None:
    name, sha = SHIPPED_EMULATOR
    assert (SHIPPED_DIR / name, sha) in EMULATOR_ARTIFACTS


def test_satisfies_the_protocol(emulator: Emulator) -> None:
    assert isinstance(emulator, Emulator)
    assert FAMILIES[(emulator.family, emulator.family_version)] is type(emulator)
    assert all(k in emulator.spec for k in REQUIRED_SPEC)
    assert (emulator.spec["family"], emulator.spec["family_version"]) == (
        emulator.family,
        emulator.family_version,
    )
    assert list(emulator.param_names) == list(emulator.spec["param_names"])
    assert list(emulator.band_names) == list(emulator.spec["band_names"])
    d = len(emulator.param_names)
    assert emulator.box_lo.shape == emulator.box_hi.shape == (d,)
    assert np.all(emulator.box_hi > emulator.box_lo)
    rms = emulator.spec["metrics"]["rms_mag"]
    assert set(rms) == set(emulator.band_names)


def test_shapes_and_units(emulator: Emulator) -> None:
    p = _inside(emulator, 37, seed=1)
    b = len(emulator.band_names)
    mags, inside = emulator.predict(p)
    assert mags.shape == (37, b) and inside.shape == (37,) and inside.all()
    np.testing.assert_array_equal(emulator.magnitudes(p), mags)
    assert np.all(np.isfinite(mags))
    flux = emulator.fluxes_njy(p)
    assert flux.dtype == np.float64
    np.testing.assert_allclose(flux, abmag_to_njy(mags.astype(np.float64)), rtol=1e-12)
    assert emulator.band_indices(list(reversed(emulator.band_names))) == list(range(b))[::-1]


def test_tf_magnitudes_agree_with_numpy(emulator: Emulator) -> None:
    import tensorflow as tf

    p = _inside(emulator, 50, seed=2)
    tf_mags = emulator.magnitudes_tf(tf.constant(p, tf.float32)).numpy()
    np.testing.assert_allclose(tf_mags, emulator.magnitudes(p), atol=1e-4)


def test_a_row_does_not_depend_on_its_batch(emulator: Emulator) -> None:
    p = _inside(emulator, 300, seed=3)
    whole = emulator.magnitudes(p)
    alone = np.concatenate([emulator.magnitudes(p[i : i + 1]) for i in range(0, 300, 37)])
    np.testing.assert_allclose(alone, whole[::37], atol=1e-5)


def test_bad_input_is_refused_or_flagged(emulator: Emulator) -> None:
    p = _inside(emulator, 4, seed=4)
    nan = p.copy()
    nan[1, 0] = np.nan
    with pytest.raises(ParameterError):
        emulator.magnitudes(nan)
    with pytest.raises(ParameterError):
        emulator.magnitudes(p[:, :-1])
    out = p.copy()
    out[2, 0] = emulator.box_hi[0] + 0.5 * (emulator.box_hi[0] - emulator.box_lo[0])
    assert emulator.in_training_box(out).tolist() == [True, True, False, True]
    with pytest.raises(ParameterError):
        emulator.magnitudes(out)
    assert np.all(np.isfinite(emulator.magnitudes(out, allow_extrapolation=True)))
    mass = emulator.param_names.index("log_mstar")
    heavy = p.copy()
    heavy[:, mass] = emulator.box_hi[mass] + 2.0  # mass is an exact shift: never out of box
    assert emulator.in_training_box(heavy).all()
    with pytest.raises(UnknownBandError):
        emulator.band_indices(["no-such-band"])


def test_artifact_round_trip_and_hash_checks(
    emulator: Emulator, artifact: tuple[Path, str], tmp_path: Path
) -> None:
    folder, sha = artifact
    spec, _ = read_artifact(folder, sha)  # the shipped files verify against their pin
    assert spec == emulator.spec
    copy = tmp_path / "copy"
    copy_sha = emulator.save(copy)
    again = load_emulator(copy, copy_sha)
    p = _inside(emulator, 40, seed=5)
    np.testing.assert_array_equal(again.magnitudes(p), emulator.magnitudes(p))
    with pytest.raises(ArtifactError, match="sha256"):
        load_emulator(folder, "0" * 64)
    weights = copy / json.loads((copy / "spec.json").read_text())["weights_file"]
    damaged = bytearray(weights.read_bytes())
    damaged[len(damaged) // 2] ^= 0xFF
    weights.write_bytes(bytes(damaged))
    with pytest.raises(ArtifactError, match="weights"):
        load_emulator(copy, copy_sha)


def test_held_out_accuracy_matches_the_recorded_rms(emulator: Emulator) -> None:
    """Fresh forward-model draws in the training box (a seed training never used): per-band
    rms within 30% + 2 mmag of the rms the artifact records (1000 draws estimate an rms to
    ~5-10%, more where errors have tails)."""
    from lor.sps import simulate_training_set

    box = {
        name: (float(lo), float(hi))
        for name, lo, hi in zip(emulator.param_names, emulator.box_lo, emulator.box_hi, strict=True)
    }
    params, mags = simulate_training_set(
        1000, box, seed=20261203, bands=list(emulator.band_names), progress=False
    )
    rms = np.sqrt(np.mean((emulator.magnitudes(params) - mags) ** 2, axis=0))
    recorded = emulator.spec["metrics"]["rms_mag"]
    for band, value in zip(emulator.band_names, rms, strict=True):
        assert value <= 1.3 * recorded[band] + 0.002, (band, value, recorded[band])
