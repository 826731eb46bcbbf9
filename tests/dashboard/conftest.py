"""A live dashboard server (uvicorn in a thread) over the session's test database."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
import uvicorn

from lor.dashboard.app import create_app, reader_engine


@dataclass
class Dashboard:
    url: str

    def get(self, path: str) -> httpx.Response:
        return httpx.get(self.url + path, timeout=30)


@pytest.fixture()
def dashboard(engine, database_url: str) -> Iterator[Dashboard]:  # type: ignore[no-untyped-def]
    """Depends on ``engine`` so the server stops before the tables are emptied."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    reader = reader_engine(database_url)
    server = uvicorn.Server(
        uvicorn.Config(create_app(reader), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "dashboard did not start"
        time.sleep(0.05)
    yield Dashboard(f"http://127.0.0.1:{port}")
    server.should_exit = True
    thread.join(10)
    reader.dispose()
