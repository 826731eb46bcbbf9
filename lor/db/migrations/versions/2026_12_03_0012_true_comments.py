"""Column comments that say what the schema does: ``lor.objects.release_id`` and
``lor.work_items.run_id`` have no foreign key constraint, which 0001's comments claimed
("FK to ..."). Comments only; the downgrade restores 0001's text.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03 14:30:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COMMENTS = {
    "objects.release_id": (
        "Release that introduced this object version (FK to releases).",
        "Release that introduced this object version (a lor.releases id; no foreign key).",
    ),
    "work_items.run_id": (
        "Run (FK to processing_runs).",
        "Run (a lor.processing_runs id; no foreign key).",
    ),
}


def _comment(column: str, text: str) -> None:
    op.execute(f"COMMENT ON COLUMN lor.{column} IS '{text}'")  # constants above, no user input


def upgrade() -> None:
    for column, (_, new) in COMMENTS.items():
        _comment(column, new)


def downgrade() -> None:
    for column, (old, _) in COMMENTS.items():
        _comment(column, old)
