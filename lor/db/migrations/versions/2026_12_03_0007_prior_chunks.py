"""Prior-only reprocess runs work in chunks of the parent run's posteriors (lor.prior_chunks).

See sql/0007_prior_chunks.sql. The downgrade drops the table (runs that used it keep their
posteriors; their chunk records go).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03 10:10:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

from lor.db.migrate import read_sql

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(read_sql("0007_prior_chunks.sql"))


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS lor.prior_chunks")
