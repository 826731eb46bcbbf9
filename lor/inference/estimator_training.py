"""Train the amortized estimator on simulations; set its OOD thresholds on held-out ones.

``lor train estimator --config FILE`` runs :func:`train_estimator_from_config`; the config,
the pinned emulator and the seed fix everything.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf
from tqdm.auto import tqdm

from lor.bands import band_set_of
from lor.config import load_yaml_config
from lor.errors import ConfigError
from lor.inference.estimator import (
    FAMILY,
    FAMILY_VERSION,
    AmortizedEstimator,
    EstimatorNetwork,
    input_features,
)
from lor.inference.input_density import InputDensity
from lor.inference.prior import PopulationPrior
from lor.inference.simulate import SimulatedCatalog, simulate_catalog
from lor.posteriors.em import fit_mixture
from lor.posteriors.gmm_flow import GaussianMixtureFlow


@dataclass
class EstimatorConfig:
    name: str = "npe-lsst-ugrizy"
    n_train: int = 1_000_000
    n_val: int = 20_000
    years: list[float] = field(default_factory=lambda: [1.0, 10.0])
    error_scatter_dex: float = 0.05
    depth_offset_mag: list[float] = field(default_factory=lambda: [0.0, 0.0])
    floor_mag: list[float] = field(default_factory=lambda: [0.0, 0.0])
    prior: dict[str, Any] = field(default_factory=dict)
    missing_band_prob: float = 0.05
    missing_groups: list[list[str]] = field(default_factory=list)
    """Groups of bands a catalog may lack together (e.g. a whole survey's: an LSST-only
    object in the lsst-euclid band set); with ``missing_group_prob`` an object loses one."""
    missing_group_prob: float = 0.0
    emulator: dict[str, str] = field(default_factory=dict)
    """The emulator the estimator is trained on: ``{name, sha256}`` of an artifact under
    lor/data/models (or ``{path, sha256}``); empty: the shipped default emulator."""
    hidden: list[int] = field(default_factory=lambda: [256, 256, 256])
    n_components: int = 4
    batch_size: int = 1024
    max_epochs: int = 60
    learning_rate: float = 1e-3
    min_learning_rate: float = 1e-5
    patience: int = 3
    max_minutes: float = 40.0
    ood_components: int = 16
    ood_false_flag_rate: float = 0.005
    seed: int = 7

    @classmethod
    def from_yaml(cls, path: Path) -> EstimatorConfig:
        return load_yaml_config(cls, path)


def training_prior(config: EstimatorConfig):  # type: ignore[no-untyped-def]
    """The prior the estimator is trained under (its *interim* prior): the config's prior
    record, or the v1 population prior's interim hyperparameters when it names none."""
    if not config.prior:
        return PopulationPrior()
    from lor.inference.prior_registry import PRIOR_FAMILIES, prior_from_record

    record = dict(config.prior)
    if "hyperparameters" not in record:  # the family's published defaults
        key = (str(record.get("family")), str(record.get("family_version")))
        if key not in PRIOR_FAMILIES:
            return prior_from_record(record)  # raises the registry's error
        record["hyperparameters"] = dict(PRIOR_FAMILIES[key].defaults)
    return prior_from_record(record)


def _with_missing_bands(cat: SimulatedCatalog, prob: float, rng: np.random.Generator) -> np.ndarray:
    """Missing-band mask (N, B): a fraction ``prob`` of objects lose one or two random bands."""
    n, b = cat.flux.shape
    missing = np.zeros((n, b), bool)
    hit = rng.uniform(size=n) < prob
    for _ in range(2):
        missing[np.flatnonzero(hit), rng.integers(0, b, hit.sum())] = True
        hit &= rng.uniform(size=n) < 0.5
    return missing


def simulate_pairs(
    config: EstimatorConfig, emulator, n: int, seed: int
) -> tuple[np.ndarray, SimulatedCatalog, np.ndarray]:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(seed)
    floor = tuple(config.floor_mag) if config.floor_mag[1] > 0 else 0.0
    cat = simulate_catalog(
        n, emulator, training_prior(config), seed=seed, years=tuple(config.years),
        error_scatter=config.error_scatter_dex,
        depth_offset_mag=(config.depth_offset_mag[0], config.depth_offset_mag[1]),
        floor_mag=floor,
    )  # fmt: skip
    missing = _with_missing_bands(cat, config.missing_band_prob, rng)
    if config.missing_groups and config.missing_group_prob > 0:
        names = list(emulator.band_names)
        groups = [[names.index(b) for b in g] for g in config.missing_groups]
        hit = np.flatnonzero(rng.uniform(size=len(missing)) < config.missing_group_prob)
        for g, rows in zip(groups, np.array_split(rng.permutation(hit), len(groups)), strict=True):
            missing[np.ix_(rows, g)] = True
        missing[missing.all(axis=1), names.index(training_prior(config).selection["band"])] = False
    return input_features(cat.flux, cat.flux_err, missing), cat, missing


def fit_input_density(x: np.ndarray, k: int, seed: int) -> dict[str, np.ndarray]:
    """A K-component Gaussian mixture over standardized input features (OOD reference)."""
    rng = np.random.default_rng(seed)
    sub = x[rng.choice(len(x), size=min(len(x), 40_000), replace=False)]
    log_w, means, chol = fit_mixture(
        sub[None].astype(np.float64), np.full((1, len(sub)), 1.0 / len(sub)), k, n_iter=60, reg=1e-3
    )
    return {"log_w": log_w[0], "means": means[0], "chol": chol[0]}


def tfd_mixture(density: dict[str, np.ndarray]):  # type: ignore[no-untyped-def]
    import tensorflow_probability as tfp

    tfd = tfp.distributions
    return tfd.MixtureSameFamily(
        tfd.Categorical(logits=tf.constant(density["log_w"], tf.float64)),
        tfd.MultivariateNormalTriL(
            loc=tf.constant(density["means"], tf.float64),
            scale_tril=tf.constant(density["chol"], tf.float64),
        ),
    )


def fit_chol_scale(
    estimator: AmortizedEstimator,
    config: EstimatorConfig,
    emulator,
    n: int = 20_000,
    level: float = 0.68,
) -> np.ndarray:  # type: ignore[no-untyped-def]
    """Per-parameter width factors that give each marginal its nominal 68% coverage.

    Fitted by bisection on fresh simulations drawn like the training set (seed + 3): a
    network trained by maximum likelihood on finite data comes out slightly over- or
    under-dispersed, and a scale on each Cholesky row is the smallest fix that keeps the
    posterior's correlations.
    """
    from lor.inference.validation import coverage

    x, cat, _ = simulate_pairs(config, emulator, n, config.seed + 3)
    estimator.set_chol_scale(np.ones(estimator.representation.n_dim))
    params = estimator.posterior_params(x)
    rep = estimator.representation
    scale = np.ones(rep.n_dim)
    for dim in range(rep.n_dim):
        lo, hi = 0.3, 3.0
        for _ in range(25):
            mid = np.sqrt(lo * hi)
            trial = np.ones(rep.n_dim)
            trial[dim] = mid
            scaled = params * rep.width_multiplier(trial)
            pit = np.asarray(rep.marginal(scaled, dim).cdf(cat.theta[:, dim]), np.float64)
            if coverage(pit, level) < level:
                lo = mid
            else:
                hi = mid
        scale[dim] = np.sqrt(lo * hi)
    return scale


def train_estimator(
    config: EstimatorConfig, emulator, emulator_sha256: str, progress: bool = True
) -> tuple[AmortizedEstimator, dict[str, Any]]:  # type: ignore[no-untyped-def]
    tf.random.set_seed(config.seed)
    rep = GaussianMixtureFlow(emulator.box_lo, emulator.box_hi, n_components=config.n_components)
    x, cat, _ = simulate_pairs(config, emulator, config.n_train + config.n_val, config.seed)
    u = rep.to_u(cat.theta).astype(np.float32)
    n_tr = config.n_train
    x_mean, x_std = x[:n_tr].mean(axis=0), x[:n_tr].std(axis=0) + 1e-6
    prior = training_prior(config)
    spec: dict[str, Any] = {
        "family": FAMILY,
        "family_version": FAMILY_VERSION,
        "name": config.name,
        "band_names": list(emulator.band_names),
        "band_set": band_set_of(emulator.spec).as_record(),
        "param_names": list(emulator.param_names),
        "hidden": list(config.hidden),
        "representation": {"name": rep.name, "version": rep.version, "config": rep.config()},
        "emulator": {"name": emulator.spec["name"], "sha256": emulator_sha256},
        "prior": prior.as_record(),
        "training": {
            "years": config.years,
            "error_scatter_dex": config.error_scatter_dex,
            "depth_offset_mag": config.depth_offset_mag,
            "floor_mag": config.floor_mag,
        },
        "config": asdict(config),
    }
    arrays = {"x_mean": x_mean, "x_std": x_std}
    net = EstimatorNetwork(x.shape[1], rep.n_raw, config.hidden, seed=config.seed)
    estimator = AmortizedEstimator(spec, arrays | net.arrays())
    net = estimator.network
    xs = ((x - x_mean) / x_std).astype(np.float32)
    x_tr, u_tr = tf.constant(xs[:n_tr]), tf.constant(u[:n_tr])
    x_va, u_va = tf.constant(xs[n_tr:]), tf.constant(u[n_tr:])
    opt = tf.keras.optimizers.Adam(learning_rate=config.learning_rate)
    opt.build(net.trainable_variables)

    def nll(xb: tf.Tensor, ub: tf.Tensor) -> tf.Tensor:
        params = rep.from_network_outputs(net(xb))
        return -tf.reduce_mean(rep.u_log_prob(params, ub))

    @tf.function(jit_compile=True)
    def step(xb: tf.Tensor, ub: tf.Tensor) -> tf.Tensor:
        with tf.GradientTape() as tape:
            loss = nll(xb, ub)
        grads = tape.gradient(loss, net.trainable_variables)
        grads, _ = tf.clip_by_global_norm(grads, 10.0)
        opt.apply_gradients(zip(grads, net.trainable_variables, strict=True))
        return loss

    val_loss = tf.function(nll, jit_compile=True)
    best, best_arrays, since, history = np.inf, net.arrays(), 0, []
    start = time.monotonic()
    bar = tqdm(range(config.max_epochs), desc="train estimator", disable=not progress)
    for _epoch in bar:
        order = tf.random.shuffle(tf.range(n_tr))
        for b in range(n_tr // config.batch_size):
            idx = order[b * config.batch_size : (b + 1) * config.batch_size]
            step(tf.gather(x_tr, idx), tf.gather(u_tr, idx))
        loss = float(
            np.mean(
                [
                    val_loss(x_va[i : i + 5000], u_va[i : i + 5000])
                    for i in range(0, len(u_va), 5000)
                ]
            )
        )
        history.append(loss)
        if loss < best - 1e-3:
            best, best_arrays, since = loss, net.arrays(), 0
        else:
            since += 1
        if since >= config.patience:
            net.assign(best_arrays)
            opt.learning_rate.assign(float(opt.learning_rate) * 0.3)
            since = 0
            if float(opt.learning_rate) < config.min_learning_rate:
                break
        bar.set_postfix(val_nll=f"{loss:.3f}", lr=f"{float(opt.learning_rate):.1e}")
        if time.monotonic() - start > 60 * config.max_minutes:
            break
    net.assign(best_arrays)
    # Recalibrate the posterior widths on fresh simulations (not the test set).
    estimator.set_chol_scale(fit_chol_scale(estimator, config, emulator))
    # OOD reference density over inputs, threshold from fresh held-out simulations.
    # Over the asinh fluxes only: INPUT_OOD is for photometry unlike the model's galaxies,
    # not for error bars unlike the training set's (real catalogs' never follow one formula).
    n_bands = len(emulator.band_names)
    complete = ~x[:n_tr, 2 * n_bands :].any(axis=1)
    density = fit_input_density(
        xs[:n_tr][complete][:, :n_bands], config.ood_components, config.seed
    )
    x_ho, _, missing_ho = simulate_pairs(config, emulator, 20_000, config.seed + 1)
    x_ho = estimator.standardized(x_ho)[~missing_ho.any(axis=1)][:, :n_bands]
    threshold = float(np.quantile(InputDensity(density)(x_ho), config.ood_false_flag_rate))
    estimator.ood = {f"density_{k}": v for k, v in density.items()} | {
        "density_threshold": np.array(threshold)
    }
    from lor.inference.amortized import PhotometryPosteriors, flag_thresholds

    _, cat_ho, _ = simulate_pairs(config, emulator, 10_000, config.seed + 2)
    cuts = flag_thresholds(PhotometryPosteriors(estimator, emulator), cat_ho.flux, cat_ho.flux_err)
    estimator.ood |= {k: np.array(v) for k, v in cuts.items()}
    estimator.spec["training"] |= {
        "val_nll_history": [round(h, 5) for h in history],
        "minutes": (time.monotonic() - start) / 60,
        "n_train": n_tr,
    }
    return estimator, {
        "val_nll": best,
        "epochs": len(history),
        "ood_log_density_threshold": threshold,
        "poor_fit_reduced_chi2_threshold": cuts["chi2_threshold"],
        "prior_edge_threshold": cuts["edge_threshold"],
    }


def train_estimator_from_config(
    config_path: Path, out_dir: Path, progress: bool = True
) -> tuple[str, dict[str, Any]]:
    config = EstimatorConfig.from_yaml(config_path)
    emulator, emulator_sha = training_emulator(config)
    estimator, metrics = train_estimator(config, emulator, emulator_sha, progress)
    sha = estimator.save(out_dir)
    return sha, metrics


def training_emulator(config: EstimatorConfig):  # type: ignore[no-untyped-def]
    """The (hash-verified) emulator the config names, and its sha256."""
    from lor.emulators.registry import (
        SHIPPED_DIR,
        SHIPPED_EMULATOR,
        load_emulator,
        load_shipped_emulator,
    )

    if not config.emulator:
        return load_shipped_emulator(), SHIPPED_EMULATOR[1]
    record = dict(config.emulator)
    if "sha256" not in record or not ("name" in record or "path" in record):
        raise ConfigError("estimator config: emulator needs sha256 and a name or a path")
    folder = Path(record["path"]) if "path" in record else SHIPPED_DIR / record["name"]
    return load_emulator(folder, record["sha256"]), record["sha256"]
