"""The worker app with the deterministic test processor injected: ``celery -A
tests.workers.celery_app worker``. The worker imports this module before it forks its pool,
so every pool process builds runs' processors with :func:`tests.workers.processors.flux_processor`
instead of the registry."""

from __future__ import annotations

from tests.workers.processors import flux_processor
from workers import tasks
from workers.app import app

tasks.use_processor_factory(flux_processor)

__all__ = ["app"]
