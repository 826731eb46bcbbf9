"""Contract tests over every registered estimator family, run on every shipped artifact of
each family (``lor/data/models``): what amortized inference, reweighting and registration
read (:class:`lor.inference.protocol.Estimator`), checked the same way for each.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from lor.emulators.protocol import Emulator
from lor.emulators.registry import SHIPPED_DIR as EMULATOR_DIR
from lor.emulators.registry import load_emulator
from lor.errors import ArtifactError
from lor.inference.protocol import Estimator
from lor.inference.registry import FAMILIES, SHIPPED_DIR, SHIPPED_ESTIMATOR, load_estimator
from lor.posteriors.base import AmortizedRepresentation
from lor.posteriors.registry import from_spec
from tests.contracts.artifacts import ESTIMATOR_ARTIFACTS

BENCH_FIGURES = {SHIPPED_ESTIMATOR[1]: (0.0328, 0.731)}
"""``lor bench estimator`` on 2e4 held-out objects (README model table): sigma_NMAD and 68%
redshift coverage, by estimator sha256."""

REQUIRED_SPEC = (
    "family", "family_version", "name", "band_names", "param_names", "representation",
    "prior", "training", "emulator",
)  # fmt: skip


@pytest.fixture(
    scope="module", params=ESTIMATOR_ARTIFACTS, ids=[f.name for f, _ in ESTIMATOR_ARTIFACTS]
)
def artifact(request: pytest.FixtureRequest) -> tuple[Path, str]:
    return request.param


@pytest.fixture(scope="module")
def estimator(artifact: tuple[Path, str]) -> Estimator:
    return load_estimator(*artifact)


@pytest.fixture(scope="module")
def emulator(estimator: Estimator) -> Emulator:
    """The emulator the estimator was trained on (its spec names it by name and sha256)."""
    named = estimator.spec["emulator"]
    return load_emulator(EMULATOR_DIR / named["name"], named["sha256"])


def _photometry(n_bands: int, n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fluxes from faint to bright (nJy), errors, and some missing bands."""
    rng = np.random.default_rng(seed)
    flux = 10 ** rng.uniform(1.0, 5.0, (n, 1)) * rng.uniform(0.5, 2.0, (n, n_bands))
    err = flux * rng.uniform(0.01, 0.3, (n, n_bands)) + 5.0
    missing = rng.uniform(size=(n, n_bands)) < 0.1
    missing[missing.all(axis=1), 0] = False
    return flux, err, missing


def test_the_shipped_pin_is_among_the_artifacts() -> None:
    name, sha = SHIPPED_ESTIMATOR
    assert (SHIPPED_DIR / name, sha) in ESTIMATOR_ARTIFACTS


def test_satisfies_the_protocol(estimator: Estimator) -> None:
    assert isinstance(estimator, Estimator)
    assert FAMILIES[(estimator.family, estimator.family_version)] is type(estimator)
    assert all(k in estimator.spec for k in REQUIRED_SPEC)
    assert list(estimator.band_names) == list(estimator.spec["band_names"])
    rep = estimator.representation
    assert isinstance(rep, AmortizedRepresentation)
    recorded = estimator.spec["representation"]
    assert (rep.name, rep.version) == (recorded["name"], str(recorded["version"]))
    assert rep.config() == from_spec(recorded).config()
    assert rep.n_dim == len(estimator.spec["param_names"])


def test_every_output_row_is_a_valid_posterior(estimator: Estimator) -> None:
    b = len(estimator.band_names)
    flux, err, missing = _photometry(b, 200, seed=1)
    flux[3] = np.nan  # unusable values are the features' business, never the network's
    features = estimator.input_features(flux, err, missing)
    assert features.shape[0] == 200 and features.dtype == np.float32
    assert np.all(np.isfinite(features))
    assert estimator.standardized(features).shape == features.shape
    params = estimator.posterior_params(features)
    assert params.shape == (200, estimator.representation.floats_per_object)
    estimator.representation.validate(params)


def test_a_row_does_not_depend_on_its_batch(estimator: Estimator) -> None:
    flux, err, missing = _photometry(len(estimator.band_names), 300, seed=2)
    features = estimator.input_features(flux, err, missing)
    whole = estimator.posterior_params(features)
    alone = np.concatenate(
        [estimator.posterior_params(features[i : i + 1]) for i in range(0, 300, 41)]
    )
    np.testing.assert_allclose(alone, whole[::41], rtol=1e-5, atol=1e-5)


def test_artifact_round_trip_and_hash_checks(
    estimator: Estimator, artifact: tuple[Path, str], tmp_path: Path
) -> None:
    folder, _ = artifact
    copy = tmp_path / "copy"
    sha = estimator.save(copy)
    again = load_estimator(copy, sha)
    features = estimator.input_features(*_photometry(len(estimator.band_names), 64, seed=3))
    np.testing.assert_array_equal(
        again.posterior_params(features), estimator.posterior_params(features)
    )
    assert again.spec == estimator.spec
    with pytest.raises(ArtifactError, match="sha256"):
        load_estimator(folder, "0" * 64)
    weights = copy / json.loads((copy / "spec.json").read_text())["weights_file"]
    damaged = bytearray(weights.read_bytes())
    damaged[len(damaged) // 2] ^= 0xFF
    weights.write_bytes(bytes(damaged))
    with pytest.raises(ArtifactError, match="weights"):
        load_estimator(copy, sha)


def test_a_spec_naming_an_unknown_representation_is_refused(
    estimator: Estimator, tmp_path: Path
) -> None:
    """The representation comes from the spec through the registry, never assumed."""
    copy = tmp_path / "copy"
    estimator.save(copy)
    spec = json.loads((copy / "spec.json").read_text())
    spec["representation"] = {**spec["representation"], "name": "no_such_representation"}
    (copy / "spec.json").write_text(json.dumps(spec, indent=1, sort_keys=True))
    from lor.artifacts import artifact_sha256

    with pytest.raises(ArtifactError, match="no_such_representation"):
        load_estimator(copy, artifact_sha256(copy))


def test_held_out_redshifts_match_the_benchmark(
    estimator: Estimator, emulator: Emulator, artifact: tuple[Path, str]
) -> None:
    """500 held-out objects of lor's own model under the training prior, drawn as ``lor bench
    estimator`` draws them (10-year depth, its error scatter and seed): sigma_NMAD and the
    68% coverage of the redshift PIT against the bench's figures on 2e4 objects
    (:data:`BENCH_FIGURES`), within about 5 standard errors at n = 500 (sigma_NMAD to ~6%,
    coverage to 0.02)."""
    if artifact[1] not in BENCH_FIGURES:
        pytest.skip(f"no benchmark figures recorded for {artifact[0].name}")
    nmad_bench, cov68_bench = BENCH_FIGURES[artifact[1]]
    from lor.bench.estimator import HELD_OUT_ERROR_SCATTER_DEX, HELD_OUT_SEED
    from lor.inference.amortized import PhotometryPosteriors
    from lor.inference.prior_registry import estimator_prior
    from lor.inference.simulate import simulate_catalog
    from lor.inference.validation import coverage, photoz_metrics

    cat = simulate_catalog(
        500, emulator, seed=HELD_OUT_SEED, years=10.0, prior=estimator_prior(estimator.spec),
        error_scatter=HELD_OUT_ERROR_SCATTER_DEX,
    )  # fmt: skip
    data = PhotometryPosteriors(estimator, emulator).prepare(cat.flux, cat.flux_err)
    params = estimator.posterior_params(data.features(np.arange(len(cat.flux))))
    rep = estimator.representation
    z_true = cat.theta[:, 0]
    figures = photoz_metrics(rep.z_quantile(params, 0.5), z_true)
    pit = np.asarray(rep.z_cdf(params, z_true), np.float64)
    assert figures["sigma_nmad"] < nmad_bench * 1.3, figures
    assert abs(coverage(pit, 0.68) - cov68_bench) < 0.1
