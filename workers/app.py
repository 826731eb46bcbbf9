"""The Celery application. Broker from ``LOR_BROKER_URL`` (Redis default; amqp:// works).

Work state lives in PostgreSQL, not in the broker: a message only says "claim a batch of
run N", so a lost message or a broker restart loses nothing, and re-sending is always safe.
Tasks are acknowledged late, rejected back to the queue when their worker process dies, and
prefetched one at a time. A periodic sweep (Celery beat, ``lor worker --beat`` or
``celery -A workers.app beat``) returns expired claims to pending and tops up messages for
open runs, so processing heals itself after crashes and broker restarts. A worker that starts
sends one sweep too (:mod:`workers.tasks`), so a worker restarted without beat re-dispatches
open runs' pending work; and an embedded beat process (``--beat``) that dies is started
again by :class:`BeatWatchdog`.

Worker knobs are settings (:class:`lor.config.Settings`, read here, at the entry point):
``LOR_QUEUE`` (queue name, default ``lor``) and ``LOR_SWEEP_INTERVAL_S`` (sweep period,
default 10 s: after a broker restart the next sweep re-sends the lost messages). Processors
come from the run's registered estimator (:mod:`workers.tasks`).
"""

from __future__ import annotations

import logging
import threading

from celery import Celery, bootsteps

from lor.config import Settings, get_settings
from lor.quiet import quiet_tensorflow_startup

quiet_tensorflow_startup()  # every worker process imports TensorFlow after this

#: Seconds between the watchdog's checks that the embedded beat process lives.
BEAT_CHECK_S = 2.0

log = logging.getLogger(__name__)


class BeatWatchdog(bootsteps.StartStopStep):
    """Restart the embedded beat process (``worker --beat``) when it dies.

    Celery starts beat as a child process and never looks at it again: a ``kill -9`` of
    that child (or an OOM kill) silently ended the periodic sweep. A thread of the worker's
    main process checks it every :data:`BEAT_CHECK_S` and starts a new one, logging both.
    """

    requires = ("celery.worker.components:Beat",)

    def __init__(self, w, **kwargs) -> None:  # type: ignore[no-untyped-def]
        self.stopping = threading.Event()
        self.thread: threading.Thread | None = None
        self.replacement = None  # a beat started here, which the Beat step does not stop
        super().__init__(w, **kwargs)

    def start(self, w) -> None:  # type: ignore[no-untyped-def]
        if w.beat is None:
            return
        log.info("lor: embedded beat running as pid %s", getattr(w.beat, "pid", None))
        self.thread = threading.Thread(
            target=self._watch, args=(w,), name="lor-beat-watchdog", daemon=True
        )
        self.thread.start()

    def _watch(self, w) -> None:  # type: ignore[no-untyped-def]
        from celery.beat import EmbeddedService

        while not self.stopping.wait(BEAT_CHECK_S):
            beat = w.beat
            if beat is None or not hasattr(beat, "is_alive") or beat.is_alive():
                continue
            if self.stopping.is_set():
                return
            log.error(
                "lor: embedded beat process %s died (exit code %s); starting a new one",
                beat.pid,
                beat.exitcode,
            )
            new = EmbeddedService(
                w.app, schedule_filename=w.schedule_filename, scheduler_cls=w.scheduler
            )
            new.start()
            w.beat = self.replacement = new
            log.info("lor: embedded beat running as pid %s", new.pid)

    def stop(self, w) -> None:  # type: ignore[no-untyped-def]
        self.stopping.set()
        if self.replacement is not None and self.replacement.is_alive():
            self.replacement.stop()


def make_app(broker_url: str | None = None, settings: Settings | None = None) -> Celery:
    """The lor Celery app for ``broker_url`` (default: the settings' broker) and ``settings``
    (default: this process's)."""
    settings = settings or get_settings()
    app = Celery("lor", broker=broker_url or settings.broker_url, include=["workers.tasks"])
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        task_default_queue=settings.queue,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        beat_schedule={
            "lor-sweep": {
                "task": "lor.sweep",
                "schedule": settings.sweep_interval_s,
            }
        },
    )
    app.steps["worker"].add(BeatWatchdog)
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
