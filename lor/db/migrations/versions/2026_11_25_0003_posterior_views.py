"""Posterior views: latest posterior per object (per run and overall), z-interval queries.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 09:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

from lor.db.migrate import read_sql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: name -> (columns, comment). Per-tract summary queries of one run: equality on run and tract,
#: then a z_q50 range that prefilters probability cuts (see sql/0003_posterior_views.sql).
#: Posteriors of one object version over all runs (lor.latest_posteriors by object): the
#: unique (tract_id, run_id, object_id) key cannot serve it without a run id.
INDEXES = {
    "ix_posteriors_run_id_tract_id_z_q50": (
        ["run_id", "tract_id", "z_q50"],
        "Summary queries of one run and tract: equality on run and tract, range on z_q50 "
        "(prefilter of P(z1 < z < z2) cuts).",
    ),
    "ix_posteriors_tract_id_object_id": (
        ["tract_id", "object_id"],
        "Every posterior of one object version, over all runs (latest_posteriors by object).",
    ),
}
FUNCTIONS = (
    "lor.run_posteriors_z_between(integer, integer, double precision, double precision, "
    "double precision)",
    "lor.run_posteriors(integer)",
)


def upgrade() -> None:
    for name, (columns, comment) in INDEXES.items():
        op.create_index(name, "posteriors", columns, schema="lor")
        op.execute(f"COMMENT ON INDEX lor.{name} IS '{comment}'")
    op.execute(read_sql("0003_posterior_views.sql"))


def downgrade() -> None:
    op.execute("DROP VIEW IF EXISTS lor.latest_posteriors")
    for signature in FUNCTIONS:
        op.execute(f"DROP FUNCTION IF EXISTS {signature}")
    for name in INDEXES:
        op.drop_index(name, table_name="posteriors", schema="lor")
