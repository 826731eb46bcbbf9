"""The package as a non-editable wheel: ``lor db upgrade`` and model registration work from
site-packages, away from the checkout (migrations, SQL and shipped models are package data).

The wheel's dependencies come from the test environment (a ``.pth`` line), not from PyPI,
so this takes about a minute; ``scripts/check_wheel.sh`` installs the wheel with its
dependencies into a fresh venv and runs ``lor demo`` as well.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from sqlalchemy import text

from lor.db.admin import temporary_database
from lor.db.engine import make_engine

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_installed_wheel_upgrades_a_database_and_registers_the_shipped_models(
    server_url: str, tmp_path: Path
) -> None:
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(REPO_ROOT)],
        check=True, timeout=300,
    )  # fmt: skip
    (wheel,) = dist.glob("lor-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = Path(
        subprocess.check_output(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            text=True,
        ).strip()
    )
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site),
         str(wheel)],
        check=True, timeout=300,
    )  # fmt: skip
    # dependencies from this environment; its .pth files (the editable lor) are not read
    (site / "test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    with temporary_database(server_url, "lor_test_wheel") as url:
        env = {
            "PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), "LOR_DATABASE_URL": url,
            "LOR_HOME": str(tmp_path / "lorhome"), "TF_CPP_MIN_LOG_LEVEL": "3",
        }  # fmt: skip

        def lor(*args: str) -> str:
            done = subprocess.run(
                [str(python), "-m", "lor.cli.main", *args], cwd=elsewhere, env=env,
                capture_output=True, text=True, timeout=600,
            )  # fmt: skip
            assert done.returncode == 0, done.stdout + done.stderr
            return done.stdout

        where = subprocess.check_output(
            [str(python), "-c", "import lor.db.migrate as m; print(m.__file__)"],
            cwd=elsewhere, env=env, text=True,
        )  # fmt: skip
        assert Path(where.strip()).is_relative_to(site), where
        assert "schema at revision" in lor("db", "upgrade")
        assert "estimator: version" in lor("models", "register", "--shipped")
        assert "2 artifacts verified" in lor("models", "verify")
        engine = make_engine(url)
        try:
            with engine.connect() as conn:
                uris = conn.execute(text("SELECT artifact_uri FROM lor.model_versions")).scalars()
                assert all(u.startswith("sha256:") for u in uris)
        finally:
            engine.dispose()
    assert (tmp_path / "lorhome" / "models").is_dir()  # the default store: LOR_HOME/models
