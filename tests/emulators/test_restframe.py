"""Rest-frame track emulator: exact projection, resumable fitting, stored error model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lor.emulators.fitting import STATE_FILE, FitSettings, fit
from lor.emulators.speculator import SpeculatorNetwork
from lor.errors import ConfigError
from lor.inference.model_error import ModelError


@pytest.fixture(scope="module")
def model():
    from lor.sps import SPSModel

    return SPSModel(bands=["u", "g", "r", "i", "z", "y"])


def test_tracks_reproduce_the_forward_model_at_grid_redshifts(model) -> None:
    """Rest-frame spectrum before the IGM, projected with the tabulated weights, equals the
    forward model's magnitudes (the IGM, redshifting and band integration are exact)."""
    from lor.sps.parameters import default_training_box
    from lor.sps.restframe import TrackProjector, rest_frame_before_igm, restframe_params
    from lor.sps.training_set import sample_box

    z_grid = np.array([0.02, 0.37, 1.0, 2.51, 3.99])
    projector = TrackProjector(model, z_grid)
    rng = np.random.default_rng(3)
    params = sample_box(60, default_training_box(), rng)
    which = rng.integers(0, z_grid.size, 60)
    params[:, 0] = z_grid[which]
    truth = model.magnitudes_unit_mass(params)
    continuum, lines = rest_frame_before_igm(model, restframe_params(params, model))
    lum = projector.mean_luminosity(continuum, lines)[np.arange(60), which]
    mags = -2.5 * np.log10(lum) + projector.distance_term[which]
    np.testing.assert_allclose(mags, truth, atol=1e-8)
    lum32 = projector.mean_luminosity(continuum, lines, np.float32)[np.arange(60), which]
    np.testing.assert_allclose(
        -2.5 * np.log10(lum32) + projector.distance_term[which], truth, atol=1e-4
    )


def _toy(n: int = 1500) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (n, 3)).astype(np.float32)
    y = np.stack([np.sin(3 * x[:, 0]) * x[:, 1], x[:, 2] ** 2], axis=1).astype(np.float32)
    return x[:1200], y[:1200], x[1200:], y[1200:]


SETTINGS = FitSettings(
    batch_size=100,
    max_epochs=4,
    learning_rate=3e-3,
    min_learning_rate=1e-6,
    patience=50,
    max_minutes=10.0,
    seed=5,
)


def test_a_stopped_and_resumed_fit_equals_an_uninterrupted_one(tmp_path: Path) -> None:
    data, weight = _toy(), np.ones(2)
    whole = SpeculatorNetwork(3, 2, [16, 16], seed=1)
    full = fit(whole, data, weight, SETTINGS, tmp_path / "a", progress=False)
    assert full["finished"] and full["epochs"] == 4

    parts = SpeculatorNetwork(3, 2, [16, 16], seed=1)
    first = fit(parts, data, weight, SETTINGS, tmp_path / "b", stop_after_epochs=2, progress=False)
    assert not first["finished"] and first["epochs"] == 2
    assert (tmp_path / "b" / STATE_FILE).is_file()
    fresh = SpeculatorNetwork(3, 2, [16, 16], seed=99)  # a new process: other initial weights
    second = fit(fresh, data, weight, SETTINGS, tmp_path / "b", resume=True, progress=False)
    assert second["finished"] and second["epochs"] == 4
    assert second["history"][:2] == first["history"]
    np.testing.assert_allclose(second["history"], full["history"], rtol=1e-4)
    for key, value in whole.arrays().items():
        np.testing.assert_allclose(fresh.arrays()[key], value, rtol=1e-4, atol=1e-6)


def test_resume_without_a_checkpoint_starts_fresh_and_the_loss_falls(tmp_path: Path) -> None:
    net = SpeculatorNetwork(3, 2, [16, 16], seed=1)
    result = fit(net, _toy(), np.ones(2), SETTINGS, tmp_path, resume=True, progress=False)
    assert result["epochs"] == 4
    assert (tmp_path / STATE_FILE).is_file()
    assert result["history"][-1] < 0.9 * result["history"][0]


def test_a_tiny_restframe_training_stops_resumes_and_stores_its_error_model(
    tmp_path: Path,
) -> None:
    from lor.emulators.registry import load_emulator
    from lor.emulators.restframe_training import RestframeConfig, train_restframe

    config = RestframeConfig(
        name="restframe-tiny",
        n_train=3000,
        n_val=500,
        n_test=600,
        n_pca=1500,
        n_pc=12,
        dz=0.02,
        hidden=[24, 24],
        max_epochs=3,
        chunk=1000,
        device="cpu",
    )
    _, partial = train_restframe(config, tmp_path, stop_after_epochs=1, progress=False)
    assert partial == {"finished": False, "epochs": 1}
    with pytest.raises(ConfigError, match="resume"):
        train_restframe(config, tmp_path, progress=False)
    emulator, metrics = train_restframe(config, tmp_path, resume=True, progress=False)
    assert metrics["finished"] and metrics["epochs"] == 3
    sha = emulator.save(tmp_path / "artifact")
    again = load_emulator(tmp_path / "artifact", sha)
    assert type(again).__name__ == "RestframeEmulator"
    model = again.spec["metrics"]["error_model"]
    assert model["kind"] == "redshift_bins" and sum(model["n"]) == 600
    error = ModelError.for_emulator(again)
    assert error.emulator_mag_by_z is not None
    assert error.emulator_mag_by_z.shape == (len(model["z_edges"]) - 1, 6)


class _Stub:
    band_names = ["u", "g"]

    def __init__(self, metrics: dict) -> None:
        self.spec = {"metrics": metrics}


def test_model_error_reads_the_per_redshift_table_and_falls_back_without_it() -> None:
    metrics = {
        "rms_mag": {"u": 0.02, "g": 0.01},
        "error_model": {
            "kind": "redshift_bins",
            "z_edges": [0.0, 1.0, 4.0],
            "rms_mag": {"u": [0.01, 0.05], "g": [0.004, 0.02]},
        },
    }
    error = ModelError.for_emulator(_Stub(metrics), floor_mag=0.0)
    at = error.emulator_mag_at(np.array([0.5, 2.0, 9.0]))
    np.testing.assert_allclose(at, [[0.01, 0.004], [0.05, 0.02], [0.05, 0.02]])
    flux, err = np.ones((3, 2)), np.zeros((3, 2))
    eff = error.effective_error(flux, err, redshift=np.array([0.5, 2.0, 9.0]))
    np.testing.assert_allclose(eff, at * np.log(10) / 2.5)
    np.testing.assert_allclose(
        error.effective_error(flux, err)[0], np.array([0.02, 0.01]) * np.log(10) / 2.5
    )
    assert error.with_floor(np.array([0.1, 0.1])).emulator_mag_by_z is not None
    assert "emulator_mag_by_z" in error.as_record()

    plain = ModelError.for_emulator(_Stub({"rms_mag": {"u": 0.02, "g": 0.01}}), floor_mag=0.0)
    assert plain.z_edges is None and "z_edges" not in plain.as_record()
    np.testing.assert_allclose(plain.emulator_mag_at(np.array([0.1, 3.0])), [[0.02, 0.01]] * 2)
    with pytest.raises(ConfigError):
        ModelError(("u",), np.zeros(1), np.zeros(1), np.array([0.0, 1.0]), np.zeros((2, 1)))
