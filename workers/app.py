"""The Celery application. Broker from ``LOR_BROKER_URL`` (Redis default; amqp:// works).

Work state lives in PostgreSQL, not in the broker: a message only says "claim a batch of
run N", so a lost message or a broker restart loses nothing, and re-sending is always safe.
Tasks are acknowledged late, rejected back to the queue when their worker process dies, and
prefetched one at a time. A periodic sweep (Celery beat, ``lor worker --beat`` or
``celery -A workers.app beat``) returns expired claims to pending and tops up messages for
open runs, so processing heals itself after crashes and broker restarts.

Worker knobs (environment): ``LOR_QUEUE`` (queue name, default ``lor``),
``LOR_SWEEP_INTERVAL_S`` (sweep period, default 30 s), ``LOR_PROCESSOR_FACTORY`` (see
:mod:`lor.pipeline.processing`).
"""

from __future__ import annotations

import os

from celery import Celery

from lor.config import get_settings

QUEUE_ENV = "LOR_QUEUE"
SWEEP_ENV = "LOR_SWEEP_INTERVAL_S"


def make_app(broker_url: str | None = None) -> Celery:
    """The lor Celery app for ``broker_url`` (default: the configured broker)."""
    app = Celery("lor", broker=broker_url or get_settings().broker_url, include=["workers.tasks"])
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        task_default_queue=os.environ.get(QUEUE_ENV, "lor"),
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        beat_schedule={
            "lor-sweep": {
                "task": "lor.sweep",
                "schedule": float(os.environ.get(SWEEP_ENV, "30")),
            }
        },
    )
    return app


def queued_messages(app: Celery) -> int:
    """Messages waiting in the default queue (0 if it does not exist yet)."""
    try:
        with app.connection_for_write() as conn:
            ok = conn.default_channel.queue_declare(queue=app.conf.task_default_queue, passive=True)
            return int(ok.message_count)
    except Exception:  # noqa: BLE001 - a missing queue (Redis: an empty list) means none
        return 0


app = make_app()
