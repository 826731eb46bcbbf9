"""The Celery application. Broker from ``LOR_BROKER_URL`` (Redis default; amqp:// works).

Work state lives in PostgreSQL, not in the broker: messages only say "go look", so the broker
can restart without losing work. Tasks are acknowledged late and are idempotent.
"""

from __future__ import annotations

from celery import Celery

from lor.config import get_settings

app = Celery("lor", broker=get_settings().broker_url)
app.conf.update(
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_serializer="json",
    accept_content=["json"],
    broker_connection_retry_on_startup=True,
)
