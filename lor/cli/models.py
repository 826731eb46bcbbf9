"""``lor models``: the content-addressed model store and the model versions that point into it.

Commands parse and format; the work is :class:`lor.db.model_store.ModelManager`'s (through
:class:`lor.db.registry.Registry`).
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from lor.errors import ArtifactError


def _registry():  # type: ignore[no-untyped-def]
    from lor.db.engine import make_engine
    from lor.db.migrate import check_schema
    from lor.db.registry import Registry

    engine = make_engine()
    check_schema(engine)
    return Registry(engine)


@click.group("models")
def models_group() -> None:
    """Trained model artifacts: register them into the model store, list, verify."""


@models_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per model version.")
def list_command(as_json: bool) -> None:
    """Every registered model version and where its artifact is found."""
    registry = _registry()
    click.echo(f"model store: {registry.model_store.root}", err=True)
    for record in registry.models.records():
        try:
            found: str = str(registry.models.locate(record.artifact_uri, record.artifact_sha256))
        except ArtifactError:
            found = "MISSING"
        if as_json:
            row = {
                "id": record.id, "kind": record.kind, "family": record.family_name,
                "family_version": record.family_version, "sha256": record.artifact_sha256,
                "uri": record.artifact_uri, "found_at": found,
                "created_at": record.created_at.isoformat(),
            }  # fmt: skip
            click.echo(json.dumps(row))
        else:
            click.echo(
                f"{record.id:>4}  {record.kind:<9}  {record.family_name} v{record.family_version}"
                f"  {record.artifact_uri}  -> {found}"
            )


@models_group.command("register")
@click.argument(
    "folder", required=False, type=click.Path(exists=True, file_okay=False, path_type=Path)
)
@click.option(
    "--shipped", is_flag=True, help="The artifacts shipped with lor (and the interim prior)."
)
def register_command(folder: Path | None, shipped: bool) -> None:
    """Copy a trained artifact FOLDER (spec.json + weights) into the model store and record
    it as a model version; or, with --shipped, the shipped emulator and estimator."""
    if (folder is None) == (not shipped):
        raise click.UsageError("give an artifact FOLDER or --shipped (not both)")
    registry = _registry()
    if shipped:
        from lor.reporting.demo import register_shipped_models

        ids = register_shipped_models(registry.engine, registry)
        for kind, version_id in ids.items():
            click.echo(f"{kind}: version {version_id}")
        return
    assert folder is not None
    kind, version_id = registry.models.register(folder)
    click.echo(f"{kind}: version {version_id}")


@models_group.command("verify")
def verify_command() -> None:
    """Re-hash every registered artifact (spec and weights); fails if any does not verify."""
    registry = _registry()
    checks = registry.models.verify()
    for check in checks:
        record = check.record
        state = "ok" if check.error is None else f"FAILED: {check.error}"
        click.echo(f"{record.id:>4}  {record.kind:<9}  {record.artifact_sha256[:12]}  {state}")
    failed = [c for c in checks if c.error is not None]
    if failed:
        raise ArtifactError(f"{len(failed)} of {len(checks)} registered artifacts do not verify")
    click.echo(f"{len(checks)} artifacts verified in {registry.model_store.root}")
