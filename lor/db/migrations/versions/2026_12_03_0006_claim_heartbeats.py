"""Claim heartbeats (lor.workers), true redshifts (lor.truth), and clear errors from the
redshift SQL on corrupt params.

sql/0006_claim_heartbeats.sql adds the heartbeat table; sql/0006_truth.sql the table of known
redshifts that the run dashboard compares posteriors with; sql/0006_pz_checks.sql replaces the
four pz_* functions of 0004 in place (same signatures and values; corrupt sigmas and 2-D
arrays raise named errors). The downgrade drops the tables and re-runs 0004's SQL, which
restores its definitions.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 10:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

from lor.db.migrate import read_sql

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(read_sql("0006_claim_heartbeats.sql"))
    op.execute(read_sql("0006_truth.sql"))
    op.execute(read_sql("0006_pz_checks.sql"))


def downgrade() -> None:
    op.execute(read_sql("0004_fast_pz.sql"))
    op.execute("DROP TABLE IF EXISTS lor.truth")
    op.execute("DROP TABLE IF EXISTS lor.workers")
