"""Tests for the batched ensemble sampler: statistics against known posteriors and emcee,
support handling, reproducibility and resumption.

Every statistical check goes through one harness, :func:`assert_consistent`: a statistic
passes when it is within ``max(floor, N_SIGMA * combined Monte-Carlo error)`` of the
reference. Monte-Carlo errors are honest for correlated chains: the mean's from the
integrated autocorrelation time (``sigma * sqrt(tau / n)``), the std's and quantiles' from
batch means over contiguous blocks of steps. All runs are seeded, so the tests are
deterministic; the tolerances say how unlucky a seed would have to be to fail.
"""

from __future__ import annotations

from dataclasses import dataclass

import emcee
import numpy as np
import pytest
import tensorflow as tf
from scipy import stats

from lor.errors import LorError
from lor.inference.mcmc import (
    EnsembleSampler,
    EnsembleState,
    SamplerError,
    StretchMove,
    initial_ball,
    initial_from_sampler,
    integrated_time,
)

N_SIGMA = 4.0
"""Monte-Carlo standard errors a statistic may be off by (two-sided p ~ 6e-5 each)."""
QUANTILES = np.array([0.16, 0.5, 0.84])
N_BATCHES = 20


# ---------------------------------------------------------------- the shared harness


@dataclass(frozen=True)
class Summary:
    """Per-object posterior summaries ``(N, D)`` (quantiles ``(Q, N, D)``) and their errors."""

    mean: np.ndarray
    std: np.ndarray
    quantiles: np.ndarray
    mean_se: np.ndarray
    std_se: np.ndarray
    quantiles_se: np.ndarray

    @classmethod
    def exact(cls, mean: np.ndarray, std: np.ndarray, quantiles: np.ndarray) -> Summary:
        zero = np.zeros_like(mean)
        return cls(mean, std, quantiles, zero, zero, np.zeros_like(quantiles))


def summarize(chain: np.ndarray) -> Summary:
    """Summaries of a ``(K, N, W, D)`` chain with autocorrelation-aware standard errors."""
    k, n, w, d = chain.shape
    pooled = np.moveaxis(chain, 1, 0).reshape(n, k * w, d)
    tau = np.maximum(integrated_time(chain), 1.0)
    std = pooled.std(axis=1)
    batches = chain[: k - k % N_BATCHES].reshape(N_BATCHES, -1, n, w, d)
    batches = np.moveaxis(batches, 2, 1).reshape(N_BATCHES, n, -1, d)
    b_std = batches.std(axis=2)
    b_q = np.quantile(batches, QUANTILES, axis=2)  # (Q, B, N, D)
    return Summary(
        mean=pooled.mean(axis=1),
        std=std,
        quantiles=np.quantile(pooled, QUANTILES, axis=1),
        mean_se=std * np.sqrt(tau / (k * w)),
        std_se=b_std.std(axis=0, ddof=1) / np.sqrt(N_BATCHES),
        quantiles_se=b_q.std(axis=1, ddof=1) / np.sqrt(N_BATCHES),
    )


def assert_consistent(
    got: Summary, want: Summary, *, mean_floor: np.ndarray | float = 0.0,
    std_rtol: float = 0.0, quantile_floor: np.ndarray | float = 0.0,
) -> None:  # fmt: skip
    """Each statistic within ``max(floor, N_SIGMA * sqrt(se_got**2 + se_want**2))``."""
    checks = [
        ("mean", got.mean, want.mean, got.mean_se, want.mean_se, mean_floor),
        ("std", got.std, want.std, got.std_se, want.std_se, std_rtol * want.std),
        (
            "quantiles",
            got.quantiles,
            want.quantiles,
            got.quantiles_se,
            want.quantiles_se,
            quantile_floor,
        ),
    ]
    for name, a, b, se_a, se_b, floor in checks:
        tol = np.maximum(floor, N_SIGMA * np.hypot(se_a, se_b))
        excess = np.abs(a - b) / tol
        assert np.all(excess <= 1.0), (
            f"{name}: worst |got - want| is {excess.max():.2f} x tolerance at "
            f"{np.unravel_index(excess.argmax(), excess.shape)}; got {a.ravel()[excess.argmax()]:.4g}, "
            f"want {b.ravel()[excess.argmax()]:.4g}, tol {tol.ravel()[excess.argmax()]:.3g}"
        )


# ---------------------------------------------------------------- targets


def gaussian_batch(n: int, d: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Means and covariances per object, from nearly isotropic to condition number 1e6."""
    rng = np.random.default_rng(seed)
    means = rng.normal(0.0, 10.0, size=(n, d))
    covs = np.empty((n, d, d))
    for i in range(n):
        q, _ = np.linalg.qr(rng.normal(size=(d, d)))
        scales = np.logspace(0.0, 3.0 * i / max(n - 1, 1), d) * rng.uniform(0.1, 10.0)
        covs[i] = (q * scales**2) @ q.T
    return means, covs


def gaussian_log_prob(means: np.ndarray, covs: np.ndarray):  # type: ignore[no-untyped-def]
    prec = tf.constant(np.linalg.inv(covs))
    mu = tf.constant(means)

    def log_prob(theta: tf.Tensor) -> tf.Tensor:
        r = theta - mu[:, None, :]
        return -0.5 * tf.reduce_sum(tf.matmul(r, prec) * r, axis=-1)

    return log_prob


# Per object: banana curvature b, scales s1 and s2, box [lo, hi] (infinite: no box).
BANANA = {
    "b": np.array([1.0, 0.5, 0.3]),
    "s1": np.array([1.0, 2.0, 1.0]),
    "s2": np.array([1.0, 0.5, 1.0]),
    "lo": np.array([[-np.inf, -np.inf], [-np.inf, -np.inf], [-1.0, -1.5]]),
    "hi": np.array([[np.inf, np.inf], [np.inf, np.inf], [2.0, 1.0]]),
}


def banana_log_prob_np(x: np.ndarray, i: int) -> np.ndarray:
    """``(W, 2)`` -> ``(W,)`` for object ``i``, in numpy for emcee."""
    b, s1, s2 = BANANA["b"][i], BANANA["s1"][i], BANANA["s2"][i]
    y2 = (x[:, 1] - b * (x[:, 0] ** 2 - s1**2)) / s2
    lp = -0.5 * ((x[:, 0] / s1) ** 2 + y2**2)
    inside = np.all((x >= BANANA["lo"][i]) & (x <= BANANA["hi"][i]), axis=1)
    return np.where(inside, lp, -np.inf)


def banana_log_prob(x: tf.Tensor) -> tf.Tensor:
    """The same three targets, batched: ``(3, M, 2)`` -> ``(3, M)``."""
    b, s1, s2 = (tf.constant(BANANA[k])[:, None] for k in ("b", "s1", "s2"))
    y2 = (x[..., 1] - b * (x[..., 0] ** 2 - s1**2)) / s2
    lp = -0.5 * ((x[..., 0] / s1) ** 2 + y2**2)
    lo, hi = tf.constant(BANANA["lo"])[:, None], tf.constant(BANANA["hi"])[:, None]
    inside = tf.reduce_all((x >= lo) & (x <= hi), axis=-1)
    return tf.where(inside, lp, tf.constant(-np.inf, tf.float64))


# ---------------------------------------------------------------- statistical tests


def test_recovers_correlated_gaussians() -> None:
    n, w, d = 6, 32, 8
    means, covs = gaussian_batch(n, d, seed=11)
    sigma = np.sqrt(np.diagonal(covs, axis1=1, axis2=2))
    sampler = EnsembleSampler(gaussian_log_prob(means, covs), seed=3, chunk_size=500)
    start = initial_ball(means, 0.1 * sigma, w, seed=4)
    result = sampler.run(start, n_burn=1000, n_steps=8000, thin=4)

    got = summarize(result.chain)
    truth = Summary.exact(means, sigma, means + sigma * stats.norm.ppf(QUANTILES)[:, None, None])
    assert_consistent(got, truth, mean_floor=0.1 * sigma, std_rtol=0.10, quantile_floor=0.1 * sigma)
    # The run is long enough that the 0.1 sigma / 10 % bounds, not the MC allowance, decide.
    assert np.all(N_SIGMA * got.mean_se <= 0.1 * sigma)
    assert np.all((result.acceptance_fraction > 0.15) & (result.acceptance_fraction < 0.5))


@pytest.fixture(scope="module")
def banana_runs() -> tuple[emcee.EnsembleSampler, list, np.ndarray]:
    """Our batched run and one emcee run per object, same walkers, steps and thinning."""
    w, n_burn, n_steps, thin = 32, 1000, 12000, 4
    start = initial_ball(np.array([[0.0, 0.0], [0.0, 0.0], [0.5, 0.0]]), 0.1, w, seed=8)
    ours = EnsembleSampler(banana_log_prob, seed=5, chunk_size=1000).run(
        start, n_burn, n_steps, thin
    )
    theirs = []
    for i in range(3):
        ref = emcee.EnsembleSampler(w, 2, banana_log_prob_np, args=(i,), vectorize=True)
        seeded = emcee.State(
            start[i].numpy(), random_state=np.random.RandomState(100 + i).get_state()
        )
        ref.run_mcmc(seeded, n_burn + n_steps)
        theirs.append(ref)
    return ours, theirs, np.stack([r.get_chain(discard=n_burn, thin=thin) for r in theirs], axis=1)


def test_matches_emcee_on_banana_and_bounded_targets(banana_runs) -> None:  # type: ignore[no-untyped-def]
    ours, theirs, their_chain = banana_runs
    assert_consistent(summarize(ours.chain), summarize(their_chain))
    their_acceptance = np.array([r.acceptance_fraction.mean() for r in theirs])
    np.testing.assert_allclose(ours.acceptance_fraction, their_acceptance, atol=0.02)


def test_integrated_time_matches_emcee(banana_runs) -> None:  # type: ignore[no-untyped-def]
    ours = banana_runs[0]
    tau = integrated_time(ours.chain)
    for i in range(tau.shape[0]):
        want = emcee.autocorr.integrated_time(ours.chain[:, i], quiet=True)
        np.testing.assert_allclose(tau[i], want, rtol=1e-8)
    np.testing.assert_allclose(ours.integrated_time(), tau)


# ---------------------------------------------------------------- support, seeds, resumption


@pytest.mark.parametrize(("outside", "jit"), [(-np.inf, True), (np.nan, True), (-np.inf, False)])
def test_never_accepts_outside_support(outside: float, jit: bool) -> None:
    """A narrow box (most proposals land outside): no kept state ever leaves it, with -inf or
    NaN outside, compiled by XLA or not."""
    lo, hi = np.array([0.0, -1.0, 2.0]), np.array([0.1, 1.0, 2.05])

    def log_prob(x: tf.Tensor) -> tf.Tensor:
        inside = tf.reduce_all((x >= lo) & (x <= hi), axis=-1)
        return tf.where(inside, -tf.reduce_sum(x**2, axis=-1), tf.constant(outside, tf.float64))

    start = initial_ball(np.tile((lo + hi) / 2, (4, 1)), (hi - lo) / 10, 8, seed=1)
    result = EnsembleSampler(log_prob, seed=2, jit_compile=jit).run(start, n_burn=0, n_steps=300)
    assert np.all((result.chain >= lo) & (result.chain <= hi))
    assert np.all(np.isfinite(result.log_prob))
    np.testing.assert_allclose(result.log_prob, -np.sum(result.chain**2, axis=-1))
    assert np.all(result.acceptance_fraction > 0.05)  # it does move, inside


def _small_problem() -> tuple[tf.Tensor, EnsembleSampler]:
    means, covs = gaussian_batch(3, 2, seed=1)
    start = initial_ball(means, 0.5, 6, seed=0)
    return start, EnsembleSampler(gaussian_log_prob(means, covs), seed=7, chunk_size=7)


def test_same_seed_same_chain_and_other_seed_differs() -> None:
    start, sampler = _small_problem()
    a = sampler.run(start, n_burn=10, n_steps=40, thin=2)
    b = EnsembleSampler(sampler.log_prob_fn, seed=7, chunk_size=7).run(start, 10, 40, 2)
    c = EnsembleSampler(sampler.log_prob_fn, seed=8, chunk_size=7).run(start, 10, 40, 2)
    np.testing.assert_array_equal(a.chain, b.chain)
    np.testing.assert_array_equal(a.acceptance_fraction, b.acceptance_fraction)
    assert not np.allclose(a.chain, c.chain)


def test_resumed_generator_equals_one_long_run() -> None:
    start, sampler = _small_problem()
    whole = [c.positions.numpy() for c in sampler.sample(start, 60, thin=3)]
    first = list(sampler.sample(start, 30, thin=3))
    second = list(sampler.sample(first[-1].state, 30, thin=3))
    pieces = [c.positions.numpy() for c in first + second]
    np.testing.assert_array_equal(np.concatenate(pieces), np.concatenate(whole))
    assert second[-1].state.iteration == 60
    np.testing.assert_array_equal(
        second[-1].state.n_accepted, list(sampler.sample(start, 60, 3))[-1].state.n_accepted
    )
    # chunk_size changes only how often the generator yields, not the chain
    rechunked = EnsembleSampler(sampler.log_prob_fn, seed=7, chunk_size=4)
    rechunked_chain = np.concatenate([c.positions for c in rechunked.sample(start, 60, 3)])
    np.testing.assert_array_equal(rechunked_chain, np.concatenate(whole))


def test_chunks_report_consistent_state() -> None:
    start, sampler = _small_problem()
    chunks = list(sampler.sample(start, 20))
    assert [c.positions.shape[0] for c in chunks] == [7, 7, 6]
    last = chunks[-1]
    np.testing.assert_array_equal(last.positions[-1], last.state.positions)
    np.testing.assert_allclose(last.state.log_prob, sampler.log_prob_fn(last.state.positions))
    assert last.state.acceptance_fraction.shape == (3,)
    assert np.all(last.state.n_accepted.numpy() <= 20)


# ---------------------------------------------------------------- initialisation and input errors


def test_initial_helpers() -> None:
    center = np.array([[0.0, 10.0], [5.0, -5.0]])
    ball = initial_ball(center, np.array([[1.0, 2.0], [0.1, 0.1]]), 4000, seed=3)
    assert ball.shape == (2, 4000, 2) and ball.dtype == tf.float64
    np.testing.assert_allclose(ball.numpy().std(axis=1), [[1.0, 2.0], [0.1, 0.1]], rtol=0.05)
    np.testing.assert_array_equal(
        ball, initial_ball(center, np.array([[1.0, 2.0], [0.1, 0.1]]), 4000, seed=3)
    )

    def prior_sample(n: int, seed: int) -> np.ndarray:
        return np.random.default_rng(seed).uniform(size=(n, 3))

    walkers = initial_from_sampler(prior_sample, n_objects=5, n_walkers=8, seed=2)
    assert walkers.shape == (5, 8, 3)
    np.testing.assert_array_equal(walkers.numpy().reshape(40, 3), prior_sample(40, 2))


def test_bad_input_raises_named_errors() -> None:
    start, sampler = _small_problem()
    assert issubclass(SamplerError, LorError)
    with pytest.raises(SamplerError, match="walkers"):
        sampler.start(start[:, :3])
    with pytest.raises(SamplerError, match="multiple of thin"):
        sampler.sample(start, 10, thin=3)
    with pytest.raises(SamplerError, match="NaN"):
        EnsembleSampler(lambda x: tf.fill(tf.shape(x)[:2], np.nan)).start(start)
    with pytest.raises(SamplerError, match="a must be > 1"):
        StretchMove(a=1.0)
    with pytest.raises(SamplerError, match="scale must be > 0"):
        initial_ball(np.zeros((2, 2)), 0.0, 4)
    # fewer walkers than 2 D is allowed only when asked for
    state = EnsembleSampler(sampler.log_prob_fn, StretchMove(live_dangerously=True)).start(
        start[:, :3]
    )
    assert isinstance(state, EnsembleState)
