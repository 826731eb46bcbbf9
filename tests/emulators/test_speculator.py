"""Emulator contract tests: artifacts, hashes, bad input, and the shipped emulator's accuracy."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from lor.artifacts import artifact_sha256
from lor.emulators.registry import (
    SHIPPED_DIR,
    SHIPPED_EMULATOR,
    load_emulator,
    load_shipped_emulator,
)
from lor.errors import ArtifactError, ParameterError, UnknownBandError
from lor.sps.parameters import MASS_INDEX, box_arrays, default_training_box


@pytest.fixture(scope="module")
def emulator():
    return load_shipped_emulator()


@pytest.fixture(scope="module")
def held_out() -> tuple[np.ndarray, np.ndarray]:
    """Fresh forward-model samples the emulator never saw (seed differs from training)."""
    from lor.sps import simulate_training_set

    return simulate_training_set(3000, seed=20261125, progress=False)


def _random_params(n: int, seed: int = 0) -> np.ndarray:
    lo, hi = box_arrays(default_training_box())
    return np.random.default_rng(seed).uniform(lo, hi, (n, len(lo)))


def test_shipped_emulator_reproduces_its_recorded_accuracy(emulator, held_out) -> None:
    params, mags = held_out
    err = emulator.magnitudes(params) - mags
    rms = np.sqrt(np.mean(err**2, axis=0))
    recorded = emulator.spec["metrics"]["rms_mag"]
    print("held-out rms per band:", dict(zip(emulator.band_names, rms.round(4), strict=True)))
    for band, value in zip(emulator.band_names, rms, strict=True):
        # 3000 samples estimate the rms to ~5%; allow 30% plus 2 mmag.
        assert value <= 1.3 * recorded[band] + 0.002, band


def test_mass_is_an_exact_magnitude_shift(emulator) -> None:
    p = _random_params(100, seed=1)
    shifted = p.copy()
    shifted[:, MASS_INDEX] += 1.0
    np.testing.assert_allclose(
        emulator.magnitudes(shifted), emulator.magnitudes(p) - 2.5, atol=2e-4
    )


def test_bad_input_is_refused_or_flagged(emulator) -> None:
    p = _random_params(5, seed=2)
    p[2, 0] = np.nan
    with pytest.raises(ParameterError, match="NaN"):
        emulator.magnitudes(p)
    with pytest.raises(ParameterError, match="shape"):
        emulator.magnitudes(np.zeros((3, 4)))
    q = _random_params(4, seed=3)
    q[1, 0] = 7.5  # redshift beyond the training box
    q[2, MASS_INDEX] = 14.0  # mass is an exact shift: never out of the box
    assert emulator.in_training_box(q).tolist() == [True, False, True, True]
    with pytest.raises(ParameterError, match="outside the emulator's training box"):
        emulator.magnitudes(q)
    mags, inside = emulator.predict(q)
    assert inside.tolist() == [True, False, True, True] and np.isfinite(mags).all()
    with pytest.raises(UnknownBandError, match="available"):
        emulator.band_indices(["g", "Ks"])


def test_artifact_round_trip_and_tampering(emulator, tmp_path: Path) -> None:
    folder = tmp_path / "copy"
    sha = emulator.save(folder)
    again = load_emulator(folder, sha)
    p = _random_params(50, seed=4)
    np.testing.assert_array_equal(again.magnitudes(p), emulator.magnitudes(p))

    spec = json.loads((folder / "spec.json").read_text())
    spec["reference_log_mstar"] = 9.0
    (folder / "spec.json").write_text(json.dumps(spec))
    with pytest.raises(ArtifactError, match="sha256"):
        load_emulator(folder, sha)

    folder2 = tmp_path / "copy2"
    sha2 = emulator.save(folder2)
    weights = bytearray((folder2 / "weights.npz").read_bytes())
    weights[len(weights) // 2] ^= 0xFF
    (folder2 / "weights.npz").write_bytes(bytes(weights))
    with pytest.raises(ArtifactError, match="weights"):
        load_emulator(folder2, sha2)
    with pytest.raises(ArtifactError, match="no model artifact"):
        load_emulator(tmp_path / "missing", sha2)


def test_shipped_artifact_hash_is_pinned() -> None:
    name, sha = SHIPPED_EMULATOR
    assert artifact_sha256(SHIPPED_DIR / name) == sha
    size = sum(f.stat().st_size for f in (SHIPPED_DIR / name).iterdir())
    assert size < 5_000_000


def test_registered_in_database(engine, tmp_path: Path) -> None:
    from sqlalchemy import text

    from lor.emulators.registry import register_emulator

    name, sha = SHIPPED_EMULATOR
    folder = tmp_path / name
    shutil.copytree(SHIPPED_DIR / name, folder)
    first = register_emulator(engine, folder, sha)
    assert register_emulator(engine, folder, sha) == first
    with engine.connect() as conn:
        row = conn.execute(
            text("SELECT kind, artifact_sha256, param_names FROM lor.model_versions")
        ).one()
    assert (
        row.kind == "emulator" and row.artifact_sha256 == sha and row.param_names[0] == "redshift"
    )
