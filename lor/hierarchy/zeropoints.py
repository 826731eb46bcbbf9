"""Per-tract zeropoint offsets and noise scalings, fitted to the galaxy population in data space.

For a tract with offsets ``zp`` (mag per band; the catalog's fluxes are
``f_true 10**(-0.4 zp)``) and noise scalings ``s`` (the true scatter is ``s`` times the
reported error), the hierarchical likelihood of its objects is the product of their marginal
likelihoods ``p(d_i | zp, s, alpha) = ∫ p(d_i | theta, zp, s) pi_alpha(theta) dtheta``:
the density of the *population* in data space, convolved with each object's noise.

That density is built by simulation under the fitted prior ``pi_alpha``: noise-free fluxes
of its selected population through the emulator, in asinh magnitudes (Lupton et al. 1999:
defined for faint and negative fluxes, logarithmic for bright ones), fitted with a Gaussian
mixture. Each object's marginal likelihood is then the mixture convolved with its own noise,
linearized in asinh magnitudes (extreme deconvolution's likelihood, Bovy et al. 2011), so
offsets and noise scalings both enter analytically and are fitted by L-BFGS on TensorFlow
gradients, with Laplace errors.

Why not per-object posteriors: an offset in one band is absorbed by each object's own
parameters (8 parameters, 6 bands), so the information sits in the population, in the
difference between how much each object absorbs and how far that moves it in the prior.
Importance weights from the stored flows between calibrations keep 2-3 effective draws of 64
at LSST signal-to-noise, and per-object Laplace approximations fail on the curved likelihood
ridges of bright objects (measured in side experiments on 500-2,000 simulated objects
whose code is not in this repository: exact Hessians indefinite at a third of the MAPs,
importance sampling from them keeps ESS 2 of 64, and the MAP residuals bias the u-band
offset by 0.1 mag at the true calibration). The data-space density has no per-object
posterior in it at all.

What galaxies cannot tell: a gray offset (all bands alike) is a pure magnitude shift,
exactly what stellar mass does, so only colours are measured. One *reference band* per tract
keeps the offset it has (from the stellar calibration); by default the selection band, so
the survey's depth cut does not move with the fitted offsets either.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import tensorflow as tf
from scipy.optimize import minimize

from lor.errors import ConfigError
from lor.hierarchy.objective import TFObjective
from lor.inference.data_model import DataModel
from lor.inference.prior import PopulationPrior

if TYPE_CHECKING:
    from lor.emulators.protocol import Emulator

ASINH_SCALE = 2.5 / np.log(10.0)
ZP_BOUNDS = (-0.3, 0.3)
"""Largest offset (mag) fitted: beyond it a tract is broken, not miscalibrated."""
LOG_SCALE_BOUNDS = (np.log(0.5), np.log(3.0))


def asinh_magnitudes(flux: np.ndarray | tf.Tensor, softening: np.ndarray) -> Any:
    """Asinh magnitudes up to a per-band constant: ``-2.5/ln10 asinh(f / 2b)``."""
    if isinstance(flux, tf.Tensor):
        return -ASINH_SCALE * tf.math.asinh(flux / (2.0 * softening))
    return -ASINH_SCALE * np.arcsinh(flux / (2.0 * softening))


@dataclass
class PopulationDensity:
    """The population's noise-free density in asinh magnitudes: a Gaussian mixture."""

    weights: np.ndarray  # (K,)
    means: np.ndarray  # (K, B)
    covariances: np.ndarray  # (K, B, B)
    softening: np.ndarray  # (B,) nJy: the sky-limited 1-sigma flux error
    details: dict[str, Any] = field(default_factory=dict)
    bias: TractCalibration | None = None  # the fit of a simulated tract with no offsets

    @classmethod
    def simulate(
        cls,
        emulator: Emulator,
        prior: PopulationPrior,
        data_model: DataModel | None = None,
        n_objects: int = 200_000,
        n_components: int = 96,
        seed: int = 0,
        n_null: int | None = None,
    ) -> PopulationDensity:
        """Fit the mixture to the noise-free fluxes of ``n_objects`` drawn from ``prior`` and
        passing its selection (on observed, noisy magnitudes, as the survey selects).

        A mixture smooths the population a little, so fitted noise scalings come out a few
        per cent low and offsets can shift by a fraction of their error. Both are measured
        on ``n_null`` further simulated objects with no offsets and true errors (its
        :attr:`bias`), and :func:`fit_tract` takes them out (``n_null = 0``: not measured;
        ``None``: :func:`null_objects` of ``n_objects``).
        """
        from sklearn.mixture import GaussianMixture

        from lor.inference.simulate import simulate_catalog

        n_null = null_objects(n_objects) if n_null is None else n_null
        data_model = data_model or DataModel(bands=emulator.band_names)
        cat = simulate_catalog(n_objects, emulator, prior, data_model, seed=seed)
        softening = data_model.flux_error(np.zeros((1, len(data_model.bands))))[0]
        x = asinh_magnitudes(cat.true_flux, softening)
        gmm = GaussianMixture(n_components, covariance_type="full", reg_covar=1e-5,
                              max_iter=300, random_state=seed).fit(x)  # fmt: skip
        density = cls(gmm.weights_, gmm.means_, gmm.covariances_, softening, details={
            "n_objects": n_objects, "n_components": n_components, "seed": seed,
            "converged": bool(gmm.converged_), "mean_log_density": float(gmm.score(x)),
        })  # fmt: skip
        if n_null:
            null = simulate_catalog(n_null, emulator, prior, data_model, seed=seed + 1)
            bands = list(data_model.bands)
            ref = str(prior.selection["band"]) if prior.selection["band"] in bands else bands[0]
            density.bias = fit_tract(density, -1, bands, null.flux, null.flux_err, ref)
            density.details["bias"] = {
                "n_objects": n_null, "reference_band": ref,
                "zeropoint_offset": density.bias.zeropoint_offset.tolist(),
                "noise_scale": density.bias.noise_scale.tolist(),
            }  # fmt: skip
        return density

    def save(self, folder: Path, key: str) -> None:
        """Write the density as an artifact (JSON spec + ``.npz``, pinned by sha256, never
        pickled) under ``folder``, with the pin beside it."""
        from lor.artifacts import write_artifact

        arrays = {"weights": self.weights, "means": self.means,
                  "covariances": self.covariances, "softening": self.softening}  # fmt: skip
        spec: dict[str, Any] = {"kind": "population-density", "key": key, "details": self.details}
        if self.bias is not None:
            b = self.bias
            arrays |= {f"bias_{k}": getattr(b, k) for k in _BIAS_ARRAYS}
            spec["bias"] = {"bands": b.bands, "reference_band": b.reference_band,
                            "n_objects": b.n_objects, "converged": b.converged,
                            "details": b.details}  # fmt: skip
        pin = write_artifact(folder, spec, arrays)
        (folder / DENSITY_PIN).write_text(pin)

    @classmethod
    def load(cls, folder: Path, key: str) -> PopulationDensity:
        """Read a density :meth:`save` wrote; :class:`~lor.errors.ArtifactError` if it is
        missing, damaged, or made for other inputs."""
        from lor.artifacts import read_artifact
        from lor.errors import ArtifactError

        pin = folder / DENSITY_PIN
        if not pin.is_file():
            raise ArtifactError(f"no population density at {folder}")
        spec, arrays = read_artifact(folder, pin.read_text().strip())
        if spec.get("kind") != "population-density" or spec.get("key") != key:
            raise ArtifactError(f"{folder} holds a density for other inputs")
        bias = None
        if "bias" in spec:
            b = spec["bias"]
            bias = TractCalibration(
                tract_id=-1, bands=list(b["bands"]), reference_band=b["reference_band"],
                n_objects=int(b["n_objects"]), converged=bool(b["converged"]),
                details=b["details"], **{k: arrays[f"bias_{k}"] for k in _BIAS_ARRAYS},
            )  # fmt: skip
        return cls(arrays["weights"], arrays["means"], arrays["covariances"],
                   arrays["softening"], details=spec["details"], bias=bias)  # fmt: skip


DENSITY_PIN = "spec.sha256"
_BIAS_ARRAYS = ("zeropoint_offset", "zeropoint_err", "noise_scale", "noise_scale_err", "covariance")


def null_objects(n_objects: int) -> int:
    """Objects of the null tract that measures a density's bias: a quarter of the density's,
    at most 50,000 (the default density's 200,000 gets 50,000). Its fit is most of a
    density's cost, and a smaller density's bias needs no finer measurement than the
    density itself allows."""
    return min(50_000, n_objects // 4)


DENSITY_FORMAT = 1
"""Bump when :meth:`PopulationDensity.simulate` changes what it computes: cached densities
made by the old code are then not found."""


def cached_density(
    emulator: Emulator,
    prior: PopulationPrior,
    cache_dir: Path | None,
    n_objects: int = 200_000,
    n_components: int = 96,
    seed: int = 0,
    n_null: int | None = None,
) -> PopulationDensity:
    """:meth:`PopulationDensity.simulate`, kept under ``cache_dir`` by its inputs.

    The density is a deterministic function of the emulator (its spec, which pins its
    weights), the prior's record, the sizes and the seed; its mixture fit takes minutes, and
    every Step 2 under the same prior (each first pass of ``lor calibrate``) needs the same
    one. A damaged or mismatched cache entry is recomputed, never trusted.
    """
    import hashlib
    import json

    from lor.errors import ArtifactError

    n_null = null_objects(n_objects) if n_null is None else n_null
    if cache_dir is None:
        return PopulationDensity.simulate(emulator, prior, n_objects=n_objects,
                                          n_components=n_components, seed=seed, n_null=n_null)  # fmt: skip
    inputs = {"format": DENSITY_FORMAT, "emulator": emulator.spec, "prior": prior.as_record(),
              "n_objects": n_objects, "n_components": n_components, "seed": seed,
              "n_null": n_null}  # fmt: skip
    key = hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()
    folder = Path(cache_dir) / key
    try:
        return PopulationDensity.load(folder, key)
    except ArtifactError:
        pass
    density = PopulationDensity.simulate(emulator, prior, n_objects=n_objects,
                                         n_components=n_components, seed=seed, n_null=n_null)  # fmt: skip
    density.save(folder, key)
    return density


@dataclass
class TractCalibration:
    """Fitted offsets and scalings of one tract, with their uncertainties."""

    tract_id: int
    bands: list[str]
    zeropoint_offset: np.ndarray  # (B,) mag; catalog = true * 10**(-0.4 zp)
    zeropoint_err: np.ndarray  # (B,); 0 for the reference band (not fitted)
    noise_scale: np.ndarray  # (B,)
    noise_scale_err: np.ndarray  # (B,)
    covariance: np.ndarray  # of (free offsets, log noise scales)
    reference_band: str
    n_objects: int
    converged: bool
    details: dict[str, Any] = field(default_factory=dict)

    def as_terms(self) -> dict[str, tuple[float, float | None, float, float | None]]:
        """``{band: (zp, zp_err, noise_scale, scale_err)}`` as a calibration version stores."""
        return {
            b: (float(self.zeropoint_offset[i]),
                None if b == self.reference_band else float(self.zeropoint_err[i]),
                float(self.noise_scale[i]), float(self.noise_scale_err[i]))
            for i, b in enumerate(self.bands)
        }  # fmt: skip


class _TractObjective(TFObjective):
    """Negative log likelihood of one tract's objects in (free offsets, log noise scales).

    Each object keeps only the ``n_nearest`` mixture components that carry it at the start
    (the rest add less than e**-20 of its density at offsets of tenths of a magnitude): the
    likelihood then costs N x n_nearest small Cholesky factorizations instead of N x K.
    """

    def __init__(
        self,
        density: PopulationDensity,
        flux: np.ndarray,
        err: np.ndarray,
        reference_zp: float,
        free: list[int],
        n_nearest: int = 12,
        model_error_mag: np.ndarray | None = None,
        start_floor_mag: np.ndarray | None = None,
    ) -> None:
        self.free = free
        self.n_bands = flux.shape[1]
        self.flux = tf.constant(flux, tf.float64)
        self.err = tf.constant(err, tf.float64)
        self.softening = tf.constant(density.softening, tf.float64)
        self.reference_zp = reference_zp
        known = np.zeros(self.n_bands) if model_error_mag is None else model_error_mag
        self.model_var = tf.constant((np.asarray(known) / ASINH_SCALE) ** 2, tf.float64)
        log_w = tf.constant(np.log(density.weights), tf.float64)
        means = tf.constant(density.means, tf.float64)
        covs = tf.constant(density.covariances, tf.float64)
        zero = tf.zeros(self.n_bands, tf.float64)
        start = self.offsets(tf.zeros(len(free), tf.float64)) if free else zero
        floor = None if start_floor_mag is None else tf.constant(start_floor_mag, tf.float64)
        x, noise, _ = self._data(start, zero, floor)
        nearest = _component_log_probs(log_w, means, covs, x, noise)
        k = min(n_nearest, len(density.weights))
        idx = tf.math.top_k(nearest, k).indices  # (N, k)
        self.log_w, self.means, self.covs = (tf.gather(t, idx) for t in (log_w, means, covs))
        super().__init__()

    def _data(
        self, zp: tf.Tensor, log_scale: tf.Tensor, floor: tf.Tensor | None = None
    ) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        """Corrected asinh magnitudes (N, B), their noise variances (N, B) and the log
        Jacobian of flux -> asinh magnitude (N,).

        The noise is the scaled catalog error plus the model error -- the emulator's known
        part and the fitted ``floor`` (mag), both fractional at the corrected flux
        (:mod:`lor.inference.model_error`), so a floor is told from a noise scaling by how
        it grows with brightness."""
        gain = tf.pow(tf.constant(10.0, tf.float64), 0.4 * zp)
        corrected = self.flux * gain
        x = asinh_magnitudes(corrected, self.softening)
        slope = ASINH_SCALE / tf.sqrt(corrected**2 + 4.0 * self.softening**2)  # |dx/df|
        noise = (slope * gain * tf.exp(log_scale) * self.err) ** 2
        model_var = self.model_var
        if floor is not None:
            model_var = model_var + (floor / ASINH_SCALE) ** 2
        noise = noise + (slope * corrected) ** 2 * model_var
        return x, noise, tf.reduce_sum(tf.math.log(slope * gain), axis=1)

    def offsets(self, zp_free: tf.Tensor) -> tf.Tensor:
        """All bands' offsets: the free ones, and the reference band's fixed value."""
        parts, k = [], 0
        for b in range(self.n_bands):
            if b in self.free:
                parts.append(zp_free[k])
                k += 1
            else:
                parts.append(tf.constant(self.reference_zp, tf.float64))
        return tf.stack(parts)

    def per_object(
        self, zp: tf.Tensor, log_scale: tf.Tensor, floor: tf.Tensor | None = None
    ) -> tf.Tensor:
        """``log p(f_obs | zp, s, floor)`` of each object, (N,)."""
        x, noise, jacobian = self._data(zp, log_scale, floor)
        return (
            tf.reduce_logsumexp(
                _component_log_probs(self.log_w, self.means, self.covs, x, noise), axis=1
            )
            + jacobian
        )

    def nll(self, params: tf.Tensor) -> tf.Tensor:
        k = len(self.free)
        return -tf.reduce_sum(self.per_object(self.offsets(params[:k]), params[k:]))


def _component_log_probs(
    log_w: tf.Tensor, means: tf.Tensor, covs: tf.Tensor, x: tf.Tensor, noise: tf.Tensor
) -> tf.Tensor:
    """``log w_k N(x_i | mu_k, V_k + diag(noise_i))``, (N, K); the mixture's arrays are
    shared (K, ...) or per object (N, K, ...)."""
    n_bands = x.shape[-1]
    cov = covs + tf.linalg.diag(noise)[:, None]  # (N, K, B, B)
    chol = tf.linalg.cholesky(cov)
    diff = x[:, None, :] - means
    sol = tf.linalg.triangular_solve(chol, diff[..., None])[..., 0]
    log_det = 2.0 * tf.reduce_sum(tf.math.log(tf.linalg.diag_part(chol)), axis=-1)
    return log_w - 0.5 * (tf.reduce_sum(sol**2, -1) + log_det + n_bands * np.log(2 * np.pi))


def fit_tract(
    density: PopulationDensity,
    tract_id: int,
    bands: list[str],
    flux: np.ndarray,
    err: np.ndarray,
    reference_band: str = "i",
    reference_zp: float = 0.0,
    fit_noise: bool = True,
) -> TractCalibration:
    """Offsets (all bands but ``reference_band``, which keeps ``reference_zp``) and noise
    scalings of one tract from its objects' catalog ``flux`` and ``err`` (N, B), nJy,
    dereddened, every band measured."""
    flux, err = np.asarray(flux, np.float64), np.asarray(err, np.float64)
    ok = np.all(np.isfinite(flux) & np.isfinite(err) & (err > 0), axis=1)
    flux, err = flux[ok], err[ok]
    if reference_band not in bands:
        raise ConfigError(f"reference band {reference_band!r} is not one of the bands {bands}")
    b = len(bands)
    if len(flux) < 10 * b:
        raise ConfigError(
            f"tract {tract_id}: {len(flux)} objects with every band measured; a calibration "
            f"needs at least {10 * b} (thousands to reach millimagnitudes)"
        )
    ref = bands.index(reference_band)
    free = [k for k in range(b) if k != ref]
    objective = _TractObjective(density, flux, err, reference_zp, free)
    k = len(free)
    start = np.zeros(k + b)
    bounds = [ZP_BOUNDS] * k + [LOG_SCALE_BOUNDS if fit_noise else (0.0, 0.0)] * b
    result = minimize(objective, start, jac=True, method="L-BFGS-B", bounds=bounds)
    fitted = [i for i in range(k + b) if fit_noise or i < k]
    hess = objective.hessian(result.x, fitted)
    cov = np.linalg.inv(hess)
    errors = np.zeros(k + b)
    errors[fitted] = np.sqrt(np.clip(np.diag(cov), 0.0, None))
    zp = np.full(b, reference_zp)
    zp_err = np.zeros(b)
    zp[free], zp_err[free] = result.x[:k], errors[:k]
    scale = np.exp(result.x[k:])
    scale_err = scale * errors[k:]
    bias = density.bias
    if bias is not None and bias.reference_band == reference_band:  # PopulationDensity.simulate
        zp[free] -= bias.zeropoint_offset[free]
        zp_err[free] = np.hypot(zp_err[free], bias.zeropoint_err[free])
    if bias is not None and fit_noise:
        scale = scale / bias.noise_scale
        scale_err = scale * np.hypot(errors[k:], bias.noise_scale_err / bias.noise_scale)
    return TractCalibration(
        tract_id=tract_id, bands=list(bands), zeropoint_offset=zp, zeropoint_err=zp_err,
        noise_scale=scale, noise_scale_err=scale_err, covariance=cov,
        reference_band=reference_band, n_objects=int(ok.sum()), converged=bool(result.success),
        details={"iterations": int(result.nit), "nll": float(result.fun),
                 "objects_dropped": int((~ok).sum())},
    )  # fmt: skip
