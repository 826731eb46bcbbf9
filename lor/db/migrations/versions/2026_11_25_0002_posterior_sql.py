"""Posterior SQL: redshift PDF, CDF, interval probability and quantiles of stored posteriors.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 07:30:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

from lor.db.migrate import read_sql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FUNCTIONS = (
    "lor.pz_quantile(real[], double precision)",
    "lor.pz_prob(real[], double precision, double precision)",
    "lor.pz_cdf(real[], double precision)",
    "lor.pz_pdf(real[], double precision)",
    "lor.pz_mixture_cdf(double precision, double precision[], double precision[], "
    "double precision[])",
    "lor.pz_marginal(real[])",
    "lor.norm_cdf(double precision)",
)


def upgrade() -> None:
    op.execute(read_sql("0002_posteriors.sql"))


def downgrade() -> None:
    for signature in FUNCTIONS:
        op.execute(f"DROP FUNCTION IF EXISTS {signature}")
