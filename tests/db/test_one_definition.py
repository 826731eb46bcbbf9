"""The Python definitions the schema is read through agree with the migrated database."""

from __future__ import annotations

import re

from sqlalchemy import Engine, text

from lor.db.models import METHODS, Posterior
from lor.posteriors.base import SUMMARY_COLUMNS


def _is_summary(name: str) -> bool:
    return name.startswith(("z_", "log_mstar_", "log_sfr_"))


def test_summary_columns_are_the_table_columns_in_order(engine: Engine) -> None:
    with engine.connect() as conn:
        names = conn.execute(
            text(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_schema = 'lor' AND table_name = 'posteriors' ORDER BY ordinal_position"
            )
        ).scalars()
        in_db = tuple(n for n in names if _is_summary(n))
    assert in_db == SUMMARY_COLUMNS
    assert tuple(c.name for c in Posterior.__table__.columns if _is_summary(c.name)) == in_db


def test_methods_are_what_the_check_constraint_accepts(engine: Engine) -> None:
    with engine.connect() as conn:
        check = conn.execute(
            text(
                "SELECT pg_get_constraintdef(c.oid) FROM pg_constraint c "
                "JOIN pg_class t ON t.oid = c.conrelid "
                "JOIN pg_namespace n ON n.oid = t.relnamespace "
                "WHERE n.nspname = 'lor' AND t.relname = 'posteriors' AND c.contype = 'c' "
                "AND pg_get_constraintdef(c.oid) LIKE '%method%'"
            )
        ).scalar_one()
    assert set(re.findall(r"'([a-z_]+)'", check)) == set(METHODS), check


def test_no_column_comment_claims_a_missing_foreign_key(engine: Engine) -> None:
    """Every column whose comment says "FK to" has a foreign key constraint (0001 claimed
    two that do not exist; 0012 corrects their comments)."""
    with engine.connect() as conn:
        claimed = conn.execute(
            text(
                """SELECT c.relname, a.attname,
                          EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conrelid = c.oid
                                  AND k.contype = 'f' AND a.attnum = ANY (k.conkey))
                   FROM pg_attribute a
                   JOIN pg_class c ON c.oid = a.attrelid
                   JOIN pg_namespace n ON n.oid = c.relnamespace
                   WHERE n.nspname = 'lor' AND c.relkind IN ('r', 'p') AND NOT c.relispartition
                     AND a.attnum > 0 AND NOT a.attisdropped
                     AND col_description(c.oid, a.attnum) LIKE '%FK to%'"""
            )
        ).all()
    assert claimed and all(has_fk for _, _, has_fk in claimed), claimed
