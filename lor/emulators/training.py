"""Train a speculator emulator on the SPS forward model; measure it on held-out samples.

``lor train emulator --config FILE`` runs :func:`train_emulator_from_config`; the config
(YAML) and the seed fix everything, so the shipped artifact can be reproduced.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from lor.bands import load_band_set
from lor.emulators.accuracy import measure
from lor.emulators.fitting import STATE_FILE, EmulatorTrainingConfig, fit, hardware
from lor.emulators.speculator import FAMILY, FAMILY_VERSION, FEATURES, SpeculatorEmulator
from lor.errors import ConfigError


@dataclass
class EmulatorConfig(EmulatorTrainingConfig):
    name: str = "speculator-lsst-ugrizy"
    family: str = FAMILY
    hidden: list[int] = field(default_factory=lambda: [128, 128, 128, 128])
    box_overrides: dict[str, list[float]] = field(default_factory=dict)
    data_cache: str | None = None


def simulate(config: EmulatorConfig) -> dict[str, np.ndarray]:
    """Training, validation and test sets from the forward model (cached if configured)."""
    cache = Path(config.data_cache) if config.data_cache else None
    if cache and cache.is_file():
        with np.load(cache, allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    from lor.sps import SPSModel, default_training_box, simulate_training_set
    from lor.sps.parameters import box_arrays

    box = default_training_box() | {k: tuple(v) for k, v in config.box_overrides.items()}
    band_set = load_band_set(config.band_set)
    model = SPSModel(bands=list(band_set.filter_names), cosmology=_cosmology(config.cosmology))
    n = config.n_train + config.n_val + config.n_test
    params, mags = simulate_training_set(n, box, seed=config.seed, model=model)
    lo, hi = box_arrays(box)
    data = {"params": params, "mags": mags, "box_lo": lo, "box_hi": hi}
    if cache:
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, **data)
    return data


def _cosmology(name: str):  # type: ignore[no-untyped-def]
    import astropy.cosmology

    try:
        return getattr(astropy.cosmology, name)
    except AttributeError as exc:
        raise ConfigError(f"unknown astropy cosmology {name!r}") from exc


def cosmology_tables(cosmology: str, z_max: float, dz: float = 1e-3) -> dict[str, np.ndarray]:
    """Distance modulus and age of the universe on a fine z grid (stored in the artifact)."""
    z = np.arange(dz, z_max + 10 * dz, dz)
    cosmo = _cosmology(cosmology)
    dl_pc = cosmo.luminosity_distance(z).to("pc").value
    return {
        "dm_z": z.astype(np.float32),
        "dm": (5.0 * np.log10(dl_pc / 10.0)).astype(np.float32),
        "age_z": z.astype(np.float32),
        "age_gyr": cosmo.age(z).to("Gyr").value.astype(np.float32),
    }


def train_emulator(
    config: EmulatorConfig,
    data: dict[str, np.ndarray],
    progress: bool = True,
    checkpoint_dir: Path | None = None,
    resume: bool = False,
    stop_after_epochs: int | None = None,
    device: str = "auto",
) -> tuple[SpeculatorEmulator, dict[str, Any]]:
    """Fit the network (checkpointed in ``checkpoint_dir``, :func:`lor.emulators.fitting.fit`);
    returns the emulator and held-out metrics (``{"finished": False}`` when stopped)."""
    from lor.sps.parameters import MASS_INDEX, PARAM_NAMES
    from lor.sps.training_set import REFERENCE_LOG_MSTAR

    tf.random.set_seed(config.seed)
    band_set = load_band_set(config.band_set)
    params, mags = data["params"], data["mags"]
    n_tr, n_va = config.n_train, config.n_val
    tables = cosmology_tables(config.cosmology, float(data["box_hi"][0]))
    spec = {
        "family": FAMILY,
        "family_version": FAMILY_VERSION,
        "name": config.name,
        "param_names": list(PARAM_NAMES),
        "band_names": list(band_set.band_names),
        "band_set": band_set.as_record(),
        "reference_log_mstar": REFERENCE_LOG_MSTAR,
        "hidden": list(config.hidden),
        "features": list(FEATURES),
        "training_box": {"low": data["box_lo"].tolist(), "high": data["box_hi"].tolist()},
        "cosmology": config.cosmology,
        "config": asdict(config),
    }
    # Target: unit-mass magnitude minus distance modulus; standardized per band.
    z = params[:, PARAM_NAMES.index("redshift")]
    target = (
        mags
        - np.interp(z, tables["dm_z"], tables["dm"])[:, None]
        + 2.5 * (params[:, MASS_INDEX, None] - REFERENCE_LOG_MSTAR)
    )
    y_mean, y_std = target[:n_tr].mean(axis=0), target[:n_tr].std(axis=0)
    arrays = tables | {"y_mean": y_mean.astype(np.float32), "y_std": y_std.astype(np.float32)}
    arrays |= {
        "x_lo": np.zeros(len(FEATURES), np.float32),
        "x_hi": np.ones(len(FEATURES), np.float32),
    }
    spec["training_stats"] = {
        "n_train": n_tr,
        "param_mean": params[:n_tr].mean(axis=0).tolist(),
        "param_std": params[:n_tr].std(axis=0).tolist(),
        "mag_mean": mags[:n_tr].mean(axis=0).tolist(),
        "mag_std": mags[:n_tr].std(axis=0).tolist(),
    }
    # A fresh network with the right shapes, then train its variables in place.
    from lor.emulators.speculator import SpeculatorNetwork

    net = SpeculatorNetwork(len(FEATURES), len(band_set.bands), config.hidden, seed=config.seed)
    emulator = SpeculatorEmulator(spec, arrays | net.arrays())
    feats = np.concatenate(
        [emulator.features(tf.constant(c, tf.float32)).numpy() for c in np.array_split(params, 20)]
    )
    arrays["x_lo"], arrays["x_hi"] = feats[:n_tr].min(axis=0), feats[:n_tr].max(axis=0)
    emulator = SpeculatorEmulator(spec, arrays | net.arrays())
    net = emulator.network
    x_all = ((feats - arrays["x_lo"]) * (2.0 / (arrays["x_hi"] - arrays["x_lo"])) - 1.0).astype(
        np.float32
    )
    y_all = ((target - y_mean) / y_std).astype(np.float32)
    weight = y_std**2 / np.mean(y_std**2)  # loss in mag^2
    settings = config.fit_settings()
    result = fit(
        net,
        (x_all[:n_tr], y_all[:n_tr], x_all[n_tr : n_tr + n_va], y_all[n_tr : n_tr + n_va]),
        weight,
        settings,
        checkpoint_dir=checkpoint_dir,
        resume=resume,
        stop_after_epochs=stop_after_epochs,
        device=device,
        progress=progress,
    )
    history = result["history"]
    if not result["finished"]:
        return emulator, {"finished": False, "epochs": result["epochs"]}
    test = slice(n_tr + n_va, None)
    metrics = measure(emulator, params[test], mags[test])
    metrics |= {
        "epochs": result["epochs"],
        "train_minutes": result["train_seconds"] / 60,
        "hardware": hardware(result["device"]),
        "finished": True,
    }
    emulator.spec["metrics"] = metrics
    emulator.spec["validation_history"] = [round(h, 7) for h in history]
    return emulator, metrics


def train_emulator_from_config(
    config_path: Path,
    out_dir: Path,
    progress: bool = True,
    resume: bool = False,
    device: str | None = None,
    stop_after_epochs: int | None = None,
) -> tuple[str | None, dict[str, Any]]:
    """Simulate, train, save the artifact to ``out_dir``; return (sha256, metrics).

    The config's ``family`` picks the trainer (``speculator`` when absent; ``restframe``:
    :mod:`lor.emulators.restframe_training`). Checkpoints and cached data go to
    ``out_dir/work``; ``resume`` continues from them. ``device`` (auto, cpu, gpu) overrides
    the config's. A run stopped by ``stop_after_epochs`` saves no artifact (sha256 None).
    """
    import yaml

    family = (yaml.safe_load(Path(config_path).read_text()) or {}).get("family", FAMILY)
    if family == "restframe":
        from lor.emulators.restframe_training import RestframeConfig, train_restframe

        rconfig = RestframeConfig.from_yaml(config_path)
        if device is not None:
            rconfig.device = device
        emulator, metrics = train_restframe(rconfig, out_dir, resume, stop_after_epochs, progress)
    elif family == FAMILY:
        config = EmulatorConfig.from_yaml(config_path)
        work = out_dir / "work"
        if not resume and (work / STATE_FILE).is_file():
            raise ConfigError(f"{work} holds a checkpoint: pass --resume, or use another --out")
        if config.data_cache is None:
            config.data_cache = str(work / "data.npz")
        data = simulate(config)
        emulator, metrics = train_emulator(
            config, data, progress, work, resume, stop_after_epochs, device or "auto"
        )
    else:
        raise ConfigError(f"{config_path}: unknown emulator family {family!r}")
    if not metrics.get("finished"):
        return None, metrics
    return emulator.save(out_dir), metrics
