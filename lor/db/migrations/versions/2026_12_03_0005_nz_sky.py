"""n(z) aggregates and tomographic helpers; a native sky index, cone search and cross-match.

See sql/0005_nz_sky.sql. The sky index is a btree on an expression of ``dec`` and on ``ra``
(declination zone, right ascension), so it needs no extension and no new column: the same on
the system PostgreSQL and the embedded pgserver. The downgrade drops the index and every
function and aggregate that 0005 adds.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03 09:45:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

from lor.db.migrate import read_sql

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: Aggregates first (they depend on the functions), then functions, dependents first.
DROPS = (
    "AGGREGATE lor.nz(real[], double precision, double precision, integer)",
    "AGGREGATE lor.nz_jackknife(double precision[], bigint)",
    "FUNCTION lor.crossmatch(double precision[], double precision[], double precision, integer)",
    "FUNCTION lor.cone(double precision, double precision, double precision, integer)",
    "FUNCTION lor.cone_objects(double precision, double precision, double precision)",
    "FUNCTION lor.sky_ranges(double precision, double precision, double precision)",
    "FUNCTION lor.sky_sep_deg(double precision, double precision, double precision, "
    "double precision)",
    "FUNCTION lor.nz_grid(double precision, double precision, integer)",
    "FUNCTION lor.nz_step(double precision[], real[], double precision, double precision, integer)",
    "FUNCTION lor.nz_combine(double precision[], double precision[])",
    "FUNCTION lor.nz_final(double precision[])",
    "FUNCTION lor.nz_jackknife_step(double precision[], double precision[], bigint)",
    "FUNCTION lor.nz_jackknife_final(double precision[])",
    "FUNCTION lor.nz_group(bigint)",
    "FUNCTION lor.pz_bin(real[], double precision[], double precision)",
    "FUNCTION lor.pz_bin_probs(real[], double precision[])",
    "FUNCTION lor.tomo_bin(double precision, double precision[])",
    "TYPE lor.nz_estimate",
)


def upgrade() -> None:
    op.execute(read_sql("0005_nz_sky.sql"))


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS lor.ix_objects_sky")
    for what in DROPS:
        kind, _, signature = what.partition(" ")
        op.execute(f"DROP {kind} IF EXISTS {signature}")
    op.execute("DROP FUNCTION IF EXISTS lor.sky_zone(double precision)")
