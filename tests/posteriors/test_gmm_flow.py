"""Contract tests of the gmm_flow representation.

Every statistical test is seeded and states its tolerance; Monte Carlo tolerances are a
stated number of standard errors of the estimate they check.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import integrate, optimize, stats

from lor.posteriors import (
    SUMMARY_COLUMNS,
    GaussianMixtureFlow,
    RepresentationError,
    get_representation,
    representations,
)
from lor.posteriors.synthetic import random_mixture, random_params


def test_floats_per_object_fits_the_row_budget(flow: GaussianMixtureFlow) -> None:
    assert flow.floats_per_object == 184 <= 200
    for d, k in [(2, 1), (3, 2), (7, 4), (8, 5)]:
        shape = GaussianMixtureFlow(np.zeros(d), np.ones(d), k)
        assert shape.floats_per_object == 4 + k * (1 + d + d * (d + 1) // 2)
        assert shape.n_raw == shape.floats_per_object - 4


def test_pack_unpack_round_trip_numpy_and_tf(flow: GaussianMixtureFlow) -> None:
    import tensorflow as tf

    logits, means, chol = random_mixture(6, 4, 8, seed=1)
    packed = flow.pack(logits, means, chol)
    assert packed.dtype == np.float32 and packed.shape == (6, 184)
    np.testing.assert_array_equal(packed[:, :4], [[4, 8, np.float32(0.01), 4.0]] * 6)
    l2, m2, c2 = flow.unpack(packed)
    np.testing.assert_array_equal(l2, logits.astype(np.float32))
    np.testing.assert_array_equal(m2, means.astype(np.float32))
    np.testing.assert_array_equal(c2, np.tril(chol).astype(np.float32))
    np.testing.assert_array_equal(flow.pack(l2, m2, c2), packed)
    # Row-major packing of the lower triangle: L00, L10, L11, L20, ...
    first = packed[0, 4 + 4 + 32 :][:6]
    np.testing.assert_array_equal(first, c2[0, 0][[0, 1, 1, 2, 2, 2], [0, 0, 1, 0, 1, 2]])

    tl, tm, tc = flow.unpack(tf.constant(packed))
    np.testing.assert_array_equal(tc.numpy(), c2)
    np.testing.assert_array_equal(tm.numpy(), m2)
    np.testing.assert_array_equal(flow.pack(tl, tm, tc).numpy(), packed)


def test_validate_rejects_malformed_params(flow: GaussianMixtureFlow, params: np.ndarray) -> None:
    flow.validate(params)
    bad_header = params.copy()
    bad_header[0, 0] = 3
    neg_diag = params.copy()
    neg_diag[1, 4 + 4 + 32] = -0.1  # L00 of component 0
    nan = params.copy()
    nan[2, 50] = np.nan
    for bad, match in [
        (bad_header, "header"),
        (neg_diag, "positive"),
        (nan, "NaN"),
        (params[:, :-1], "shape"),
    ]:
        with pytest.raises(RepresentationError, match=match):
            flow.validate(bad)
    other_box = GaussianMixtureFlow(np.r_[0.0, flow.box_lo[1:]], flow.box_hi, 4)
    with pytest.raises(RepresentationError, match="header"):
        other_box.z_cdf(params, 1.0)


def test_registry_rebuilds_from_stored_name_version_and_config(
    flow: GaussianMixtureFlow, params: np.ndarray
) -> None:
    rebuilt = get_representation(flow.name, flow.version, **flow.config())
    assert isinstance(rebuilt, GaussianMixtureFlow)
    assert (rebuilt.name, rebuilt.version) == ("gmm_flow", "1")
    np.testing.assert_array_equal(rebuilt.z_cdf(params, 1.0), flow.z_cdf(params, 1.0))
    table = representations()
    table.clear()
    assert ("gmm_flow", "1") in representations()
    with pytest.raises(RepresentationError, match="unknown"):
        get_representation("gmm_flow", "2", **flow.config())
    with pytest.raises(RepresentationError, match="configuration"):
        get_representation("gmm_flow", "1", box=[0, 1])


def test_log_prob_matches_tfp_decode(flow: GaussianMixtureFlow, params: np.ndarray) -> None:
    theta = flow.sample(params, 5, seed=2)
    ours = flow.log_prob(params, theta)
    dist = flow.decode(params)
    assert dist.batch_shape == (len(params),) and dist.event_shape == (8,)
    theirs = dist.log_prob(np.swapaxes(theta, 0, 1)).numpy().T
    np.testing.assert_allclose(ours, theirs, rtol=1e-9, atol=1e-8)
    np.testing.assert_allclose(flow.log_prob(params, theta[:, 0]), ours[:, 0])
    outside = theta[:, 0].copy()
    outside[:, 3] = flow.box_hi[3] + 0.1
    assert np.all(flow.log_prob(params, outside) == -np.inf)


def test_decode_samples_have_shape_and_stay_in_box(
    flow: GaussianMixtureFlow, params: np.ndarray
) -> None:
    draws = flow.decode(params).sample(3, seed=7).numpy()
    assert draws.shape == (3, len(params), 8)
    assert np.all((draws > flow.box_lo) & (draws < flow.box_hi))


def test_z_marginal_integrates_to_one(flow: GaussianMixtureFlow, params: np.ndarray) -> None:
    lo, hi = flow.box_lo[0], flow.box_hi[0]
    for i in range(10):
        one = params[i : i + 1]
        centres = flow.to_theta(flow.unpack(one)[1][0].astype(np.float64))[:, 0]
        total, _ = integrate.quad(
            lambda z, one=one: flow.z_pdf(one, z)[0], lo, hi, points=centres, limit=400
        )
        assert total == pytest.approx(1.0, abs=1e-6)


def _reference_log_prob(
    flow: GaussianMixtureFlow, params: np.ndarray, theta: np.ndarray, scale: float = 1.0
) -> np.ndarray:
    """log density of one object's flow, written independently of the library: scipy
    multivariate normals in u plus this test's own Jacobian of the box bijector."""
    logits, means, chol = (a.astype(np.float64)[0] for a in flow.unpack(params))
    lo, hi = flow.box_lo, flow.box_hi
    u = np.log(theta - lo) - np.log(hi - theta)
    log_jac = np.sum(np.log(hi - lo) - np.log(theta - lo) - np.log(hi - theta), axis=-1)
    log_w = logits - np.logaddexp.reduce(logits)
    terms = [
        log_w[k] + stats.multivariate_normal(means[k], scale**2 * chol[k] @ chol[k].T).logpdf(u)
        for k in range(len(log_w))
    ]
    return np.logaddexp.reduce(np.stack(terms), axis=0) + log_jac


def test_log_prob_matches_an_independent_reference(
    flow: GaussianMixtureFlow, params: np.ndarray
) -> None:
    for i in range(5):
        one = params[i : i + 1]
        theta = flow.sample(one, 50, seed=i)[0]
        ref = _reference_log_prob(flow, one, theta)
        np.testing.assert_allclose(flow.log_prob(one, theta[None])[0], ref, rtol=1e-9, atol=1e-8)


def test_full_density_integrates_to_one_by_importance_sampling(
    flow: GaussianMixtureFlow,
) -> None:
    """E_q[p / q] = 1 over the 8-D box, with q the same mixture widened by 1.25 whose
    density the test computes itself (so a wrong normalisation in log_prob would show)."""
    params = random_params(flow, 3, seed=5, width_range=(0.05, 0.8))
    for i in range(3):
        one = params[i : i + 1]
        logits, means, chol = flow.unpack(one)
        theta = flow.sample(flow.pack(logits, means, 1.25 * chol), 100_000, seed=i)[0]
        log_q = _reference_log_prob(flow, one, theta, scale=1.25)
        ratio = np.exp(flow.log_prob(one, theta[None])[0] - log_q)
        se = ratio.std() / np.sqrt(ratio.size)
        assert se < 0.01
        assert abs(ratio.mean() - 1.0) < 5 * se


def test_z_quantile_inverts_cdf(flow: GaussianMixtureFlow, params: np.ndarray) -> None:
    q = np.array([1e-6, 1e-3, 0.025, 0.16, 0.5, 0.84, 0.975, 0.999])
    zq = flow.z_quantile(params, q[None, :])
    assert zq.shape == (len(params), q.size)
    assert np.all(np.diff(zq, axis=1) > 0)
    np.testing.assert_allclose(flow.z_cdf(params, zq), np.broadcast_to(q, zq.shape), atol=1e-10)
    for i in range(5):
        one = params[i : i + 1]
        for level, z in zip(q, zq[i], strict=True):
            ref = optimize.brentq(
                lambda x, one=one, level=level: flow.z_cdf(one, x)[0] - level,
                flow.box_lo[0],
                flow.box_hi[0],
                xtol=1e-14,
            )
            assert z == pytest.approx(ref, abs=1e-9)
    edges = flow.z_quantile(params[:2], np.array([[0.0, 1.0, 1.5]]))
    np.testing.assert_array_equal(edges[:, :2], [[flow.box_lo[0], flow.box_hi[0]]] * 2)
    assert np.all(np.isnan(edges[:, 2]))


def test_z_pdf_is_the_derivative_of_the_cdf(flow: GaussianMixtureFlow, params: np.ndarray) -> None:
    z = flow.z_quantile(params, np.array([[0.1, 0.3, 0.5, 0.7, 0.9]]))
    h = 1e-6
    slope = (flow.z_cdf(params, z + h) - flow.z_cdf(params, z - h)) / (2 * h)
    np.testing.assert_allclose(flow.z_pdf(params, z), slope, rtol=1e-5)


def test_point_broadcasting_and_box_edges(flow: GaussianMixtureFlow, params: np.ndarray) -> None:
    n = len(params)
    assert flow.z_cdf(params, 1.0).shape == (n,)
    grid = np.array([[-1.0, flow.box_lo[0], 1.0, flow.box_hi[0], 5.0]])
    cdf = flow.z_cdf(params, grid)
    assert cdf.shape == (n, 5)
    np.testing.assert_array_equal(cdf[:, [0, 1, 3, 4]], [[0.0, 0.0, 1.0, 1.0]] * n)
    np.testing.assert_array_equal(flow.z_pdf(params, grid)[:, [0, 1, 3, 4]], 0.0)
    per_object = flow.z_cdf(params, np.full(n, grid[0, 2]))
    assert per_object.shape == (n,)
    np.testing.assert_array_equal(per_object, cdf[:, 2])
    with pytest.raises(RepresentationError, match=r"\(1, G\)"):
        flow.z_cdf(params, np.ones(n + 1))
    prob = flow.z_prob(params, 0.5, 1.5)
    np.testing.assert_allclose(prob, flow.z_cdf(params, 1.5) - flow.z_cdf(params, 0.5))
    np.testing.assert_array_equal(flow.z_prob(params, 1.5, 0.5), 0.0)
    np.testing.assert_allclose(flow.z_prob(params, 0.0, 10.0), 1.0)


@pytest.mark.parametrize("dim", [0, 1])
def test_samples_follow_the_analytic_marginal(
    flow: GaussianMixtureFlow, params: np.ndarray, dim: int
) -> None:
    """KS test of 4000 samples per object against the analytic marginal CDF (p > 0.01)."""
    for i in range(8):
        one = params[i : i + 1]
        draws = flow.sample(one, 4000, seed=100 + i)[0, :, dim]
        marginal = flow.marginal(one, dim)
        assert stats.kstest(draws, lambda x, m=marginal: m.cdf(x[None, :])[0]).pvalue > 0.01


def test_points_follow_the_analytic_marginals(
    flow: GaussianMixtureFlow, params: np.ndarray
) -> None:
    """Draws at 4096 Sobol points (sample_at) against each analytic marginal of the leading
    parameters: KS distance below 0.03, tighter than random draws of that size allow."""
    points = stats.qmc.Sobol(1 + 3, scramble=True, seed=4).random_base2(12)
    theta = flow.sample_at(params[:8], points, 3)
    assert theta.shape == (8, 4096, 3) and theta.dtype == np.float32
    for i in range(8):
        for dim in range(3):
            marginal = flow.marginal(params[i : i + 1], dim)
            cdf = lambda x, m=marginal: m.cdf(x[None, :].astype(np.float64))[0]  # noqa: E731
            assert stats.kstest(theta[i, :, dim], cdf).statistic < 0.03


def test_edge_mass_is_the_fraction_of_draws_near_the_edges(
    flow: GaussianMixtureFlow, params: np.ndarray
) -> None:
    """Within 4 binomial standard errors of the fraction of 20000 draws within 1% of an edge."""
    low, high = flow.edge_mass(params, 0.01)
    theta = flow.sample(params, 20_000, seed=3)
    margin = 0.01 * (flow.box_hi - flow.box_lo)
    for mass, near in ((low, theta < flow.box_lo + margin), (high, theta > flow.box_hi - margin)):
        frac = near.mean(axis=1)
        err = np.sqrt(np.maximum(mass * (1 - mass), 1e-6) / 20_000)
        assert np.all(np.abs(frac - mass) < 4 * err + 1e-9)


def test_log_prob_of_samples_is_finite(flow: GaussianMixtureFlow) -> None:
    for widths in [(0.001, 0.01), (0.02, 1.0), (1.0, 4.0)]:
        params = random_params(flow, 20, seed=8, width_range=widths)
        assert np.all(np.isfinite(flow.log_prob(params, flow.sample(params, 200, seed=9))))


def _known_mixture(flow: GaussianMixtureFlow) -> np.ndarray:
    """Two well-separated components (weights 0.3, 0.7) with correlated covariances."""
    logits = np.log([[0.3, 0.7]])
    means = np.zeros((1, 2, 8))
    means[0, 0] = -0.4
    means[0, 0, 0] = -1.5
    means[0, 1] = 0.5
    means[0, 1, 0] = 1.5
    chol = np.zeros((1, 2, 8, 8))
    chol[0, 0] = 0.3 * np.eye(8) + np.tril(np.full((8, 8), 0.05), -1)
    chol[0, 1] = 0.2 * np.eye(8) + np.tril(np.full((8, 8), -0.04), -1)
    return flow.pack(logits, means, chol)


def _sorted_mixture(flow: GaussianMixtureFlow, params: np.ndarray) -> tuple[np.ndarray, ...]:
    logits, means, chol = (a.astype(np.float64)[0] for a in flow.unpack(params))
    order = np.argsort(means[:, 0])
    w = np.exp(logits - np.logaddexp.reduce(logits))
    cov = chol @ np.swapaxes(chol, 1, 2)
    return w[order], means[order], cov[order]


def test_fit_recovers_a_known_mixture_from_its_samples() -> None:
    flow = GaussianMixtureFlow(np.zeros(8), np.ones(8), n_components=2)
    truth = _known_mixture(flow)
    fitted = flow.fit(flow.sample(truth, 20_000, seed=3), n_iter=200)
    flow.validate(fitted)
    w, m, c = _sorted_mixture(flow, fitted)
    tw, tm, tc = _sorted_mixture(flow, truth)
    np.testing.assert_allclose(w, tw, atol=0.02)
    np.testing.assert_allclose(m, tm, atol=0.03)
    np.testing.assert_allclose(c, tc, atol=0.01)


def test_weighted_fit_recovers_the_target_of_importance_weights() -> None:
    flow = GaussianMixtureFlow(np.zeros(8), np.ones(8), n_components=2)
    truth = _known_mixture(flow)
    logits, means, chol = flow.unpack(truth)
    proposal = flow.pack(logits * 0.0, means + 0.1, chol * 1.6)
    draws = flow.sample(proposal, 40_000, seed=4)
    log_w = flow.log_prob(truth, draws) - flow.log_prob(proposal, draws)
    fitted = flow.fit(draws, np.exp(log_w - log_w.max()), n_iter=200)
    w, m, c = _sorted_mixture(flow, fitted)
    tw, tm, tc = _sorted_mixture(flow, truth)
    np.testing.assert_allclose(w, tw, atol=0.04)
    np.testing.assert_allclose(m, tm, atol=0.06)
    np.testing.assert_allclose(c, tc, atol=0.02)


def test_fit_with_spare_components_matches_the_z_marginal(flow: GaussianMixtureFlow) -> None:
    truth = random_params(flow, 5, seed=12, width_range=(0.05, 0.6))
    fitted = flow.fit(flow.sample(truth, 5000, seed=13))
    grid = np.linspace(0.02, 3.99, 400)[None, :]
    assert np.abs(flow.z_cdf(fitted, grid) - flow.z_cdf(truth, grid)).max() < 0.03


def test_fit_is_deterministic_and_survives_degenerate_input(flow: GaussianMixtureFlow) -> None:
    truth = random_params(flow, 3, seed=14)
    draws = flow.sample(truth, 300, seed=15)
    np.testing.assert_array_equal(flow.fit(draws), flow.fit(draws))
    same = np.broadcast_to(draws[:, :1], draws.shape)
    one_hot = np.zeros(draws.shape[:2])
    one_hot[:, 7] = 1.0
    for samples, weights in [(same, None), (draws, one_hot), (draws[:, :2], None)]:
        flow.validate(flow.fit(samples, weights))
    single = GaussianMixtureFlow(flow.box_lo, flow.box_hi, n_components=1)
    fitted = single.fit(draws, n_iter=5)
    _, means, _ = single.unpack(fitted)
    np.testing.assert_allclose(means[:, 0], flow.to_u(draws).mean(axis=1), atol=1e-5)
    with pytest.raises(RepresentationError, match="positive weight"):
        flow.fit(draws, np.zeros(draws.shape[:2]))
    with pytest.raises(RepresentationError, match="samples must be"):
        flow.fit(draws[..., :3])


def test_summaries_have_the_table_columns(flow: GaussianMixtureFlow, params: np.ndarray) -> None:
    out = flow.summaries(params)
    assert tuple(out) == SUMMARY_COLUMNS and len(SUMMARY_COLUMNS) == 24
    assert all(v.shape == (len(params),) for v in out.values())
    for name in SUMMARY_COLUMNS:
        assert np.all(np.isnan(out[name]) if name.startswith("log_sfr") else np.isfinite(out[name]))
    for quantity, lo, hi in [("z", 0.01, 4.0), ("log_mstar", 7.0, 12.5)]:
        qs = np.stack([out[f"{quantity}_{s}"] for s in ("q025", "q16", "q50", "q84", "q975")])
        assert np.all(np.diff(qs, axis=0) > 0)
        assert np.all((out[f"{quantity}_mode"] > lo) & (out[f"{quantity}_mode"] < hi))
    with pytest.raises(RepresentationError, match="log_sfr"):
        flow.summaries(params, derived=lambda theta: {"sfr": theta[:, 0]})


def test_summaries_match_sample_estimates(flow: GaussianMixtureFlow) -> None:
    """Analytic z and mass summaries against 40,000 samples per object (5 standard errors),
    and sampled log_sfr = log_mstar - 9 against the analytic mass columns."""
    params = random_params(flow, 20, seed=3)
    n_big, n_sfr = 40_000, 4000
    out = flow.summaries(
        params, derived=lambda t: {"log_sfr": t[:, 1] - 9.0}, n_samples=n_sfr, seed=4
    )
    draws = flow.sample(params, n_big, seed=5)
    levels = {"q025": 0.025, "q16": 0.16, "q50": 0.5, "q84": 0.84, "q975": 0.975}
    for quantity, dim in [("z", 0), ("log_mstar", 1)]:
        x = draws[:, :, dim]
        marginal = flow.marginal(params, dim)
        std = out[f"{quantity}_std"]
        assert np.all(np.abs(out[f"{quantity}_mean"] - x.mean(1)) < 5 * std / np.sqrt(n_big))
        np.testing.assert_allclose(std, x.std(1), rtol=0.03)
        for name, q in levels.items():
            empirical = np.mean(x <= out[f"{quantity}_{name}"][:, None], axis=1)
            assert np.all(np.abs(empirical - q) < 5 * np.sqrt(q * (1 - q) / n_big))
        # The mode is where the analytic density peaks (dense grid, 1e-3 of the 95% range).
        grid = np.linspace(out[f"{quantity}_q025"], out[f"{quantity}_q975"], 20_001).T
        grid = np.concatenate([grid, flow.to_theta(flow.unpack(params)[1])[:, :, dim]], 1)
        peak = np.take_along_axis(grid, np.argmax(marginal.pdf(grid), 1)[:, None], 1)[:, 0]
        span = out[f"{quantity}_q975"] - out[f"{quantity}_q025"]
        assert np.all(np.abs(out[f"{quantity}_mode"] - peak) < 1e-3 * span)

    mass = flow.marginal(params, 1)
    std = out["log_mstar_std"]
    assert np.all(
        np.abs(out["log_sfr_mean"] - (out["log_mstar_mean"] - 9)) < 5 * std / np.sqrt(n_sfr)
    )
    np.testing.assert_allclose(out["log_sfr_std"], std, rtol=0.08)
    for name, q in levels.items():
        true_q = out[f"log_mstar_{name}"]
        se = np.sqrt(q * (1 - q) / n_sfr) / mass.pdf(true_q[:, None])[:, 0]
        assert np.all(np.abs(out[f"log_sfr_{name}"] - (true_q - 9)) < 5 * se)
    # A sample mode is noisy: require it to sit where the density is near its peak.
    at_mode = mass.pdf(out["log_sfr_mode"][:, None] + 9)[:, 0]
    at_peak = mass.pdf(out["log_mstar_mode"][:, None])[:, 0]
    assert np.all(at_mode > 0.7 * at_peak)


def test_from_network_outputs_gives_valid_differentiable_params(
    flow: GaussianMixtureFlow,
) -> None:
    import tensorflow as tf

    raw = tf.Variable(3.0 * tf.random.stateless_normal((64, flow.n_raw), seed=[1, 2]))
    with tf.GradientTape() as tape:
        out = flow.from_network_outputs(raw)
        theta = flow.sample(out.numpy(), 1, seed=3, dtype=np.float32)[:, 0]
        loss = -tf.reduce_mean(flow.decode(out).log_prob(theta))
    grad = tape.gradient(loss, raw)
    assert out.shape == (64, flow.floats_per_object) and out.dtype == tf.float32
    flow.validate(out.numpy())
    assert grad is not None and np.all(np.isfinite(grad.numpy()))
    assert np.any(grad.numpy() != 0)
    floor = flow.from_network_outputs(tf.fill((2, flow.n_raw), -50.0)).numpy()
    diag = flow.unpack(floor)[2].diagonal(axis1=2, axis2=3)
    assert np.all(diag >= flow.diag_floor * (1 - 1e-6))
