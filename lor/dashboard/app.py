"""``lor serve``: a live run dashboard over the database, as the read-only ``lor_reader`` role.

A FastAPI app: the page (``static/index.html`` with plain JavaScript, nothing fetched from
elsewhere) polls JSON endpoints every two seconds and reloads the PNG plots, so it follows a
run as objects complete. Every connection switches to ``lor_reader`` and to read-only
transactions when it opens (:func:`reader_engine`): the dashboard cannot change anything,
whatever the login user may do.

Endpoints: ``/api/runs``, ``/api/runs/{id}`` (status, rate, ETA, stalled reason, the workers
holding claims with their heartbeat, failures, truth count), ``/api/calibrations``; PNGs at
``/plot/runs/{id}/{progress,ood,nz,truth}.png`` and ``/plot/calibrations/{id}.png``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException
from fastapi.responses import FileResponse, Response
from fastapi.staticfiles import StaticFiles
from sqlalchemy import Connection, Engine, event
from sqlalchemy.exc import DBAPIError

from lor.config import get_settings
from lor.dashboard import plots
from lor.db import dashboard_store as board
from lor.db import worker_store
from lor.db.engine import make_engine
from lor.db.migrate import check_schema
from lor.errors import ConfigError, NotFoundError
from lor.runs.lifecycle import run_status

STATIC = Path(__file__).parent / "static"
READER_ROLE = board.READER_ROLE
#: matplotlib's object API is thread-safe per figure; one lock keeps its font cache calm.
_DRAW = threading.Lock()


def reader_engine(url: str | None = None) -> Engine:
    """An engine whose every connection is ``lor_reader`` in read-only transactions.

    Raises :class:`ConfigError` if the login user may not act as ``lor_reader`` (grant it:
    ``GRANT lor_reader TO <user>``).
    """
    engine = make_engine(url, pool_size=4, max_overflow=4)

    @event.listens_for(engine, "connect")
    def _read_only(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
        board.become_reader(dbapi_conn)

    try:
        with engine.connect() as conn:
            board.ping(conn)
    except DBAPIError as exc:
        engine.dispose()
        raise ConfigError(
            f"the dashboard reads as {READER_ROLE}, which this database user may not become "
            f"(GRANT {READER_ROLE} TO <user>): {exc.orig}"
        ) from exc
    return engine


def create_app(engine: Engine) -> FastAPI:
    """The dashboard app over ``engine`` (a :func:`reader_engine`; the schema must be current)."""
    check_schema(engine)
    app = FastAPI(title="lor runs", docs_url=None, redoc_url=None)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    def read(fn: Callable[[Connection], Any]) -> Any:
        with engine.connect() as conn:
            try:
                return fn(conn)
            except NotFoundError as exc:
                raise HTTPException(404, str(exc)) from exc

    def png(data: bytes) -> Response:
        return Response(data, media_type="image/png", headers={"Cache-Control": "no-store"})

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> FileResponse:
        return FileResponse(STATIC / "favicon.svg", media_type="image/svg+xml")

    @app.get("/api/runs")
    def runs() -> list[dict[str, Any]]:
        return read(board.runs)

    @app.get("/api/runs/{run_id}")
    def run(run_id: int) -> dict[str, Any]:
        try:
            status = run_status(engine, run_id)
        except NotFoundError as exc:
            raise HTTPException(404, str(exc)) from exc
        dead_after = get_settings().dead_after_s

        def details(conn: Connection) -> dict[str, Any]:
            holders = [
                {"worker": h.worker, "items": h.items, "heartbeat_age_s": h.heartbeat_age_s,
                 "lease_left_s": h.lease_left_s,
                 "alive": h.heartbeat_age_s is not None and h.heartbeat_age_s <= dead_after}
                for h in worker_store.holders(conn, run_id)
            ]  # fmt: skip
            truth = board.truth_count(conn, run_id)
            return {"holders": holders, "failures": board.failures(conn, run_id),
                    "with_truth": truth}  # fmt: skip

        return status.as_dict() | {"remaining": status.remaining} | read(details)

    @app.get("/api/calibrations")
    def calibrations() -> list[dict[str, Any]]:
        return read(board.calibration_versions)

    @app.get("/plot/runs/{run_id}/{name}.png")
    def run_plot(run_id: int, name: str) -> Response:
        draw: dict[str, Callable[[Connection], bytes]] = {
            "progress": lambda c: plots.progress_png(board.progress(c, run_id), f"run {run_id}"),
            "ood": lambda c: plots.ood_png(board.ood_rates(c, run_id)),
            "nz": lambda c: plots.nz_png(board.nz(c, run_id), f"n(z) of run {run_id}"),
            "truth": lambda c: plots.truth_png(board.truth_comparison(c, run_id)),
        }
        if name not in draw:
            raise HTTPException(404, f"no plot {name!r}")
        with _DRAW:
            return png(read(draw[name]))

    @app.get("/plot/calibrations/{version_id}.png")
    def calibration_plot(version_id: int) -> Response:
        with _DRAW:
            return png(
                read(
                    lambda c: plots.calibration_png(
                        board.calibration_terms(c, version_id), f"calibration version {version_id}"
                    )
                )  # fmt: skip
            )

    return app


def serve(host: str = "127.0.0.1", port: int = 8765, url: str | None = None) -> None:
    """Run the dashboard with uvicorn until interrupted."""
    import uvicorn

    uvicorn.run(create_app(reader_engine(url)), host=host, port=port, log_level="warning")
