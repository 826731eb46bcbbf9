"""Bring stored posteriors up to date after a prior or calibration change, without inference.

A stored posterior ``q(theta)`` was computed under an old prior and calibration. Under new ones
the posterior is ``q(theta) x w(theta)`` with the importance weight

    w = [pi_new(theta) / pi_old(theta)] x [L_new(d | theta) / L_old(d | theta)],

the likelihood ratio only where the object's calibration (zeropoints, noise scales) changed.

**Prior change only** (the common, cheap case): the ratio is smooth on the scale of a
posterior, so each Gaussian component of the stored mixture (in the flow's logit coordinates
``u``) is multiplied by it and moment-matched back to a Gaussian with a deterministic
cubature rule instead of random draws. Only the prior factors whose hyperparameters changed
enter the ratio (:data:`lor.inference.prior.FACTORS`), so the rule runs in the few coordinates
those factors read (redshift and mass for a change of the redshift distribution and the mass
function); the other coordinates follow exactly through the Gaussian conditional. The
effective sample size of the cubature weights says whether that was good enough; if not,
the object is reweighted with random draws and refitted by EM (the representation's
:meth:`~lor.posteriors.base.PosteriorRepresentation.encode`). Cubature needs a Gaussian
mixture (:class:`~lor.posteriors.base.GaussianComponents`); other representations take the
draws directly.

**Calibration change** (zeropoints, noise scalings or the model-error floor): the data the
likelihood sees changed, and the amortized estimator's input *is* those data, so the object
is inferred again -- one network pass on the newly calibrated photometry, whose posterior is
under the estimator's training prior, reweighted to the new prior as above. Importance
weights between calibrations collapse at LSST signal-to-noise (issue #7: ESS 2-3 of 64;
issue #12: LOW_ESS and FALLBACK on every object of an external catalog), while a network pass
costs less than the draws would; the flags then mean what they mean after Step 1.

**Low effective sample size** of a prior reweighting (cubature, then random draws): the
object is flagged ``LOW_ESS`` and redone, by MCMC under the new prior and calibration when the
run asks for it (``FALLBACK``), else by the estimator's pass reweighted with random draws.
"""

from __future__ import annotations

from functools import cached_property

import numpy as np
import tensorflow as tf

from lor import seeds
from lor.batching import padded_batches
from lor.hierarchy.cubature import moment_match
from lor.inference import prior_density
from lor.inference.amortized import InferenceResult, PhotometryPosteriors, PreparedPhotometry
from lor.inference.flags import Flag
from lor.inference.prior import PopulationPrior, PriorMixture
from lor.posteriors.base import GaussianComponents, PosteriorRepresentation
from lor.sps.parameters import PARAM_NAMES

CUBATURE_ESS_MIN = 0.5
"""Cubature weights with a smaller effective sample fraction go to random draws."""
IS_DRAWS = 256
"""Random draws per object for importance reweighting."""
IS_EFFECTIVE_MIN = 24.0
"""Fewest effective samples (of IS_DRAWS) an importance-reweighted refit may rest on."""
DATA_CHECKS = Flag.INPUT_OOD | Flag.POOR_FIT
"""Flags that check the data against the model, which a prior change leaves as they were.

INPUT_OOD is a function of the photometry and calibration alone: the parent's bit is the
one a new check would set. POOR_FIT asks whether the model fits the data anywhere in the
posterior; the likelihood is unchanged and a cubature update keeps at least
CUBATURE_ESS_MIN of the posterior's effective mass where it was. Measured on 50,000
reweighted objects: the parent's POOR_FIT bits differ from freshly computed ones in 272
objects, no more than two fresh computations with different seeds differ (255), the noise of
the statistic's few posterior draws. Carrying both saves the emulator calls of the fit check.
"""

PRIOR_ONLY_CARRIED = Flag.BAD_INPUT | Flag.MISSING_BANDS | DATA_CHECKS | Flag.UNCALIBRATED_TRACT
"""Flags of a parent posterior that a change of prior alone leaves as they were: those of the
photometry and the calibration (:data:`DATA_CHECKS` says why the data checks stay)."""
PRIOR_SLICE = 4096
"""Objects per slice of a prior-only update (memory of the per-component temporaries)."""


class PriorRatio:
    """``log pi_new(theta) - log pi_old(theta)``, from only the prior factors that differ.

    In closed form in NumPy where both priors have one (:mod:`lor.inference.prior_density`:
    no distribution objects, tracing or compiles in the hot loop); otherwise traced once
    for any batch length and compiled by XLA per bucket shape. ``columns`` are the
    parameters it depends on.
    """

    def __init__(self, new: PopulationPrior | PriorMixture, old: PopulationPrior) -> None:
        self.factors = new.changed_factors(old)
        self._centre = 0.5 * (new.low + new.high)
        # Priors of two families with different factors: the ratio of the whole densities.
        whole = not set(self.factors) <= set(old.factors)
        if whole:
            names: tuple[str, ...] | list[str] = PARAM_NAMES
        else:
            reads = {p for f in self.factors for p in new.factors[f][0] + old.factors[f][0]}
            names = sorted(reads, key=PARAM_NAMES.index)
        self.columns = np.array([PARAM_NAMES.index(p) for p in names], np.int64)

        def log_ratio(theta: tf.Tensor) -> tf.Tensor:
            if whole:
                return (new.log_prob(theta) - old.log_prob(theta))[:, None]
            return (
                new.factors_log_prob(theta, self.factors)
                - old.factors_log_prob(theta, self.factors)
            )[:, None]

        self._numpy = prior_density.supports(new, self.factors) and prior_density.supports(
            old, self.factors
        )
        self._new, self._old = new, old
        self._fn = None
        if self.factors and not self._numpy:
            spec = tf.TensorSpec([None, len(PARAM_NAMES)], tf.float64)  # one trace, any length
            self._fn = tf.function(log_ratio, jit_compile=True, input_signature=[spec])

    @property
    def is_identity(self) -> bool:
        return not self.factors

    def warm_up(self) -> None:
        """Compile for every batch shape the ratio will meet (:func:`lor.batching.bucket_sizes`),
        so no XLA compile lands on a processed batch."""
        from lor.batching import CHUNK, SMALLEST_BUCKET

        size = SMALLEST_BUCKET
        while self._fn is not None and size <= CHUNK:
            self(np.tile(self._centre, (size, 1)))
            size *= 2

    def __call__(self, theta: np.ndarray) -> np.ndarray:
        """Log ratio at parameter rows ``(..., D)``; zeros when the priors are equal."""
        theta = np.asarray(theta, np.float64)
        if self._numpy and self.factors:
            return prior_density.factors_log_prob(
                self._new, theta, self.factors
            ) - prior_density.factors_log_prob(self._old, theta, self.factors)
        flat = theta.reshape(-1, theta.shape[-1])
        if self._fn is None:
            return np.zeros(flat.shape[0]).reshape(theta.shape[:-1])
        return padded_batches(self._fn, flat, 1)[:, 0].reshape(theta.shape[:-1])


def cubature_rule(m: int) -> tuple[np.ndarray, np.ndarray]:
    """The 2m-point spherical-radial rule: points ``(2m, m)`` at ``+-sqrt(m)`` along each axis,
    equal weights; exact for polynomials to degree 3 against a standard normal.

    On 4,000 objects after a change of z0, mass_mean and av_scale (m = 3) it matched the
    27-point Gauss-Hermite product (degree 5) to 1e-5 in median |dz50| against MCMC, at 2.2x
    the speed.
    """
    eye = np.sqrt(m) * np.eye(m)
    return np.concatenate([eye, -eye]), np.full(2 * m, 1.0 / (2 * m))


def reweight_by_cubature(
    rep: PosteriorRepresentation, params: np.ndarray, ratio: PriorRatio
) -> tuple[np.ndarray, np.ndarray]:
    """Stored posteriors times ``exp(ratio)``, each component moment-matched in ``u``
    (:func:`lor.hierarchy.cubature.moment_match`, vectorized over objects and components).

    Returns the new stored rows and, per object, the effective sample fraction of the
    cubature weights (1 when the ratio is flat over the posterior; 0 when the update is not
    finite, so the object goes to random draws; and for every object of a representation
    that is not a Gaussian mixture, which cubature cannot update).
    """
    if ratio.is_identity:
        return params.copy(), np.ones(len(params))
    if not isinstance(rep, GaussianComponents):
        return np.full_like(params, np.nan), np.zeros(len(params))
    points, rule_w = cubature_rule(len(ratio.columns))
    return moment_match(rep, params, ratio.columns, ratio, points, rule_w)


def importance_refit(
    rep: PosteriorRepresentation,
    params: np.ndarray,
    log_weight,  # type: ignore[no-untyped-def]  # (N, S, D) samples -> (N, S) log weights
    seed: int | np.ndarray,
    n_draws: int = IS_DRAWS,
) -> tuple[np.ndarray, np.ndarray]:
    """Draws from each stored posterior, importance weights, an EM refit of the weighted draws.

    ``seed``: one integer for the batch, or ``(N,)`` per-object keys (:mod:`lor.seeds`), whose
    draws (stream :data:`lor.seeds.IMPORTANCE`) do not depend on the other rows. Returns the
    refitted rows and each object's effective number of samples (Kish).
    """
    if np.ndim(seed) == 1:
        seed = seeds.stream_keys(np.asarray(seed, np.uint64), seeds.IMPORTANCE)
    theta = rep.sample(params, n_draws, seed)
    log_w = log_weight(theta)
    log_w = np.where(np.isfinite(log_w), log_w, -np.inf)
    w = np.exp(log_w - log_w.max(axis=1, keepdims=True))
    effective = w.sum(axis=1) ** 2 / np.maximum((w**2).sum(axis=1), 1e-300)
    return rep.encode(theta, w), effective


class PosteriorReweighter:
    """Reweights stored posteriors from (old prior, old calibration) to (new prior, new one).

    ``posteriors`` supplies the emulator (likelihood ratios), the estimator (the low-ESS
    fallback) and the checks every stored row gets; if it was built with a ``fallback_prior``
    (the run asked for MCMC), low-ESS objects are redone by MCMC under that prior instead.
    """

    def __init__(
        self,
        posteriors: PhotometryPosteriors,
        old_prior: PopulationPrior,
        new_prior: PopulationPrior | PriorMixture,
        estimator_prior: PopulationPrior | None = None,
        model_error_changed: bool = False,
    ) -> None:
        from lor.inference.prior_registry import estimator_prior as trained_under

        self.posteriors = posteriors
        self.rep = posteriors.rep
        self.old_prior, self.new_prior = old_prior, new_prior
        self.prior_ratio = PriorRatio(new_prior, old_prior)
        self.estimator_prior = estimator_prior or trained_under(posteriors.estimator.spec)
        self.model_error_changed = model_error_changed
        """The two calibrations' model-error floors differ: every object's data changed."""

    def warm_up(self) -> None:
        """Compile the prior ratios (this change's and the fallback's) for every batch shape."""
        self.prior_ratio.warm_up()
        self._estimator_ratio.warm_up()

    @cached_property
    def _estimator_ratio(self) -> PriorRatio:
        return PriorRatio(self.new_prior, self.estimator_prior)

    def reweight(
        self,
        parent_params: np.ndarray,
        flux: np.ndarray,
        flux_err: np.ndarray,
        missing_bits: np.ndarray | None,
        ebv: np.ndarray | None,
        old_zp: np.ndarray,
        old_scale: np.ndarray,
        new_zp: np.ndarray,
        new_scale: np.ndarray,
        seed: int | np.ndarray = 0,
        parent_flags: np.ndarray | None = None,
    ) -> InferenceResult:
        """New stored rows, summaries and flags for a batch of stored posteriors.

        ``seed``: ``(N,)`` per-object keys (:func:`lor.seeds.object_keys`), so each row's
        random draws do not depend on the batch; an integer keys row ``i`` by ``(seed, i)``.

        With ``parent_flags`` (the stored posteriors' flags), objects whose calibration did
        not change and whose posterior the cubature rule updated keep the parent's
        :data:`DATA_CHECKS` flags instead of checking their data again (see there).
        """
        post = self.posteriors
        new = post.prepare(flux, flux_err, missing_bits, ebv, new_zp, new_scale)
        parent = np.asarray(parent_params, np.float32)
        n = len(parent)
        keys = seeds.as_keys(seed, n)
        params = np.full((n, self.rep.floats_per_object), np.nan, np.float32)
        flags = new.flags.copy()
        method = np.full(n, "none", dtype=object)
        has = np.all(np.isfinite(parent), axis=1) & new.usable_rows
        calibrated = ~(np.isclose(old_zp, new_zp) & np.isclose(old_scale, new_scale)).all(axis=1)
        calibrated |= self.model_error_changed
        low = np.zeros(n, bool)

        rows = np.flatnonzero(has & ~calibrated)
        carried = np.zeros(n, bool)
        if len(rows):
            out, ess = reweight_by_cubature(self.rep, parent[rows], self.prior_ratio)
            good = ess >= CUBATURE_ESS_MIN
            params[rows[good]] = out[good]
            carried[rows[good]] = parent_flags is not None
            rows = rows[~good]
        if len(rows):
            out, effective = importance_refit(self.rep, parent[rows], self.prior_ratio, keys[rows])
            good = effective >= IS_EFFECTIVE_MIN
            params[rows[good]] = out[good]
            low[rows[~good]] = True
        method[np.isfinite(params).all(axis=1)] = "reweighted"
        inferred = np.flatnonzero(has & calibrated)
        if len(inferred):
            params[inferred], weak = self._reinfer(new, inferred, keys)
            method[inferred] = "amortized"
            low[inferred[weak]] = True
            flags[inferred[weak]] |= Flag.LOW_ESS

        redo = np.flatnonzero(low & ~calibrated)
        if len(redo):
            params[redo], method[redo] = self._fallback(new, redo, keys)
            flags[redo] |= Flag.LOW_ESS | Flag.FALLBACK
        redo = np.flatnonzero(low & calibrated & has)
        if len(redo) and self.posteriors.fallback_prior is not None:
            params[redo], method[redo] = self._fallback(new, redo, keys)
            flags[redo] |= Flag.FALLBACK
        done = np.flatnonzero(np.isfinite(params).all(axis=1))
        summaries: dict[str, np.ndarray] = {}
        chi2 = density = np.full(n, np.nan)
        if len(done):
            summaries, checks = post.summaries_and_checks(params, new, done, keys, ~carried[done])
            flags |= checks.flags
            chi2, density = checks.reduced_chi2, checks.input_log_density
        if parent_flags is not None:
            flags[carried] |= np.asarray(parent_flags)[carried] & DATA_CHECKS
        return InferenceResult(params, summaries, flags, method, chi2, density)

    def reweight_prior(
        self, parent_params: np.ndarray, parent_flags: np.ndarray
    ) -> tuple[InferenceResult, np.ndarray]:
        """New rows, summaries and flags after a change of prior alone, from the stored
        posteriors and their flags without the photometry; and the rows (bool) the cubature
        rule could not update, which need :meth:`reweight` with the photometry.

        Under an unchanged calibration the likelihood is unchanged, so every flag read from
        the data (:data:`PRIOR_ONLY_CARRIED`) is the parent's; the prior-edge flag is
        recomputed. Runs in slices of :data:`PRIOR_SLICE` objects to bound the memory of
        the per-component temporaries.
        """
        parent = np.asarray(parent_params, np.float32)
        n = len(parent)
        params = np.full((n, self.rep.floats_per_object), np.nan, np.float32)
        ess = np.zeros(n)
        for start in range(0, n, PRIOR_SLICE):
            part = slice(start, start + PRIOR_SLICE)
            params[part], ess[part] = reweight_by_cubature(self.rep, parent[part], self.prior_ratio)
        redo = ess < CUBATURE_ESS_MIN
        params[redo] = np.nan
        flags = np.asarray(parent_flags, np.int32) & PRIOR_ONLY_CARRIED
        done = np.flatnonzero(~redo)
        summaries: dict[str, np.ndarray] = {}
        if len(done):
            post = self.posteriors
            part_summaries = post.summaries(params[done])
            summaries = {k: np.full(n, np.nan) for k in part_summaries}
            for k, v in part_summaries.items():
                summaries[k][done] = v
            flags[done] |= post._edge_flags(params[done])  # noqa: SLF001 - same checks as inference
        method = np.where(redo, "none", "reweighted").astype(object)
        nan = np.full(n, np.nan)
        return InferenceResult(params, summaries, flags, method, nan, nan.copy()), redo

    def _model_flux(self, theta: np.ndarray) -> np.ndarray:
        """Emulator fluxes (nJy) of parameter draws ``(N, S, D)`` -> ``(N, S, B)``."""
        emu = self.posteriors.emulator
        n, s, d = theta.shape
        flat = np.clip(theta.reshape(n * s, d), emu.box_lo, emu.box_hi)
        return emu.fluxes_njy(flat).reshape(n, s, -1)

    def _reinfer(
        self, data: PreparedPhotometry, rows: np.ndarray, keys: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """A fresh estimator pass on calibrated ``rows``, reweighted from the estimator's
        training prior to the new prior; also which rows that reweighting left weak.
        ``keys``: the whole batch's per-object keys."""
        fresh = self.posteriors.estimator.posterior_params(data.features(rows))
        out, ess = reweight_by_cubature(self.rep, fresh, self._estimator_ratio)
        weak = ess < CUBATURE_ESS_MIN
        low = np.zeros(len(rows), bool)
        if weak.any():
            out[weak], effective = importance_refit(
                self.rep, fresh[weak], self._estimator_ratio, keys[rows[weak]]
            )
            low[np.flatnonzero(weak)[effective < IS_EFFECTIVE_MIN]] = True
        return out, low

    def _fallback(
        self, data: PreparedPhotometry, rows: np.ndarray, keys: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Redo low-ESS objects: MCMC if the run asked for it, else a fresh estimator pass
        under the new calibration reweighted from the estimator's prior to the new one.
        ``keys``: the whole batch's per-object keys."""
        post = self.posteriors
        if post.fallback_prior is not None:
            fresh = post.estimator.posterior_params(data.features(rows))
            err = np.where(data.unusable[rows], np.nan, data.err[rows])
            return post.mcmc(fresh, data.flux[rows], err, keys[rows]), np.full(len(rows), "mcmc")
        out, _ = self._reinfer(data, rows, keys)
        return out, np.full(len(rows), "reweighted")
