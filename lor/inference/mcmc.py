"""A batched affine-invariant ensemble sampler (Goodman & Weare 2010) in TensorFlow.

lor fits one small posterior per galaxy, so the unit of work is not one long chain but many
independent low-dimensional posteriors advanced together: the state is a ``(N objects,
W walkers, D dims)`` tensor and ``log_prob_fn`` maps ``(N, M, D) -> (N, M)``. The update is
emcee's ``StretchMove`` with its red-blue split (Foreman-Mackey et al. 2013), so results can
be checked against ``emcee.EnsembleSampler`` and emcee's tuning advice applies.

As in emcee, the move is a small strategy object and :meth:`EnsembleSampler.sample` is a
generator that yields one :class:`ChainChunk` per compiled call and resumes from the
:class:`EnsembleState` it yielded. Randomness is stateless: step ``t`` draws from
``fold_in(seed, t)``, so resumed pieces reproduce one long run exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, TypeAlias

import numpy as np
import tensorflow as tf

from lor import seeds
from lor.errors import LorError

if TYPE_CHECKING:
    from lor.inference.prior import PopulationPrior
    from lor.posteriors.base import PosteriorRepresentation

LogProbFn = Callable[[tf.Tensor], tf.Tensor]
"""``theta (N, M, D) -> log density (N, M)``; may return ``-inf`` outside the support."""


class SamplerError(LorError):
    """The sampler was configured or started badly (shapes, walker count, NaN densities)."""


@dataclass(frozen=True, kw_only=True)
class RedBlueMove:
    """Update half of the ensemble at a time, proposing from the other half.

    Splitting keeps detailed balance while letting each half be updated in parallel (one
    batched ``log_prob_fn`` call per half). Subclasses implement :meth:`propose` and say how
    many uniforms it consumes per walker: the sampler draws all of a step's randomness in one
    batched call, so a move never touches the random-number generator itself.

    Parameters
    ----------
    randomize_split
        Reshuffle which walkers form each half at every step, as emcee does by default.
    live_dangerously
        Allow fewer than ``2 * D`` walkers; otherwise refused, because such an ensemble
        spans a lower-dimensional subspace and can never leave it.
    """

    n_uniforms: ClassVar[int] = 0
    randomize_split: bool = True
    live_dangerously: bool = False

    def propose(self, s: tf.Tensor, c: tf.Tensor, u: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """Proposals for ``s (N, S, D)`` built from ``c (N, C, D)`` and their log Hastings
        factors ``(N, S)``, from the uniforms ``u (n_uniforms, N, S)``."""
        raise NotImplementedError

    def check(self, n_walkers: int, n_dim: int) -> None:
        """Refuse ensembles the move cannot explore (see ``live_dangerously``)."""
        if n_walkers < 2:
            raise SamplerError(f"need at least 2 walkers, got {n_walkers}")
        if n_walkers < 2 * n_dim and not self.live_dangerously:
            msg = f"{n_walkers} walkers for {n_dim} dims: use >= {2 * n_dim} or live_dangerously"
            raise SamplerError(msg)

    def step(
        self, log_prob_fn: LogProbFn, x: tf.Tensor, lp: tf.Tensor, u: tf.Tensor
    ) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        """Advance every walker once; return positions, log densities and accepted (N, W).

        ``u`` holds ``(2 + n_uniforms, N, W)`` uniforms: a shuffle key per walker, then per
        slot of the shuffled ensemble an acceptance uniform and the proposal's uniforms.
        NaN densities of proposals count as ``-inf`` (rejected): a compiled loop cannot
        raise, and rejecting keeps the chain where the density is defined.
        """
        n_walkers = x.shape[1]
        half = (n_walkers + 1) // 2
        if self.randomize_split:
            rank, perm = _shuffle(u[0])
            x, lp = tf.gather(x, perm, batch_dims=1), tf.gather(lp, perm, batch_dims=1)
        xs, lps, us = (
            [x[:, :half], x[:, half:]],
            [lp[:, :half], lp[:, half:]],
            [u[:, :, :half], u[:, :, half:]],
        )
        oks = []
        for k in (0, 1):
            q, log_factor = self.propose(xs[k], xs[1 - k], us[k][2:])
            lq = tf.cast(log_prob_fn(q), lp.dtype)
            lq = tf.where(tf.math.is_nan(lq), tf.constant(-np.inf, lp.dtype), lq)
            ok = tf.math.log(us[k][1]) < log_factor + lq - lps[k]  # False for -inf, NaN
            xs[k] = tf.where(ok[..., None], q, xs[k])
            lps[k] = tf.where(ok, lq, lps[k])
            oks.append(ok)
        x, lp, ok = tf.concat(xs, 1), tf.concat(lps, 1), tf.concat(oks, 1)
        if self.randomize_split:
            x, lp, ok = (tf.gather(t, rank, batch_dims=1) for t in (x, lp, ok))
        return x, lp, ok


def _shuffle(key: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Uniform random permutation per row of ``key (N, W)``: ``(rank, perm)``, inverses.

    Ranks by pairwise comparison (ties broken by index) instead of ``argsort``: XLA's CPU
    sort is several times slower than these ``(N, W, W)`` elementwise ops for ensemble-sized W.
    """
    idx = tf.range(tf.shape(key)[1])
    earlier = idx[None, :] < idx[:, None]
    below = (key[:, None, :] < key[:, :, None]) | ((key[:, None, :] == key[:, :, None]) & earlier)
    rank = tf.reduce_sum(tf.cast(below, tf.int32), axis=-1)  # rank[n, walker] = slot
    perm = tf.reduce_sum(tf.where(rank[:, :, None] == idx, idx[None, :, None], 0), axis=1)
    return rank, perm


@dataclass(frozen=True)
class StretchMove(RedBlueMove):
    """Goodman & Weare's stretch move: ``y = c + z (s - c)`` with ``g(z) ∝ 1/sqrt(z)`` on
    ``[1/a, a]``, the move emcee uses by default.

    Parameters
    ----------
    a
        Stretch scale (> 1). 2 is the standard choice; larger values take bigger, rarer steps.
    """

    n_uniforms: ClassVar[int] = 2
    a: float = 2.0

    def __post_init__(self) -> None:
        if not self.a > 1.0:
            raise SamplerError(f"stretch scale a must be > 1, got {self.a}")

    def propose(self, s: tf.Tensor, c: tf.Tensor, u: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        z = ((self.a - 1.0) * u[0] + 1.0) ** 2 / self.a  # inverse CDF of g(z)
        n_c = tf.shape(c)[1]
        j = tf.minimum(tf.cast(u[1] * tf.cast(n_c, u.dtype), tf.int32), n_c - 1)
        cj = tf.gather(c, j, batch_dims=1)
        return cj - (cj - s) * z[..., None], (s.shape[-1] - 1.0) * tf.math.log(z)


@dataclass(frozen=True)
class EnsembleState:
    """Where the sampler stands; pass it back to :meth:`EnsembleSampler.sample` to resume.

    Attributes
    ----------
    positions
        ``(N, W, D)`` walker positions.
    log_prob
        ``(N, W)`` log densities at ``positions`` (kept so a resume costs no evaluation).
    n_accepted
        ``(N, W)`` accepted proposals per walker since ``iteration`` 0.
    iteration
        Steps taken since the start; also the position in the random stream.
    """

    positions: tf.Tensor
    log_prob: tf.Tensor
    n_accepted: tf.Tensor
    iteration: int

    @property
    def acceptance_fraction(self) -> np.ndarray:
        """``(N,)`` mean acceptance fraction over walkers and all steps so far."""
        return np.mean(self.n_accepted.numpy(), axis=1) / max(self.iteration, 1)


Initial: TypeAlias = EnsembleState | tf.Tensor | np.ndarray
"""Where a run starts: positions ``(N, W, D)``, or a state to resume from."""


@dataclass(frozen=True)
class ChainChunk:
    """What one compiled call produced: the kept states and the state after its last step."""

    state: EnsembleState
    positions: tf.Tensor
    """``(K, N, W, D)`` positions after every ``thin``-th step."""
    log_prob: tf.Tensor
    """``(K, N, W)`` log densities at those positions."""


@dataclass(frozen=True)
class RunResult:
    """The production part of :meth:`EnsembleSampler.run`."""

    chain: np.ndarray
    """``(K, N, W, D)`` kept positions, in step order."""
    log_prob: np.ndarray
    """``(K, N, W)`` their log densities."""
    acceptance_fraction: np.ndarray
    """``(N,)`` acceptance fraction over the production steps only (burn-in excluded)."""
    state: EnsembleState

    @property
    def samples(self) -> np.ndarray:
        """``(N, K * W, D)`` pooled samples per object, the usual posterior summary input."""
        k, n, w, d = self.chain.shape
        return np.moveaxis(self.chain, 1, 0).reshape(n, k * w, d)

    def integrated_time(self, c: float = 5.0) -> np.ndarray:
        """``(N, D)`` autocorrelation time in units of *kept* steps (see :func:`integrated_time`)."""
        return integrated_time(self.chain, c=c)


class EnsembleSampler:
    """Advance N independent ensembles of W walkers with one compiled, batched loop.

    Parameters
    ----------
    log_prob_fn
        ``(N, M, D) -> (N, M)`` log density, written in TensorFlow so it compiles into the
        loop. It is called with half ensembles (``M = ceil(W / 2)`` or ``floor(W / 2)``).
    move
        The move strategy; :class:`StretchMove` with ``a=2`` by default, like emcee.
    seed
        Integer or a pair of integers; with the same seed and inputs runs are bit-identical.
    keys
        Per-object keys ``(N,)`` uint64 (:mod:`lor.seeds`), replacing ``seed``: ensemble
        ``n`` then draws from its own stream (:func:`lor.seeds.tf_uniforms`), so its chain
        does not depend on which other objects are advanced with it.
    dtype
        Float type of positions and densities. float64 by default: long chains accumulate
        acceptance decisions on density *differences*, where float32 loses resolution.
    chunk_size
        Kept states per compiled call and per yielded chunk; bounds memory at
        ``chunk_size * N * W * D`` floats and sets how often the generator checkpoints.
    jit_compile
        Compile the loop with XLA (much faster on CPU); turn off for densities using ops
        XLA does not support.
    """

    def __init__(
        self,
        log_prob_fn: LogProbFn,
        move: RedBlueMove | None = None,
        seed: int | tuple[int, int] = 0,
        *,
        keys: np.ndarray | None = None,
        dtype: tf.DType = tf.float64,
        chunk_size: int = 50,
        jit_compile: bool = True,
    ) -> None:
        if chunk_size < 1:
            raise SamplerError(f"chunk_size must be >= 1, got {chunk_size}")
        self.log_prob_fn = log_prob_fn
        self.move = StretchMove() if move is None else move
        self.dtype = tf.as_dtype(dtype)
        self.chunk_size = int(chunk_size)
        pair = (seed, 0) if np.ndim(seed) == 0 else tuple(seed)  # type: ignore[arg-type]
        self._seed = tf.constant(pair, dtype=tf.int64)
        self._keys = None if keys is None else tf.constant(np.asarray(keys, np.uint64))
        # ThreeFry is ~3x faster than Philox under XLA on CPU; TF's own kernels only do Philox.
        self._alg = "threefry" if jit_compile else "philox"
        self._advance = tf.function(self._advance_impl, jit_compile=jit_compile)

    def start(self, initial: Initial) -> EnsembleState:
        """Validate initial positions and evaluate their densities (a state passes through)."""
        if isinstance(initial, EnsembleState):
            return initial
        x = tf.convert_to_tensor(initial, dtype=self.dtype)
        if x.shape.rank != 3:
            raise SamplerError(f"initial positions must be (N, W, D), got shape {x.shape}")
        self.move.check(x.shape[1], x.shape[2])
        if not np.all(np.isfinite(x.numpy())):
            raise SamplerError("initial positions contain NaN or infinite values")
        lp = tf.cast(self.log_prob_fn(x), self.dtype)
        if lp.shape != x.shape[:2]:
            raise SamplerError(f"log_prob_fn returned shape {lp.shape}, expected {x.shape[:2]}")
        if np.any(np.isnan(lp.numpy())):
            raise SamplerError("log_prob_fn returned NaN at the initial positions")
        return EnsembleState(x, lp, tf.zeros(lp.shape, tf.int32), 0)

    def sample(self, initial: Initial, n_steps: int, thin: int = 1) -> Iterator[ChainChunk]:
        """Take ``n_steps`` steps, keeping every ``thin``-th state, one chunk at a time.

        Pass the last chunk's ``state`` back as ``initial`` to continue: the random stream
        continues too, so the pieces equal one long run. Passing raw positions restarts the
        stream at step 0 (and the acceptance counts at zero).
        """
        if n_steps < 0 or thin < 1 or n_steps % thin:
            raise SamplerError(
                f"n_steps ({n_steps}) must be a non-negative multiple of thin ({thin})"
            )
        return self._chunks(self.start(initial), n_steps // thin, thin)

    def _chunks(self, state: EnsembleState, n_kept: int, thin: int) -> Iterator[ChainChunk]:
        while n_kept > 0:
            k = min(self.chunk_size, n_kept)
            x, lp, n_acc, xs, lps = self._advance(
                state.positions, state.log_prob, state.n_accepted,
                tf.constant(state.iteration, tf.int64), tf.constant(thin, tf.int64),
                tf.constant(k, tf.int32),
            )  # fmt: skip
            state = EnsembleState(x, lp, n_acc, state.iteration + k * thin)
            n_kept -= k
            full = k == self.chunk_size  # slicing copies; worth avoiding at ~100 MB a chunk
            yield ChainChunk(state, xs if full else xs[:k], lps if full else lps[:k])

    def run(self, initial: Initial, n_burn: int, n_steps: int, thin: int = 1) -> RunResult:
        """Burn in for ``n_burn`` steps (nothing kept), then collect ``n_steps`` steps."""
        state = self.start(initial)
        for chunk in self.sample(state, n_burn, thin=max(n_burn, 1)):
            state = chunk.state
        burnt = state
        xs, lps = [], []
        for chunk in self.sample(burnt, n_steps, thin):
            xs.append(chunk.positions.numpy())
            lps.append(chunk.log_prob.numpy())
            state = chunk.state
        n, w, d = state.positions.shape
        accepted = (state.n_accepted - burnt.n_accepted).numpy()
        return RunResult(
            chain=np.concatenate(xs) if xs else np.empty((0, n, w, d)),
            log_prob=np.concatenate(lps) if lps else np.empty((0, n, w)),
            acceptance_fraction=accepted.mean(axis=1) / max(n_steps, 1),
            state=state,
        )

    def _advance_impl(
        self, x: tf.Tensor, lp: tf.Tensor, n_acc: tf.Tensor, iteration: tf.Tensor,
        thin: tf.Tensor, n_keep: tf.Tensor,
    ) -> tuple[tf.Tensor, ...]:  # fmt: skip
        """Compiled body: ``n_keep`` times (take ``thin`` steps, store the state).

        The buffers have the static size ``chunk_size`` (XLA needs static shapes) and the trip
        counts are tensors, so burn-in, thinning and the last short chunk share one compile.
        """

        shape = (2 + self.move.n_uniforms, *lp.shape)

        def uniforms(i: tf.Tensor) -> tf.Tensor:
            if self._keys is not None:  # step i: draws i*S*W .. (i+1)*S*W - 1 of each stream
                per_step = tf.constant(shape[0] * shape[2], tf.int64)
                return seeds.tf_uniforms(self._keys, i * per_step, shape, lp.dtype)
            seed = tf.random.experimental.stateless_fold_in(self._seed, i)
            return tf.random.stateless_uniform(shape, seed, dtype=lp.dtype, alg=self._alg)

        # Step i's uniforms are drawn at the end of step i - 1 and carried through the loop:
        # a loop-carried value is materialized once, whereas a draw in the same step gets
        # fused by XLA into the (N, W, W) shuffle comparisons and recomputed W times.
        def one_step(
            i: tf.Tensor, x: tf.Tensor, lp: tf.Tensor, n_acc: tf.Tensor, u: tf.Tensor
        ) -> tuple:
            x, lp, ok = self.move.step(self.log_prob_fn, x, lp, u)
            return i + 1, x, lp, n_acc + tf.cast(ok, n_acc.dtype), uniforms(i + 1)

        def keep_one(k: tf.Tensor, state: tuple, xs: tf.TensorArray, lps: tf.TensorArray) -> tuple:
            stop = state[0] + thin
            state = tf.while_loop(lambda i, *_: i < stop, one_step, state)
            return k + 1, state, xs.write(k, state[1]), lps.write(k, state[2])

        xs = tf.TensorArray(x.dtype, size=self.chunk_size, element_shape=x.shape)
        lps = tf.TensorArray(lp.dtype, size=self.chunk_size, element_shape=lp.shape)
        state = (iteration, x, lp, n_acc, uniforms(iteration))
        loop = (tf.constant(0, tf.int32), state, xs, lps)
        _, (_, x, lp, n_acc, _), xs, lps = tf.while_loop(lambda k, *_: k < n_keep, keep_one, loop)
        return x, lp, n_acc, xs.stack(), lps.stack()


def initial_ball(
    center: np.ndarray | tf.Tensor, scale: np.ndarray | tf.Tensor | float, n_walkers: int,
    seed: int = 0, dtype: tf.DType = tf.float64,
) -> tf.Tensor:  # fmt: skip
    """``(N, W, D)`` walkers drawn from ``Normal(center, scale)`` around a per-object guess.

    A small ball around a good point (a previous fit, the amortized estimate) is emcee's
    recommended start; ``scale`` (``(N, D)`` or scalar) must be > 0 so walkers are linearly
    independent.
    """
    center = tf.convert_to_tensor(center, dtype=dtype)
    scale = tf.broadcast_to(tf.convert_to_tensor(scale, dtype=dtype), tf.shape(center))
    if center.shape.rank != 2:
        raise SamplerError(f"center must be (N, D), got shape {center.shape}")
    if not np.all(scale.numpy() > 0):
        raise SamplerError("scale must be > 0 so the walkers span the parameter space")
    n, d = center.shape
    eps = tf.random.stateless_normal((n, n_walkers, d), seed=(seed, 1), dtype=dtype)
    return center[:, None, :] + scale[:, None, :] * eps


def initial_from_sampler(
    sample_fn: Callable[[int, int], np.ndarray | tf.Tensor], n_objects: int, n_walkers: int,
    seed: int = 0, dtype: tf.DType = tf.float64,
) -> tf.Tensor:  # fmt: skip
    """``(N, W, D)`` walkers from ``sample_fn(n, seed) -> (n, D)``, e.g. ``PopulationPrior.sample``.

    Starting from the prior is the safe default when no per-object guess exists: walkers are
    spread over the support and burn-in moves them to the posterior.
    """
    draws = tf.convert_to_tensor(sample_fn(n_objects * n_walkers, seed), dtype=dtype)
    if draws.shape.rank != 2 or draws.shape[0] != n_objects * n_walkers:
        raise SamplerError(
            f"sample_fn returned shape {draws.shape}, expected ({n_objects * n_walkers}, D)"
        )
    return tf.reshape(draws, (n_objects, n_walkers, draws.shape[1]))


def integrated_time(chain: np.ndarray | tf.Tensor, c: float = 5.0, block: int = 256) -> np.ndarray:
    """``(N, D)`` integrated autocorrelation time of a ``(K, N, W, D)`` chain, in steps.

    Per object this is exactly ``emcee.autocorr.integrated_time(chain[:, i], c, quiet=True)``:
    per-walker autocorrelation functions by FFT, averaged over walkers, summed up to Sokal's
    self-consistent window ``M >= c * tau``. Objects are processed ``block`` at a time to bound
    the FFT memory. The estimate is only trustworthy for chains longer than ~50 tau.
    """
    x = np.asarray(chain, dtype=np.float64)
    if x.ndim != 4 or x.shape[0] < 2:
        raise SamplerError(f"chain must be (K >= 2, N, W, D), got shape {x.shape}")
    k = x.shape[0]
    n_fft = 2 * (1 << max(k - 1, 0).bit_length())
    tau = np.empty((x.shape[1], x.shape[3]))
    for start in range(0, x.shape[1], block):
        xb = x[:, start : start + block]
        f = np.fft.rfft(xb - xb.mean(axis=0), n=n_fft, axis=0)
        acf = np.fft.irfft(f * np.conj(f), n=n_fft, axis=0)[:k]
        with np.errstate(invalid="ignore", divide="ignore"):
            acf = (acf / acf[0]).mean(axis=2)  # (K, n_block, D)
        taus = 2.0 * np.cumsum(acf, axis=0) - 1.0
        m = np.arange(k)[:, None, None] < c * taus
        window = np.where(m.any(axis=0), np.argmin(m, axis=0), k - 1)
        tau[start : start + block] = np.take_along_axis(taus, window[None], axis=0)[0]
    return tau


def mcmc_posterior_samples(
    emulator: Any,
    prior: PopulationPrior,
    rep: PosteriorRepresentation,
    params: np.ndarray,
    flux: np.ndarray,
    flux_err: np.ndarray,
    n_walkers: int = 32,
    n_burn: int = 1000,
    n_steps: int = 1000,
    thin: int = 10,
    seed: int | np.ndarray = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """MCMC (emulator likelihood x prior) started from the amortized posterior's samples.

    The processor's fallback for objects the estimator cannot handle, and the reference the
    benches and validation compare the estimator against. ``seed``: an integer, or ``(N,)``
    per-object keys (:mod:`lor.seeds`; the processors' fallback), with which each object's
    start and moves come from its own streams, independent of the other objects. Returns
    pooled samples (N, S, D) and the per-object acceptance fraction.
    """
    from lor.inference.likelihood import PhotometricPosterior

    usable = np.isfinite(flux) & np.isfinite(flux_err) & (flux_err > 0)
    target = PhotometricPosterior(emulator, prior, flux, flux_err, usable)
    if np.ndim(seed) == 1:
        keys = np.asarray(seed, np.uint64)
        start = rep.sample(params, n_walkers, seeds.stream_keys(keys, seeds.MCMC_START))
        sampler = EnsembleSampler(target, keys=seeds.stream_keys(keys, seeds.MCMC_STEPS))
    else:
        start = rep.sample(params, n_walkers, int(seed))
        sampler = EnsembleSampler(target, seed=int(seed))
    margin = 1e-6 * (emulator.box_hi - emulator.box_lo)
    start = np.clip(
        np.asarray(start, np.float64), emulator.box_lo + margin, emulator.box_hi - margin
    )
    result = sampler.run(start, n_burn, n_steps, thin)
    return result.samples, result.acceptance_fraction
