"""Survey-wide model-error terms of calibration versions (lor.calibration_survey_terms).

See sql/0008_survey_model_error.sql. The downgrade drops the table: calibration versions
keep their per-tract terms and lose their SED offsets and error floors.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03 10:20:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

from lor.db.migrate import read_sql

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(read_sql("0008_survey_model_error.sql"))


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS lor.calibration_survey_terms")
