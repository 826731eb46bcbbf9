"""Contract tests over every registered posterior representation (pzflow's bijector tests are
the model): each check runs on each ``(name, version)`` of
:func:`lor.posteriors.registry.representations`, so a new representation is tested by
adding it to the registry.

Every representation is built as ``cls(box_lo=..., box_hi=...)`` over the production box
(its other knobs at their defaults), and its test posteriors come from its own ``encode`` of
seeded draws: nothing here knows a stored layout.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats
from scipy.stats import qmc

from lor.posteriors.base import (
    REDSHIFT_INDEX,
    SUMMARY_COLUMNS,
    AmortizedRepresentation,
    GaussianComponents,
    Marginal,
    PosteriorRepresentation,
    RepresentationError,
    SelfDescribing,
)
from lor.posteriors.registry import from_row, from_spec, get_representation, representations
from lor.sps.parameters import box_arrays, default_training_box

KEYS = sorted(representations())
N_OBJECTS = 6


@pytest.fixture(scope="module", params=KEYS, ids=["-v".join(k) for k in KEYS])
def rep(request: pytest.FixtureRequest) -> PosteriorRepresentation:
    lo, hi = box_arrays(default_training_box())
    return representations()[request.param](box_lo=lo, box_hi=hi)


def _box(rep: PosteriorRepresentation) -> tuple[np.ndarray, np.ndarray]:
    lo, hi = box_arrays(default_training_box())
    return np.asarray(lo, np.float64), np.asarray(hi, np.float64)


def _draws(rep: PosteriorRepresentation, n_obj: int, n: int, seed: int) -> np.ndarray:
    """Seeded draws ``(n_obj, n, D)`` strictly inside the box: per object, a correlated
    Gaussian blob in logit-of-box coordinates, of widths from narrow to broad, some with two
    modes in redshift."""
    lo, hi = _box(rep)
    rng = np.random.default_rng(seed)
    d = lo.size
    out = np.empty((n_obj, n, d))
    for i in range(n_obj):
        centre = rng.uniform(-1.5, 1.5, d)
        width = rng.uniform(0.05, 0.6, d)
        mix = rng.normal(size=(d, d)) * 0.2 + np.eye(d)
        u = centre + (rng.normal(size=(n, d)) @ mix) * width
        if i % 2:
            u[: n // 3, REDSHIFT_INDEX] += 2.0  # a second redshift mode
        out[i] = lo + (hi - lo) / (1.0 + np.exp(-u))
    return out


@pytest.fixture(scope="module")
def params(rep: PosteriorRepresentation) -> np.ndarray:
    return rep.encode(_draws(rep, N_OBJECTS, 2000, seed=1))


def test_satisfies_the_protocol_and_its_registry_key(rep: PosteriorRepresentation) -> None:
    assert isinstance(rep, PosteriorRepresentation)
    assert representations()[(rep.name, str(rep.version))] is type(rep)
    assert rep.n_dim == _box(rep)[0].size and rep.floats_per_object > 0


def test_shapes(rep: PosteriorRepresentation, params: np.ndarray) -> None:
    n, d = N_OBJECTS, rep.n_dim
    assert params.shape == (n, rep.floats_per_object) and params.dtype == np.float32
    assert rep.validate(params).shape == (n, rep.floats_per_object)
    assert rep.validate(params[0]).shape == (1, rep.floats_per_object)
    assert rep.sample(params, 7, seed=0).shape == (n, 7, d)
    assert rep.log_prob(params, rep.sample(params, 1, seed=0)[:, 0]).shape == (n,)
    assert rep.log_prob(params, rep.sample(params, 5, seed=0)).shape == (n, 5)
    assert rep.z_pdf(params, 0.5).shape == (n,)
    assert rep.z_pdf(params, np.full(n, 0.5)).shape == (n,)
    assert rep.z_cdf(params, np.linspace(0.1, 2.0, 11)[None, :]).shape == (n, 11)
    assert rep.z_quantile(params, np.full((n, 3), 0.5)).shape == (n, 3)
    assert rep.z_prob(params, 0.2, 0.8).shape == (n,)
    points = qmc.Sobol(4, scramble=True, seed=0).random_base2(5)
    assert rep.sample_at(params, points, 3).shape == (n, 32, 3)
    low, high = rep.edge_mass(params, 0.01)
    assert low.shape == high.shape == (n, d)
    assert rep.candidates(params).shape[::2] == (n, d)
    summaries = rep.summaries(params)
    assert list(summaries) == list(SUMMARY_COLUMNS)
    assert all(v.shape == (n,) for v in summaries.values())
    assert isinstance(rep.marginal(params, 1), Marginal)
    assert tuple(rep.decode(params).batch_shape) == (n,)
    assert tuple(rep.decode(params).event_shape) == (d,)


def test_malformed_params_are_refused(rep: PosteriorRepresentation, params: np.ndarray) -> None:
    with pytest.raises(RepresentationError):
        rep.validate(params[:, :-1])
    bad = params.copy()
    bad[2, -1] = np.nan
    with pytest.raises(RepresentationError):
        rep.validate(bad)


def test_config_round_trip_through_the_registry(
    rep: PosteriorRepresentation, params: np.ndarray
) -> None:
    """A spec stored as JSON rebuilds a representation with identical outputs."""
    record = json.loads(
        json.dumps({"name": rep.name, "version": rep.version, "config": rep.config()})
    )
    again = from_spec(record)
    assert type(again) is type(rep) and again.config() == rep.config()
    theta = rep.sample(params, 50, seed=3)
    np.testing.assert_array_equal(again.log_prob(params, theta), rep.log_prob(params, theta))
    np.testing.assert_array_equal(again.sample(params, 50, seed=3), theta)
    assert get_representation(rep.name, rep.version, **record["config"]).config() == rep.config()
    with pytest.raises(RepresentationError, match="unknown"):
        get_representation(rep.name, "no-such-version")
    with pytest.raises(RepresentationError, match="bad configuration"):
        get_representation(rep.name, rep.version, no_such_knob=1)


def test_self_describing_rows_rebuild_the_redshift_marginal(
    rep: PosteriorRepresentation, params: np.ndarray
) -> None:
    if not isinstance(type(rep), SelfDescribing):
        with pytest.raises(RepresentationError, match="do not describe themselves"):
            from_row(rep.name, rep.version, params[0])
        return
    reader = from_row(rep.name, rep.version, params[0])
    grid = np.linspace(0.02, 3.9, 50)[None, :]
    np.testing.assert_allclose(reader.z_pdf(params, grid), rep.z_pdf(params, grid), rtol=1e-12)


def test_sampling_is_reproducible_and_inside_the_box(
    rep: PosteriorRepresentation, params: np.ndarray
) -> None:
    lo, hi = _box(rep)
    a = rep.sample(params, 500, seed=5)
    np.testing.assert_array_equal(a, rep.sample(params, 500, seed=5))
    assert not np.array_equal(a, rep.sample(params, 500, seed=6))
    assert np.all((a > lo) & (a < hi))
    assert np.all(np.isfinite(rep.log_prob(params, a)))


def test_log_prob_is_outside_the_box_minus_infinity(
    rep: PosteriorRepresentation, params: np.ndarray
) -> None:
    lo, _ = _box(rep)
    theta = rep.sample(params, 1, seed=0)[:, 0]
    theta[:, REDSHIFT_INDEX] = lo[REDSHIFT_INDEX] - 1.0
    assert np.all(rep.log_prob(params, theta) == -np.inf)


def test_log_prob_agrees_with_decode(rep: PosteriorRepresentation, params: np.ndarray) -> None:
    theta = rep.sample(params, 20, seed=8)
    tfp_log_prob = rep.decode(params).log_prob(np.swapaxes(theta, 0, 1)).numpy().T
    np.testing.assert_allclose(rep.log_prob(params, theta), tfp_log_prob, rtol=1e-6, atol=1e-6)


def test_samples_and_log_prob_satisfy_steins_identity(
    rep: PosteriorRepresentation, params: np.ndarray
) -> None:
    """``E_q[f grad log q + grad f] = 0`` for ``f = (theta - lo)(hi - theta)`` (zero on the box
    edges): ties log_prob to the sampler in every coordinate, whatever the representation.
    Gradients by central differences; the bound is 6 Monte Carlo standard errors."""
    lo, hi = _box(rep)
    theta = rep.sample(params, 4000, seed=11)
    n, m, d = theta.shape
    for dim in range(d):
        h = 1e-6 * (hi[dim] - lo[dim])
        up, down = theta.copy(), theta.copy()
        up[..., dim] += h
        down[..., dim] -= h
        score = (rep.log_prob(params, up) - rep.log_prob(params, down)) / (2 * h)
        x = theta[..., dim]
        f, df = (x - lo[dim]) * (hi[dim] - x), lo[dim] + hi[dim] - 2 * x
        terms = f * score + df
        mean, err = terms.mean(axis=1), terms.std(axis=1) / np.sqrt(m)
        assert np.all(np.abs(mean) < 6 * err), (dim, mean, err)


def test_redshift_marginal_is_a_normalised_density_matching_the_samples(
    rep: PosteriorRepresentation, params: np.ndarray
) -> None:
    lo, hi = _box(rep)
    grid = np.linspace(lo[REDSHIFT_INDEX], hi[REDSHIFT_INDEX], 40001)
    pdf = rep.z_pdf(params, grid[None, :])
    np.testing.assert_allclose(np.trapezoid(pdf, grid, axis=1), 1.0, atol=2e-3)
    cdf = rep.z_cdf(params, grid[None, ::400])
    integral = np.concatenate(
        [np.zeros((len(params), 1)), np.cumsum((pdf[:, 1:] + pdf[:, :-1]) / 2 * np.diff(grid), 1)],
        axis=1,
    )[:, ::400]
    np.testing.assert_allclose(cdf, integral, atol=2e-3)
    q = np.array([[0.025, 0.16, 0.5, 0.84, 0.975]])
    np.testing.assert_allclose(
        rep.z_cdf(params, rep.z_quantile(params, q)),
        np.broadcast_to(q, (len(params), 5)),
        atol=1e-8,
    )
    np.testing.assert_allclose(
        rep.z_prob(params, 0.3, 1.1), rep.z_cdf(params, 1.1) - rep.z_cdf(params, 0.3), atol=1e-12
    )
    # Samples' redshifts through the CDF are uniform (PIT), object by object.
    z = rep.sample(params, 3000, seed=13)[:, :, REDSHIFT_INDEX]
    for i in range(len(params)):
        pit = rep.z_cdf(params[i : i + 1], z[i : i + 1])[0]
        assert stats.kstest(pit, "uniform").pvalue > 1e-3, i


def test_every_marginal_matches_the_samples(
    rep: PosteriorRepresentation, params: np.ndarray
) -> None:
    theta = rep.sample(params, 3000, seed=17)
    for dim in range(rep.n_dim):
        marginal = rep.marginal(params, dim)
        pit = marginal.cdf(theta[:, :, dim])
        for i in range(len(params)):
            assert stats.kstest(pit[i], "uniform").pvalue > 1e-3, (dim, i)
        q = np.full((len(params), 1), 0.3)
        np.testing.assert_allclose(marginal.cdf(marginal.quantile(q)), q, atol=1e-8)


def test_encode_recovers_the_distribution_it_compresses(rep: PosteriorRepresentation) -> None:
    """Draws from a stored posterior, encoded again, give back its redshift quantiles (to a
    small fraction of the posterior's width); equal weights are no weights."""
    first = rep.encode(_draws(rep, 4, 3000, seed=21))
    theta = rep.sample(first, 4000, seed=22)
    again = rep.encode(theta)
    q = np.array([[0.16, 0.5, 0.84]])
    before, after = rep.z_quantile(first, q), rep.z_quantile(again, q)
    width = before[:, 2] - before[:, 0]
    assert np.all(np.abs(after - before) < 0.1 * width[:, None])
    np.testing.assert_array_equal(rep.encode(theta, np.ones(theta.shape[:2])), again)


def test_sample_at_is_deterministic_and_draws_from_the_posterior(
    rep: PosteriorRepresentation, params: np.ndarray
) -> None:
    lo, hi = _box(rep)
    points = qmc.Sobol(1 + 3, scramble=True, seed=0).random_base2(12)
    draws = rep.sample_at(params, points, 3)
    np.testing.assert_array_equal(draws, rep.sample_at(params, points, 3))
    assert np.all((draws > lo[:3]) & (draws < hi[:3]))
    pit = rep.z_cdf(params, draws[:, :, REDSHIFT_INDEX].astype(np.float64))
    for i in range(len(params)):  # low-discrepancy points: far closer to uniform than random
        assert stats.kstest(pit[i], "uniform").statistic < 0.01, i


def test_edge_mass_matches_the_samples(rep: PosteriorRepresentation, params: np.ndarray) -> None:
    lo, hi = _box(rep)
    fraction = 0.2
    low, high = rep.edge_mass(params, fraction)
    theta = rep.sample(params, 20000, seed=23)
    near_low = (theta < lo + fraction * (hi - lo)).mean(axis=1)
    near_high = (theta > hi - fraction * (hi - lo)).mean(axis=1)
    assert np.all((low >= 0) & (low <= 1) & (high >= 0) & (high <= 1))
    # 20000 draws: standard error at most 0.0036; the bound is 5 of them.
    np.testing.assert_allclose(low, near_low, atol=0.018)
    np.testing.assert_allclose(high, near_high, atol=0.018)


def test_candidates_are_high_density_points(
    rep: PosteriorRepresentation, params: np.ndarray
) -> None:
    lo, hi = _box(rep)
    points = rep.candidates(params)
    assert np.all((points > lo) & (points < hi))
    best = rep.log_prob(params, points[:, 0])
    typical = np.median(rep.log_prob(params, rep.sample(params, 1000, seed=29)), axis=1)
    assert np.all(best > typical)


def test_summaries_agree_with_the_marginals(
    rep: PosteriorRepresentation, params: np.ndarray
) -> None:
    s = rep.summaries(params)
    np.testing.assert_allclose(s["z_q50"], rep.z_quantile(params, 0.5), rtol=1e-6)
    np.testing.assert_allclose(
        s["log_mstar_q16"], rep.marginal(params, 1).quantile(0.16), rtol=1e-6
    )
    assert np.all(np.isnan(s["log_sfr_mean"]))  # no derived quantities given
    # A derived quantity that is log_mstar shifted: its sample median (512 draws, standard
    # error ~0.055 sigma) against the analytic one, within 5 standard errors.
    with_sfr = rep.summaries(params, lambda t: {"log_sfr": t[:, 1] - 9.0}, n_samples=512)
    sigma = (s["log_mstar_q84"] - s["log_mstar_q16"]) / 2
    assert np.all(np.abs(with_sfr["log_sfr_q50"] - (s["log_mstar_q50"] - 9.0)) < 0.28 * sigma)


def test_amortized_output_layer(rep: PosteriorRepresentation) -> None:
    """A representation an estimator can output: every raw network output is a valid
    posterior, the training objective is finite with finite gradients, and the width
    multiplier widens exactly the parameter it is asked to."""
    if not isinstance(rep, AmortizedRepresentation):
        pytest.skip(f"{rep.name} v{rep.version} is not an estimator output")
    import tensorflow as tf

    raw = tf.Variable(np.random.default_rng(0).normal(0, 0.5, (8, rep.n_raw)).astype(np.float32))
    with tf.GradientTape() as tape:
        params = rep.from_network_outputs(raw)
        theta = rep.sample(rep.validate(params.numpy()), 1, seed=1)[:, 0]
        loss = -tf.reduce_mean(rep.u_log_prob(params, rep.to_u(theta).astype(np.float32)))
    assert np.isfinite(loss.numpy())
    assert np.all(np.isfinite(tape.gradient(loss, raw).numpy()))
    p = rep.validate(params.numpy())
    np.testing.assert_array_equal(rep.width_multiplier(np.ones(rep.n_dim)), 1.0)
    scale = np.ones(rep.n_dim)
    scale[3] = 2.0
    wide = p * rep.width_multiplier(scale)
    spread = [rep.sample(x, 4000, seed=2).std(axis=1) for x in (p, wide)]
    ratio = spread[1] / spread[0]
    assert np.all(ratio[:, 3] > 1.3)
    np.testing.assert_allclose(np.delete(ratio, 3, axis=1), 1.0, atol=0.15)


def test_gaussian_components_pack_and_unpack(
    rep: PosteriorRepresentation, params: np.ndarray
) -> None:
    if not isinstance(rep, GaussianComponents):
        pytest.skip(f"{rep.name} v{rep.version} is not a Gaussian mixture")
    logits, means, chol = rep.unpack(params)
    k, d = rep.n_components, rep.n_dim
    assert logits.shape == (N_OBJECTS, k) and means.shape == (N_OBJECTS, k, d)
    assert chol.shape == (N_OBJECTS, k, d, d)
    np.testing.assert_array_equal(np.triu(chol, 1), 0.0)
    np.testing.assert_array_equal(rep.pack(logits, means, chol), params)
