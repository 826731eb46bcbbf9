"""No planner statistics for the flux arrays of ``lor.objects``.

ANALYZE of ``lor.objects`` (run by an ingest that grows it by more than 10%, and by
autovacuum) spent three quarters of its time on element statistics of ``flux`` and
``flux_err`` (issue #17: 2.1 s of 2.8 s for 1e6 rows), which only array operators in a WHERE
clause (``@>``, ``&&``) would use; no lor query filters on a flux element. Statistics target
0 skips them; the downgrade restores the default (-1).

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-03 18:10:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = ("flux", "flux_err")


def _statistics(target: int) -> None:
    for column in COLUMNS:  # constants above, no user input; recurses to every partition
        op.execute(f"ALTER TABLE lor.objects ALTER COLUMN {column} SET STATISTICS {target}")


def upgrade() -> None:
    _statistics(0)


def downgrade() -> None:
    _statistics(-1)
