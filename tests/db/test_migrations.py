"""Migrations on a real PostgreSQL: upgrade, stale-schema refusal, roles, comments, SQL."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from lor.db.admin import temporary_database
from lor.db.engine import make_engine
from lor.db.migrate import check_schema, current_revision, downgrade, head_revision, upgrade
from lor.db.models import N_PARTITIONS, PARTITIONED_TABLES
from lor.errors import StaleSchemaError


def test_empty_database_is_refused_then_upgraded(server_url: str) -> None:
    with temporary_database(server_url, "lor_test_mig") as url:
        engine = make_engine(url)
        with pytest.raises(StaleSchemaError, match="lor db upgrade"):
            check_schema(engine)
        assert current_revision(engine) is None
        assert upgrade(engine) == head_revision()
        check_schema(engine)
        assert upgrade(engine) == head_revision()  # idempotent
        assert downgrade(engine, "base") is None
        with pytest.raises(StaleSchemaError):
            check_schema(engine)
        upgrade(engine)
        check_schema(engine)
        engine.dispose()


def test_every_column_has_a_comment(engine) -> None:
    with engine.connect() as conn:
        missing = conn.execute(
            text(
                """SELECT c.relname, a.attname FROM pg_attribute a
                   JOIN pg_class c ON c.oid = a.attrelid
                   JOIN pg_namespace n ON n.oid = c.relnamespace
                   WHERE n.nspname = 'lor' AND c.relkind IN ('r', 'p') AND a.attnum > 0
                     AND NOT a.attisdropped AND c.relname <> 'alembic_version'
                     AND c.relname !~ '_p[0-9]+$'
                     AND col_description(c.oid, a.attnum) IS NULL"""
            )
        ).all()
    assert missing == []


def test_big_tables_are_hash_partitioned_on_tract(engine) -> None:
    with engine.connect() as conn:
        for table in PARTITIONED_TABLES:
            key = conn.execute(
                text("SELECT pg_get_partkeydef(CAST(:t AS regclass))"), {"t": f"lor.{table}"}
            ).scalar_one()
            assert key == "HASH (tract_id)"
            n = conn.execute(
                text("SELECT count(*) FROM pg_inherits WHERE inhparent = CAST(:t AS regclass)"),
                {"t": f"lor.{table}"},
            ).scalar_one()
            assert n == N_PARTITIONS


def test_roles_reader_cannot_write_worker_can_write_posteriors(engine) -> None:
    with engine.connect() as conn:
        conn.execute(text("SET ROLE lor_reader"))
        assert conn.execute(text("SELECT count(*) FROM lor.objects")).scalar_one() == 0
        with pytest.raises(Exception, match="permission denied"):
            conn.execute(text("DELETE FROM lor.objects"))
        conn.rollback()
        conn.execute(text("SET ROLE lor_worker"))
        priv = conn.execute(
            text(
                "SELECT has_table_privilege('lor_worker', 'lor.posteriors', 'INSERT'), "
                "has_table_privilege('lor_worker', 'lor.objects', 'INSERT'), "
                "has_table_privilege('lor_reader', 'lor.posteriors', 'INSERT')"
            )
        ).one()
        assert tuple(priv) == (True, False, False)


def test_sql_abmag_function(engine) -> None:
    with engine.connect() as conn:
        mag = conn.execute(text("SELECT lor.njy_to_abmag(3631e9), lor.njy_to_abmag(-1)")).one()
    assert mag[0] == pytest.approx(0.0, abs=1e-9)
    assert mag[1] is None
