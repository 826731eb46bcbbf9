"""``lor`` with the deterministic test processor injected, for tests that run the CLI as a
process (``python -m tests.workers.cli process RUN``): the command line's entry point with
``Processors(flux_processor)`` as its context object (see ``lor process``)."""

from __future__ import annotations

from lor.cli.main import cli
from lor.runs.processing import Processors
from tests.workers.processors import flux_processor

if __name__ == "__main__":
    cli(obj=Processors(flux_processor))
