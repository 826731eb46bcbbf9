"""Shared set-up of the hierarchical-loop tests that go through the database."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine


@pytest.fixture
def example_run(lor_env: str, engine: Engine) -> Iterator[tuple]:
    """The shipped example catalog processed by the shipped models: ``(run, model ids)``.

    Runs the real amortized processor (no test factory), and leaves no processor cached.
    """
    from lor.catalog.example import EXAMPLE_CATALOG
    from lor.catalog.ingest import ingest_catalog
    from lor.reporting.demo import register_shipped_models
    from lor.runs import processing
    from lor.runs.lifecycle import create_run

    processing.clear_processor_cache()
    ids = register_shipped_models(engine)
    ingest_catalog(engine, EXAMPLE_CATALOG, "ex", progress=False)
    run = create_run(engine, "ex", name="base", prior=ids["prior"]).run
    processing.process_run(engine, run.id, progress=False)
    yield run, ids
    processing.clear_processor_cache()
