"""``lor models`` and the content-addressed model store, on the test database.

Registered artifacts are copied into the model store and their rows hold ``sha256:<hex>``,
so a model registered from a folder that later moves or disappears still loads; rows from
before the store (absolute paths) still load while their artifact can be found, and
registering again re-points them.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine, text

from lor.artifacts import ModelStore, artifact_sha256, content_uri
from lor.cli.main import cli
from lor.db.model_store import shipped_artifacts
from lor.db.registry import Registry
from lor.errors import ArtifactError


def _invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.output


@pytest.fixture()
def store(lor_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModelStore:
    """An empty model store of this test (LOR_MODEL_STORE), with lor pointed at the test db."""
    from lor.config import get_settings

    root = tmp_path / "models"
    monkeypatch.setenv("LOR_MODEL_STORE", str(root))
    get_settings.cache_clear()
    return ModelStore(root)


def _rows(engine: Engine) -> dict[str, tuple[int, str, str]]:
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT kind, id, artifact_sha256, artifact_uri FROM lor.model_versions")
        ).all()
    return {kind: (i, sha, uri) for kind, i, sha, uri in rows}


def test_register_shipped_list_and_verify(engine: Engine, store: ModelStore) -> None:
    code, out = _invoke("models", "register", "--shipped")
    assert code == 0, out
    rows = _rows(engine)
    shipped = shipped_artifacts()
    assert set(rows) == {"emulator", "estimator"}
    for kind, (_, sha, uri) in rows.items():
        assert sha == shipped[kind][1] and uri == content_uri(sha)
        assert sha in store and artifact_sha256(store.path(sha)) == sha
    assert f"emulator: version {rows['emulator'][0]}" in out and "prior: version" in out
    assert _invoke("models", "register", "--shipped") == (code, out)  # idempotent

    code, out = _invoke("models", "list", "--json")
    assert code == 0, out
    lines = [line for line in out.splitlines() if line.startswith("{")]  # stderr: the store
    listed = {r["kind"]: r for r in map(json.loads, lines)}
    for kind, (i, sha, _) in rows.items():
        assert listed[kind]["id"] == i and listed[kind]["found_at"] == str(store.path(sha))

    code, out = _invoke("models", "verify")
    assert code == 0 and "2 artifacts verified" in out, out
    weights = store.path(rows["estimator"][1]) / "weights.npz"
    weights.write_bytes(b"X" + weights.read_bytes()[1:])
    code, out = _invoke("models", "verify")
    assert code == 2, out
    assert "FAILED" in out and "1 of 2 registered artifacts do not verify" in out
    with engine.connect() as conn, pytest.raises(ArtifactError, match="sha256"):
        Registry(engine, store).models.load(conn, rows["estimator"][0], "estimator")


def test_register_dir_survives_the_folder_moving(
    engine: Engine, store: ModelStore, tmp_path: Path
) -> None:
    trained = tmp_path / "checkout" / "my-emulator"
    shutil.copytree(shipped_artifacts()["emulator"][0], trained)
    code, out = _invoke("models", "register", str(trained))
    assert code == 0, out
    version = _rows(engine)["emulator"][0]
    assert out.strip() == f"emulator: version {version}"
    shutil.rmtree(tmp_path / "checkout")  # the checkout moves away
    with engine.connect() as conn:
        emulator = Registry(engine, store).models.load(conn, version, "emulator")
    assert emulator.spec["family"] == "speculator"


def test_legacy_path_rows_load_and_reregistering_repoints_them(
    engine: Engine, store: ModelStore, tmp_path: Path
) -> None:
    folder, sha = shipped_artifacts()["estimator"]
    emu_folder, emu_sha = shipped_artifacts()["emulator"]
    elsewhere = tmp_path / "old-checkout" / "npe"
    shutil.copytree(folder, elsewhere)
    assert _invoke("models", "register", "--shipped")[0] == 0
    rows = _rows(engine)
    est, emu = rows["estimator"][0], rows["emulator"][0]
    with engine.begin() as conn:  # rows as registered before the store: absolute host paths
        for version, path in ((est, str(elsewhere)), (emu, "/a/checkout/that/moved/speculator")):
            conn.execute(
                text("UPDATE lor.model_versions SET artifact_uri = :p WHERE id = :i"),
                {"p": path, "i": version},
            )
    shutil.rmtree(store.root)
    models = Registry(engine, store).models
    assert sha not in store and emu_sha not in store
    assert models.locate(str(elsewhere), sha) == elsewhere  # the old path still holds it
    assert models.locate("/a/checkout/that/moved/speculator", emu_sha) == emu_folder  # shipped
    with engine.connect() as conn:
        assert models.load(conn, est, "estimator").spec["family"] == "npe_mlp"
    code, out = _invoke("models", "verify")
    assert code == 0, out

    other = tmp_path / "other"  # an artifact neither stored nor shipped
    shutil.copytree(emu_folder, other)
    spec = json.loads((other / "spec.json").read_text())
    (other / "spec.json").write_text(json.dumps(spec | {"note": "retrained"}))
    other_sha = artifact_sha256(other)
    assert models.locate(str(other), other_sha) == other
    with pytest.raises(ArtifactError, match="lor models register"):
        models.locate(str(emu_folder), other_sha)  # an old path now holding something else

    code, out = _invoke("models", "register", str(elsewhere))
    assert code == 0 and out.strip() == f"estimator: version {est}", out
    assert _rows(engine)["estimator"][2] == content_uri(sha) and sha in store
    shutil.rmtree(tmp_path / "old-checkout")
    with engine.connect() as conn:
        assert models.load(conn, est, "estimator").spec["family"] == "npe_mlp"
    assert _rows(engine)["emulator"][2] == "/a/checkout/that/moved/speculator"  # until registered


def test_register_needs_exactly_one_source(store: ModelStore, tmp_path: Path) -> None:
    code, out = _invoke("models", "register")
    assert code == 2 and "FOLDER or --shipped" in out
    code, out = _invoke("models", "register", str(tmp_path), "--shipped")
    assert code == 2 and "FOLDER or --shipped" in out
    code, out = _invoke("models", "register", str(tmp_path))  # no artifact there
    assert code == 2 and "no readable model artifact" in out


def test_store_add_is_verified_and_idempotent(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "store")
    folder, sha = shipped_artifacts()["emulator"]
    assert store.add(folder, sha) == sha == store.add(folder)
    assert store.shas() == [sha]
    bad = tmp_path / "bad"
    shutil.copytree(folder, bad)
    (bad / "weights.npz").write_bytes(b"not a zip")
    with pytest.raises(ArtifactError, match="sha256"):
        store.add(bad)
    with pytest.raises(ArtifactError, match="expected"):
        store.add(folder, "0" * 64)
    with pytest.raises(ArtifactError, match="content address"):
        store.path("../escape")
