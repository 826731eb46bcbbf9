"""Resumable, checkpointed network fitting shared by the emulator families.

Training on the shared 2-core CPU takes tens of minutes and may be killed; on a GPU machine
it is the same loop on another device. Every epoch ends with an atomic checkpoint
(``fit_state.npz``: network and Adam variables, the best weights so far, the learning-rate
schedule's state, the validation history and the seconds spent). ``resume=True`` continues
from it. Batches are drawn from a permutation seeded by ``(seed, epoch)``, so a run that was
stopped and resumed takes the same steps as one that was not (equal up to float
non-associativity in the kernels).
"""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import numpy as np
import tensorflow as tf
from tqdm.auto import tqdm

from lor.bands import DEFAULT_BAND_SET, load_band_set
from lor.config import load_yaml_config
from lor.errors import ConfigError

STATE_FILE = "fit_state.npz"


@dataclass(frozen=True)
class FitSettings:
    """What the loop needs from an emulator config."""

    batch_size: int
    max_epochs: int
    learning_rate: float
    min_learning_rate: float
    patience: int
    max_minutes: float
    seed: int


@dataclass
class EmulatorTrainingConfig:
    """What every emulator family's training config shares: the band set, the data sizes
    and seed, and the fit loop's settings. A family's config subclasses it with its own
    defaults and fields (network shape, data recipe)."""

    name: str = ""
    family: str = ""
    band_set: str = DEFAULT_BAND_SET
    """A shipped band set's name or a band-set YAML path (:mod:`lor.bands`)."""
    bands: list[str] | None = None
    """Optional: must equal the band set's names (older configs list them)."""
    n_train: int = 200_000
    n_val: int = 10_000
    n_test: int = 20_000
    seed: int = 1
    batch_size: int = 1024
    max_epochs: int = 400
    learning_rate: float = 2e-3
    min_learning_rate: float = 1e-5
    patience: int = 8
    max_minutes: float = 60.0
    cosmology: str = "Planck18"

    def __post_init__(self) -> None:
        names = list(load_band_set(self.band_set).band_names)
        if self.bands is None:
            self.bands = names
        elif list(self.bands) != names:
            raise ConfigError(
                f"bands {self.bands} differ from band set {self.band_set!r}'s {names}; "
                "drop bands or fix band_set"
            )

    @classmethod
    def from_yaml(cls, path: Path) -> Self:
        return load_yaml_config(cls, path)

    def fit_settings(self) -> FitSettings:
        return FitSettings(self.batch_size, self.max_epochs, self.learning_rate,
                           self.min_learning_rate, self.patience, self.max_minutes, self.seed)  # fmt: skip


def select_device(name: str = "auto") -> str:
    """TF device string: ``auto`` takes the first GPU when one is visible, else the CPU."""
    if name.startswith("/"):
        return name  # already a TF device string
    gpus = tf.config.list_logical_devices("GPU")
    if name == "auto":
        return gpus[0].name if gpus else "/CPU:0"
    if name == "cpu":
        return "/CPU:0"
    if name == "gpu":
        if not gpus:
            raise ConfigError("device 'gpu' requested but TensorFlow sees no GPU")
        return gpus[0].name
    raise ConfigError(f"device must be auto, cpu or gpu, not {name!r}")


def hardware(device: str) -> dict[str, Any]:
    """Where a fit ran, for the artifact's metrics."""
    return {
        "device": device,
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
        "tensorflow": tf.__version__,
        "gpus": [d.name for d in tf.config.list_logical_devices("GPU")],
    }


def fit(
    net: tf.Module,
    data: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    weight: np.ndarray,
    settings: FitSettings,
    checkpoint_dir: Path | None = None,
    resume: bool = False,
    stop_after_epochs: int | None = None,
    device: str = "auto",
    progress: bool = True,
) -> dict[str, Any]:
    """Minimize the weighted mean-squared error of ``net(x) - y``; ``net`` ends at its best.

    Parameters
    ----------
    net
        A module with ``trainable_variables``, ``arrays()`` and ``assign(arrays)``.
    data
        ``(x_train, y_train, x_val, y_val)``, float32.
    weight
        ``(n_out,)`` per-output loss weights.
    checkpoint_dir
        Where ``fit_state.npz`` is written after every epoch (none when ``None``).
    resume
        Continue from ``checkpoint_dir``'s state (a fresh fit when there is none).
    stop_after_epochs
        Stop (with a checkpoint) after this many epochs in this call, as a kill would;
        for tests and for training in slices.

    Returns
    -------
    dict
        ``epochs``, ``history`` (validation loss per epoch), ``train_seconds`` (all
        sessions), ``finished`` (False when stopped by ``stop_after_epochs``), ``device``.
    """
    device = select_device(device)
    x_tr, y_tr, x_va, y_va = data
    n_tr = x_tr.shape[0]
    n_batches = max(n_tr // settings.batch_size, 1)
    with tf.device(device):
        x_tr_t, y_tr_t = tf.constant(x_tr), tf.constant(y_tr)
        x_va_t, y_va_t = tf.constant(x_va), tf.constant(y_va)
        w = tf.constant(np.asarray(weight, np.float32))
        opt = tf.keras.optimizers.Adam(learning_rate=settings.learning_rate)
        opt.build(net.trainable_variables)

        @tf.function(jit_compile=True)
        def step(idx: tf.Tensor) -> tf.Tensor:
            x, y = tf.gather(x_tr_t, idx), tf.gather(y_tr_t, idx)
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean(tf.square(net(x) - y) * w)
            grads = tape.gradient(loss, net.trainable_variables)
            opt.apply_gradients(zip(grads, net.trainable_variables, strict=True))
            return loss

        @tf.function(jit_compile=True)
        def val_loss(x: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
            return tf.reduce_mean(tf.square(net(x) - y) * w)

        state = _initial_state(net)
        path = checkpoint_dir / STATE_FILE if checkpoint_dir else None
        if resume and path is not None and path.is_file():
            state = _load_state(path, net, opt)
        lr = opt.learning_rate
        session_start = time.monotonic()
        epochs_here = 0
        bar = tqdm(
            total=settings.max_epochs, initial=state["epoch"], desc="fit", disable=not progress
        )
        finished = True
        while state["epoch"] < settings.max_epochs and not state["done"]:
            if stop_after_epochs is not None and epochs_here >= stop_after_epochs:
                finished = False
                break
            rng = np.random.default_rng([settings.seed, state["epoch"]])
            order = rng.permutation(n_tr)[: n_batches * settings.batch_size]
            batches = tf.constant(order.reshape(n_batches, settings.batch_size), tf.int32)
            for b in range(n_batches):
                step(batches[b])
            loss = float(val_loss(x_va_t, y_va_t))
            state["history"].append(loss)
            if loss < state["best"] * (1 - 1e-3):
                state["best"], state["best_arrays"], state["since_best"] = loss, net.arrays(), 0
            else:
                state["since_best"] += 1
            if state["since_best"] >= settings.patience:
                net.assign(state["best_arrays"])
                lr.assign(lr * 0.5)
                state["since_best"] = 0
                if float(lr) < settings.min_learning_rate:
                    state["done"] = True
            state["epoch"] += 1
            epochs_here += 1
            seconds = state["seconds"] + time.monotonic() - session_start
            if seconds > 60 * settings.max_minutes:
                state["done"] = True
            if path is not None:
                _save_state(path, net, opt, state, seconds)
            bar.update(1)
            bar.set_postfix(val=f"{state['best']:.3e}", lr=f"{float(lr):.1e}")
        bar.close()
        state["seconds"] += time.monotonic() - session_start
        if finished:
            net.assign(state["best_arrays"])
    return {
        "epochs": state["epoch"],
        "history": [round(h, 8) for h in state["history"]],
        "best_val_loss": state["best"],
        "train_seconds": state["seconds"],
        "finished": finished,
        "device": device,
    }


def _initial_state(net: tf.Module) -> dict[str, Any]:
    return {
        "epoch": 0,
        "best": np.inf,
        "best_arrays": net.arrays(),
        "since_best": 0,
        "history": [],
        "seconds": 0.0,
        "done": False,
    }


def _save_state(
    path: Path, net: tf.Module, opt: tf.keras.optimizers.Optimizer, state: dict, seconds: float
) -> None:
    """Write the state to a temporary file, then rename: a kill leaves the old or the new."""
    meta = {k: state[k] for k in ("epoch", "best", "since_best", "history", "done")}
    meta["seconds"] = seconds
    arrays = {f"net/{k}": v for k, v in net.arrays().items()}
    arrays |= {f"best/{k}": v for k, v in state["best_arrays"].items()}
    arrays |= {f"opt/{i}": v.numpy() for i, v in enumerate(opt.variables)}
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def _load_state(path: Path, net: tf.Module, opt: tf.keras.optimizers.Optimizer) -> dict:
    with np.load(path, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    meta = json.loads(arrays["meta"].tobytes().decode())
    net.assign({k[4:]: v for k, v in arrays.items() if k.startswith("net/")})
    if len(opt.variables) != sum(k.startswith("opt/") for k in arrays):
        raise ConfigError(f"{path} holds another optimizer's state; remove it or drop --resume")
    for i, v in enumerate(opt.variables):
        v.assign(arrays[f"opt/{i}"])
    return {
        "epoch": int(meta["epoch"]),
        "best": float(meta["best"]),
        "best_arrays": {k[5:]: v for k, v in arrays.items() if k.startswith("best/")},
        "since_best": int(meta["since_best"]),
        "history": list(meta["history"]),
        "seconds": float(meta["seconds"]),
        "done": bool(meta["done"]),
    }
