"""Train a rest-frame track emulator (:mod:`lor.emulators.restframe`), resumably.

Steps, each cached under ``OUT/work`` so that ``--resume`` after a kill redoes nothing done:

1. draw the six rest-frame parameters (the box's redshift and ``age_frac`` draws give the
   age; ``log_age_mix`` of the draws take the age uniform in log instead, so young
   populations, where the tracks change fastest, are not rare);
2. compute their rest-frame spectra and project them exactly onto the bands at every grid
   redshift (:class:`lor.sps.restframe.TrackProjector`), chunk by chunk;
3. a PCA of the first ``n_pca`` tracks (in magnitudes), then every track's coefficients;
4. fit the network (:func:`lor.emulators.fitting.fit`, checkpointed every epoch);
5. measure on ``n_test`` held-out draws of the full parameters through the forward model:
   per band, and per band in redshift bins (the error model the likelihood reads).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lor.bands import load_band_set
from lor.emulators.accuracy import measure
from lor.emulators.fitting import EmulatorTrainingConfig, fit, hardware, select_device
from lor.emulators.restframe import FAMILY, FAMILY_VERSION, FEATURES, RestframeEmulator
from lor.errors import ConfigError


@dataclass
class RestframeConfig(EmulatorTrainingConfig):
    name: str = "restframe-lsst-ugrizy"
    family: str = FAMILY
    n_train: int = 500_000
    n_pca: int = 12_000
    n_pc: int = 96
    dz: float = 0.0025
    log_age_mix: float = 0.3
    hidden: list[int] = field(default_factory=lambda: [256, 256, 256])
    patience: int = 6
    max_minutes: float = 45.0
    device: str = "auto"
    chunk: int = 4000

    def __post_init__(self) -> None:
        if self.family != FAMILY:
            raise ConfigError(f"RestframeConfig trains the {FAMILY!r} family, not {self.family!r}")
        super().__post_init__()

    def filters(self) -> tuple[list[str], list[str]]:
        """(band names, speclite filter names)."""
        bs = load_band_set(self.band_set)
        return list(bs.band_names), list(bs.filter_names)


def _model(config: RestframeConfig):  # type: ignore[no-untyped-def]
    from lor.emulators.training import _cosmology
    from lor.sps import SPSModel

    return SPSModel(bands=config.filters()[1], cosmology=_cosmology(config.cosmology))


def _box(config: RestframeConfig) -> dict[str, tuple[float, float]]:
    from lor.sps.parameters import default_training_box

    return default_training_box()


def z_grid(config: RestframeConfig) -> np.ndarray:
    lo, hi = _box(config)["redshift"]
    z0 = max(lo - 2 * config.dz, 0.5 * lo)
    return z0 + config.dz * np.arange(int(np.ceil((hi - z0) / config.dz)) + 3)


def draw_restframe_params(config: RestframeConfig, model, n: int, seed: int) -> np.ndarray:  # type: ignore[no-untyped-def]
    """``(n, 6)`` rest-frame parameters (see the module docstring, step 1)."""
    from lor.sps.restframe import RESTFRAME_PARAMS

    box = _box(config)
    rng = np.random.default_rng(seed)
    out = np.empty((n, len(RESTFRAME_PARAMS)))
    for j, name in enumerate(RESTFRAME_PARAMS):
        if name != "log_age_yr":
            out[:, j] = rng.uniform(*box[name], n)
    z = rng.uniform(*box["redshift"], n)
    log_age = np.log10(rng.uniform(*box["age_frac"], n) * model.cosmology.age(z))
    lo = np.log10(box["age_frac"][0] * model.cosmology.age(box["redshift"][1]))
    hi = np.log10(box["age_frac"][1] * model.cosmology.age(box["redshift"][0]))
    flat = rng.uniform(lo, hi, n)
    out[:, 2] = np.where(rng.uniform(size=n) < config.log_age_mix, flat, log_age)
    return out


def tracks(projector, theta6: np.ndarray) -> np.ndarray:  # type: ignore[no-untyped-def]
    """``-2.5 log10 <L>_b(z)`` for rest-frame parameters: ``(N, n_z * B)`` float32."""
    from lor.sps.restframe import rest_frame_before_igm

    continuum, lines = rest_frame_before_igm(projector.model, theta6)
    lum = projector.mean_luminosity(continuum, lines, np.float32)
    return (
        (-2.5 * np.log10(np.maximum(lum, np.float32(1e-35))))
        .reshape(len(theta6), -1)
        .astype(np.float32)
    )


def _cached(path: Path, make) -> dict[str, np.ndarray]:  # type: ignore[no-untyped-def]
    if path.is_file():
        with np.load(path, allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    arrays = make()
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, **arrays)
    tmp.replace(path)
    return arrays


DATA_FIELDS = (
    "bands",
    "band_set",
    "n_train",
    "n_val",
    "n_test",
    "n_pca",
    "n_pc",
    "dz",
    "log_age_mix",
    "seed",
    "cosmology",
    "chunk",
)
"""Config fields the cached data depend on (the rest may change between sessions)."""


def _check_cache(config: RestframeConfig, work: Path) -> None:
    """Refuse cached data made under other data settings (a resume with another config)."""
    import json

    wanted = {k: getattr(config, k) for k in DATA_FIELDS}
    path = work / "data_config.json"
    if path.is_file():
        found = json.loads(path.read_text())
        if found != json.loads(json.dumps(wanted)):
            changed = sorted(k for k in wanted if found.get(k) != wanted[k])
            raise ConfigError(f"{work} holds data made with other {changed}; use another --out")
    else:
        path.write_text(json.dumps(wanted))


def prepare_data(
    config: RestframeConfig, work: Path, progress: bool = True
) -> tuple[dict[str, np.ndarray], Any, Any]:
    """Training coefficients, PCA and held-out set, cached in ``work`` (resumable)."""
    from tqdm.auto import tqdm

    from lor.sps.restframe import TrackProjector
    from lor.sps.training_set import simulate_training_set

    work.mkdir(parents=True, exist_ok=True)
    _check_cache(config, work)
    model = _model(config)
    projector = TrackProjector(model, z_grid(config))
    n = config.n_train + config.n_val
    theta = _cached(
        work / "theta.npz",
        lambda: {"theta6": draw_restframe_params(config, model, n, config.seed)},
    )["theta6"]

    def make_pca() -> dict[str, np.ndarray]:
        from sklearn.utils.extmath import randomized_svd

        y = np.concatenate([tracks(projector, c) for c in np.array_split(theta[: config.n_pca], 8)])
        mean = y.mean(axis=0)
        _, s, vt = randomized_svd(y - mean, config.n_pc, n_iter=5, random_state=config.seed)
        return {"mean": mean, "components": vt.astype(np.float32), "singular": s}

    pca = _cached(work / "pca.npz", make_pca)
    starts = range(0, n, config.chunk)
    for start in tqdm(starts, desc="tracks", disable=not progress):
        _cached(
            work / f"coef_{start:09d}.npz",
            lambda s=start: {
                "coef": (tracks(projector, theta[s : s + config.chunk]) - pca["mean"])
                @ pca["components"].T
            },
        )
    coef = np.concatenate(
        [_cached(work / f"coef_{s:09d}.npz", dict)["coef"] for s in starts]
    ).astype(np.float32)

    def make_test() -> dict[str, np.ndarray]:
        params, mags = simulate_training_set(
            config.n_test, _box(config), seed=config.seed + 10_000, model=model, progress=False
        )
        return {"params": params, "mags": mags}

    test = _cached(work / "test.npz", make_test)
    return {"theta6": theta, "coef": coef} | pca | test, model, projector


def build_arrays(config: RestframeConfig, data: dict[str, np.ndarray], model, projector) -> dict:  # type: ignore[no-untyped-def]
    """Everything but the network weights: normalizations, basis, cosmology tables."""
    import tensorflow as tf

    n_tr = config.n_train
    feats = RestframeEmulator.features_restframe(tf.constant(data["theta6"], tf.float32)).numpy()
    coef = data["coef"]
    n_z, n_b = projector.z_grid.size, len(model.band_names)
    basis = np.concatenate(
        [data["mean"].reshape(1, n_z, n_b), data["components"].reshape(-1, n_z, n_b)]
    ).transpose(1, 0, 2)
    z_tab = np.arange(1e-3, _box(config)["redshift"][1] + 0.01, 1e-3)
    dl = model.cosmology.luminosity_distance(z_tab)
    offset = projector.mag_offset(z_tab)  # (z, B) = 5 log10 dl + 2.5 log10(1+z) + const_b
    smooth = 5.0 * np.log10(dl) - 5.0 * np.log10(z_tab)
    band_const = (offset - (5.0 * np.log10(dl) + 2.5 * np.log10(1 + z_tab))[:, None]).mean(0)
    return {
        "x_lo": feats[:n_tr].min(axis=0).astype(np.float32),
        "x_hi": feats[:n_tr].max(axis=0).astype(np.float32),
        "coef_mean": coef[:n_tr].mean(axis=0).astype(np.float32),
        "coef_std": coef[:n_tr].std(axis=0).astype(np.float32),
        "basis": basis.astype(np.float32),
        "dm_z": z_tab.astype(np.float32),
        "dm_smooth": smooth.astype(np.float32),
        "band_const": band_const.astype(np.float32),
        "age_z": z_tab.astype(np.float32),
        "age_gyr": (model.cosmology.age(z_tab) / 1e9).astype(np.float32),
    }, feats


def train_restframe(
    config: RestframeConfig,
    out_dir: Path,
    resume: bool = False,
    stop_after_epochs: int | None = None,
    progress: bool = True,
) -> tuple[RestframeEmulator, dict[str, Any]]:
    """Steps 1-5 of the module docstring; returns the emulator (also saved to ``out_dir``
    when training finished) and its metrics."""
    from lor.emulators.speculator import SpeculatorNetwork
    from lor.sps.parameters import PARAM_NAMES, box_arrays
    from lor.sps.training_set import REFERENCE_LOG_MSTAR

    work = out_dir / "work"
    if not resume and (work / "fit_state.npz").is_file():
        raise ConfigError(f"{work} holds a checkpoint: pass --resume, or use another --out")
    t0 = time.monotonic()
    data, model, projector = prepare_data(config, work, progress)
    data_minutes = (time.monotonic() - t0) / 60
    arrays, feats = build_arrays(config, data, model, projector)
    net = SpeculatorNetwork(len(FEATURES), config.n_pc, config.hidden, seed=config.seed)
    x = ((feats - arrays["x_lo"]) * (2.0 / (arrays["x_hi"] - arrays["x_lo"])) - 1.0).astype(
        np.float32
    )
    y = ((data["coef"] - arrays["coef_mean"]) / arrays["coef_std"]).astype(np.float32)
    n_tr = config.n_train
    # The components are orthonormal: the loss below is the mean squared track error (mag^2)
    # up to one constant factor.
    weight = arrays["coef_std"] ** 2 / np.mean(arrays["coef_std"] ** 2)
    settings = config.fit_settings()
    device = select_device(config.device)
    result = fit(
        net,
        (x[:n_tr], y[:n_tr], x[n_tr:], y[n_tr:]),
        weight,
        settings,
        checkpoint_dir=work,
        resume=resume,
        stop_after_epochs=stop_after_epochs,
        device=device,
        progress=progress,
    )
    lo, hi = box_arrays(_box(config))
    band_names, filters = config.filters()
    spec: dict[str, Any] = {
        "family": FAMILY,
        "family_version": FAMILY_VERSION,
        "name": config.name,
        "param_names": list(PARAM_NAMES),
        "band_names": band_names,
        "band_set": load_band_set(config.band_set).as_record(),
        "filters": filters,
        "reference_log_mstar": REFERENCE_LOG_MSTAR,
        "hidden": list(config.hidden),
        "features": list(FEATURES),
        "n_pc": config.n_pc,
        "z_grid": {"z0": float(projector.z_grid[0]), "dz": config.dz, "n": projector.z_grid.size},
        "training_box": {"low": lo.tolist(), "high": hi.tolist()},
        "cosmology": config.cosmology,
        "forward_model": model.describe(),
        "config": asdict(config),
    }
    emulator = RestframeEmulator(spec, arrays | net.arrays())
    if not result["finished"]:
        return emulator, {"finished": False, "epochs": result["epochs"]}
    metrics = measure(emulator, data["params"], data["mags"])
    metrics |= {
        "epochs": result["epochs"],
        "train_minutes": result["train_seconds"] / 60,
        "data_minutes_last_session": data_minutes,
        "hardware": hardware(result["device"]),
        "finished": True,
    }
    emulator.spec["metrics"] = metrics
    emulator.spec["validation_history"] = result["history"]
    return emulator, metrics
