"""Fast redshift SQL: one-pass pz_* functions, parallel run_posteriors_z_between.

Same signatures and results as 0002/0003 (see sql/0004_fast_pz.sql). The downgrade re-runs
the 0002 and 0003 SQL files, which restores their definitions, and drops the two helpers
that 0004 adds.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25 11:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

from lor.db.migrate import read_sql

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: Functions that exist only from 0004 on (everything else 0004 replaces in place).
NEW_FUNCTIONS = (
    "lor.run_has_newer_posterior(integer, bigint, integer)",
    "lor.norm_tail(double precision)",
)


def upgrade() -> None:
    op.execute(read_sql("0004_fast_pz.sql"))


def downgrade() -> None:
    op.execute(read_sql("0002_posteriors.sql"))
    op.execute(read_sql("0003_posterior_views.sql"))
    for signature in NEW_FUNCTIONS:
        op.execute(f"DROP FUNCTION IF EXISTS {signature}")
