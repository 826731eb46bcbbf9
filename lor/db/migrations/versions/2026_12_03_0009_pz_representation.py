"""The redshift SQL functions check the posterior representation they read.

See lor/db/sql/0009_pz_representation.sql: row forms of the pz_* functions
(``lor.pz_prob(p, z1, z2)`` for a posterior row ``p``) raise a clear error for a
representation other than gmm_flow v1 instead of misreading its params;
``lor.run_posteriors_z_between`` checks each row it evaluates. The artifact_uri column's
comment now says it holds a content address. The downgrade drops the row forms and re-runs
the SQL of 0004 and 0006, which restores their definitions.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03 14:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

from lor.db.migrate import read_sql

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ROW_FORMS = (
    "lor.pz_pdf(record, double precision)",
    "lor.pz_cdf(record, double precision)",
    "lor.pz_prob(record, double precision, double precision)",
    "lor.pz_quantile(record, double precision)",
    "lor.pz_bin_probs(record, double precision[])",
    "lor.pz_bin(record, double precision[], double precision)",
    "lor.pz_representation_check(text, text)",
)


def upgrade() -> None:
    op.execute(read_sql("0009_pz_representation.sql"))


def downgrade() -> None:
    for signature in ROW_FORMS:
        op.execute(f"DROP FUNCTION IF EXISTS {signature}")
    op.execute(read_sql("0004_fast_pz.sql"))
    op.execute(read_sql("0006_pz_checks.sql"))
    op.execute(
        "COMMENT ON COLUMN lor.model_versions.artifact_uri IS 'Where the artifact lives (path).'"
    )
