"""No Docker engine runs here, so the docker files are checked statically."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_compose_parses_and_references_existing_files() -> None:
    compose = yaml.safe_load((ROOT / "docker" / "compose.yaml").read_text())
    services = compose["services"]
    assert {"postgres", "redis", "worker", "migrate"} <= set(services)
    for name, svc in services.items():
        build = svc.get("build")
        if build:
            context = (ROOT / "docker" / build["context"]).resolve()
            assert (context / build["dockerfile"]).is_file(), name
    worker = services["worker"]
    assert worker["entrypoint"][:3] == ["celery", "-A", "workers.app"]
    assert (ROOT / "workers" / "app.py").is_file()
    assert "LOR_DATABASE_URL" in compose["x-lor-env"] and "LOR_BROKER_URL" in compose["x-lor-env"]


def test_dockerfile_copies_only_existing_paths() -> None:
    text = (ROOT / "docker" / "Dockerfile").read_text()
    sources = [
        src
        for line in text.splitlines()
        if (m := re.match(r"COPY\s+(.+)\s+\S+$", line.strip()))
        for src in m.group(1).split()
    ]
    assert sources, "Dockerfile copies nothing"
    for src in sources:
        assert (ROOT / src).exists(), src


def test_worker_app_reads_broker_from_settings(monkeypatch) -> None:
    import importlib

    from lor.config import get_settings

    monkeypatch.setenv("LOR_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672//")
    get_settings.cache_clear()
    import workers.app

    app = importlib.reload(workers.app).app
    assert app.conf.broker_url.startswith("amqp://")
    get_settings.cache_clear()


def test_image_installs_once_and_beat_writes_where_its_user_may() -> None:
    """One non-editable install (migrations ship in the package), and beat's schedule file
    goes to a folder the image's non-root user owns (its home), not the root-owned source."""
    text = (ROOT / "docker" / "Dockerfile").read_text()
    installs = re.findall(r"pip install\b[^\n&]*", text)
    assert len(installs) == 1 and "-e" not in installs[0].split(), installs
    user = re.search(r"^USER\s+(\S+)", text, re.MULTILINE)
    assert user is not None
    assert re.search(rf"useradd\s+--create-home\b.*\b{user.group(1)}\b", text)
    home = f"/home/{user.group(1)}"
    after_user = text[user.end() :]
    assert re.search(rf"^WORKDIR\s+{home}\s*$", after_user, re.MULTILINE)
    beat = yaml.safe_load((ROOT / "docker" / "compose.yaml").read_text())["services"]["beat"]
    schedule = [arg for arg in beat["entrypoint"] if arg.startswith("--schedule=")]
    assert len(schedule) == 1 and schedule[0].split("=", 1)[1].startswith(home + "/")
