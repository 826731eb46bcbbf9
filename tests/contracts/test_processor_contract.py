"""Contract tests over the processors (:class:`lor.runs.processing.Processor`): every
estimator family in the estimator registry has a registered processor factory, every
registered factory imports, and every processor kind -- inference and reprocessing, built
here from the shipped models without a database -- answers a batch as
:meth:`PosteriorBatch.check` and the representation registry require, the same way twice.
"""

from __future__ import annotations

import importlib
import uuid
from typing import Any

import numpy as np
import pytest

from lor.inference.flags import Flag
from lor.posteriors.registry import get_representation
from lor.runs.processing import (
    ESTIMATOR_PROCESSORS,
    REPROCESS_PROCESSOR,
    ObjectBatch,
    PosteriorBatch,
    PriorReweightingProcessor,
    Processor,
)

N_OBJECTS = 120


@pytest.fixture(scope="module")
def models() -> tuple[Any, Any]:
    from lor.emulators.registry import load_shipped_emulator
    from lor.inference.registry import load_shipped_estimator

    return load_shipped_estimator(), load_shipped_emulator()


@pytest.fixture(scope="module")
def batch(models: tuple[Any, Any]) -> ObjectBatch:
    """Simulated objects of the estimator's own model, a few with missing or no bands."""
    from lor.inference.prior_registry import estimator_prior
    from lor.inference.simulate import simulate_catalog

    estimator, emulator = models
    cat = simulate_catalog(N_OBJECTS, emulator, estimator_prior(estimator.spec), seed=31)
    n, b = cat.flux.shape
    missing = np.zeros(n, np.int16)
    missing[::10] = 0b000001  # u missing
    missing[5] = (1 << b) - 1  # nothing usable: no posterior
    rng = np.random.default_rng(0)
    return ObjectBatch(
        tract_id=np.full(n, 9813, np.int32),
        object_id=[uuid.UUID(int=int(i)) for i in rng.integers(1, 2**62, n)],
        flux=cat.flux.astype(np.float32),
        flux_err=cat.flux_err.astype(np.float32),
        missing_mask=missing,
        nondetection_mask=np.zeros(n, np.int16),
        ebv=np.full(n, 0.02, np.float32),
        input_hash=[uuid.uuid4() for _ in range(n)],
    )


@pytest.fixture(scope="module")
def amortized(models: tuple[Any, Any]) -> Any:
    from lor.inference.amortized import PhotometryPosteriors
    from lor.runs.amortized_processor import AmortizedProcessor

    return AmortizedProcessor(PhotometryPosteriors(*models), None)


@pytest.fixture(scope="module", params=["amortized", "reprocess"])
def case(
    request: pytest.FixtureRequest, models: tuple[Any, Any], amortized: Any, batch: ObjectBatch
) -> tuple[Any, ObjectBatch]:
    """A processor and a batch it can process (a reprocess batch carries its parents)."""
    if request.param == "amortized":
        return amortized, batch
    from dataclasses import replace

    from lor.hierarchy.reweight import PosteriorReweighter
    from lor.inference.amortized import PhotometryPosteriors
    from lor.inference.prior_registry import estimator_prior
    from lor.loop.reprocess_processor import ReprocessProcessor

    estimator, _ = models
    old = estimator_prior(estimator.spec)
    new = old.with_hyperparameters(old.hyperparameters | {"smf_phi_evolution": -0.4})
    posteriors = PhotometryPosteriors(*models)
    reweighter = PosteriorReweighter(posteriors, old, new, old)
    parents = amortized.process(batch)
    with_parents = replace(
        batch,
        parent_posterior_id=[uuid.uuid4() for _ in range(len(batch))],
        parent_params=parents.params,
        parent_ood_flags=parents.ood_flags,
    )
    return ReprocessProcessor(reweighter, posteriors.rep, None, None), with_parents


def test_every_estimator_family_has_a_processor() -> None:
    from lor.inference.registry import FAMILIES

    for family, _version in FAMILIES:
        assert family in ESTIMATOR_PROCESSORS, family


@pytest.mark.parametrize("path", [*ESTIMATOR_PROCESSORS.values(), REPROCESS_PROCESSOR])
def test_every_registered_factory_imports(path: str) -> None:
    module, _, attr = path.partition(":")
    assert callable(getattr(importlib.import_module(module), attr))


def test_answers_a_batch_as_the_store_requires(
    case: tuple[Any, ObjectBatch], models: tuple[Any, Any]
) -> None:
    processor, batch = case
    result = processor.process(batch)
    assert isinstance(result, PosteriorBatch)
    result.check(len(batch))
    rows = np.isfinite(result.params).all(axis=1)
    assert not np.isfinite(result.params[~rows]).any()  # a row is a posterior or all NaN
    assert set(map(str, result.method[~rows])) == {"none"}
    assert not rows[5] and rows.sum() == len(batch) - 1
    recorded = models[0].spec["representation"]  # the estimator's, as registration records it
    rep = get_representation(
        result.representation_name, result.representation_version, **recorded["config"]
    )
    assert (rep.name, rep.version) == (recorded["name"], str(recorded["version"]))
    rep.validate(result.params[rows])
    assert result.ood_flags[5] & Flag.NO_POSTERIOR
    np.testing.assert_allclose(
        result.summaries["z_q50"][rows], rep.z_quantile(result.params[rows], 0.5), rtol=1e-5
    )


def test_satisfies_the_protocols(case: tuple[Any, ObjectBatch]) -> None:
    """Every processor is a :class:`Processor`; one that also updates rows after a change of
    prior alone declares it (:class:`PriorReweightingProcessor`) and answers as the store
    requires, rows it leaves marked for :meth:`~Processor.process`."""
    processor, batch = case
    assert isinstance(processor, Processor)
    if not isinstance(processor, PriorReweightingProcessor):
        return
    assert batch.parent_params is not None and batch.parent_ood_flags is not None
    result, redo = processor.reweight_prior(batch.parent_params, batch.parent_ood_flags)
    result.check(len(batch))
    assert redo.shape == (len(batch),) and redo.dtype == bool
    has_parent = np.isfinite(batch.parent_params).all(axis=1)
    assert np.isfinite(result.params[has_parent & ~redo]).all()
    assert set(map(str, result.method[has_parent & ~redo])) == {"reweighted"}


def test_the_same_batch_gives_the_same_answer(case: tuple[Any, ObjectBatch]) -> None:
    processor, batch = case
    a, b = processor.process(batch), processor.process(batch)
    np.testing.assert_array_equal(a.params, b.params)
    np.testing.assert_array_equal(a.ood_flags, b.ood_flags)
    assert list(a.method) == list(b.method)
    for k, v in a.summaries.items():
        np.testing.assert_array_equal(v, b.summaries[k])


def test_inference_rows_do_not_depend_on_their_batch(amortized: Any, batch: ObjectBatch) -> None:
    """Posteriors, summaries and the deterministic checks of an object are the same in any
    batch (the fit check's random draws are :mod:`lor.seeds`' business)."""
    whole = amortized.process(batch)
    idx = np.random.default_rng(1).permutation(len(batch))[:50]
    part = amortized.process(batch.take(idx))
    np.testing.assert_allclose(part.params, whole.params[idx], rtol=1e-5, atol=1e-5)
    for k, v in part.summaries.items():
        np.testing.assert_allclose(v, whole.summaries[k][idx], rtol=1e-4, atol=1e-4)
    deterministic = ~np.int32(Flag.POOR_FIT | Flag.FALLBACK)
    np.testing.assert_array_equal(
        part.ood_flags & deterministic, whole.ood_flags[idx] & deterministic
    )
