"""Band sets as first-class objects: definition, its hash and the reference band per set.

See lor/db/sql/0011_band_sets.sql. ``lsst_ugrizy`` becomes ``lsst``. The downgrade drops the
new columns and the 16-band check and restores the old name.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03 14:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

from lor.db.migrate import read_sql

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(read_sql("0011_band_sets.sql"))


def downgrade() -> None:
    op.execute("ALTER TABLE lor.band_sets DROP CONSTRAINT IF EXISTS ck_band_sets_bands_fit_masks")
    op.execute(
        "UPDATE lor.band_sets SET name = 'lsst_ugrizy' WHERE name = 'lsst' AND NOT EXISTS "
        "(SELECT 1 FROM lor.band_sets WHERE name = 'lsst_ugrizy')"
    )
    op.execute(
        "ALTER TABLE lor.band_sets DROP COLUMN IF EXISTS definition_sha256, "
        "DROP COLUMN IF EXISTS definition, DROP COLUMN IF EXISTS reference_band"
    )
    op.execute("COMMENT ON COLUMN lor.band_sets.name IS 'Band set name, e.g. lsst_ugrizy.'")
