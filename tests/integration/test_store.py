"""The Alembic migrations create exactly the tables of ``baton.store.schema``, and
``baton db upgrade`` is idempotent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Engine

from baton.store.migrate import head_revision, upgrade
from baton.store.schema import metadata

pytestmark = pytest.mark.integration


def test_migrations_match_the_schema(fresh_store: Engine) -> None:
    with fresh_store.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        diffs = compare_metadata(ctx, metadata)
    assert diffs == []


def test_upgrade_is_idempotent(fresh_store: Engine) -> None:
    head = head_revision()
    assert upgrade(fresh_store) == (head, head)
    with fresh_store.connect() as conn:
        tables = set(sa.inspect(conn).get_table_names())
        bucket = conn.execute(sa.text("select baton_bucket('baton:c1')")).scalar()
    assert set(metadata.tables) <= tables
    import hashlib

    assert bucket == int(hashlib.sha256(b"baton:c1").hexdigest()[:8], 16) % 10000


def test_baton_shard_is_the_range_of_the_stored_bucket(fresh_store: Engine) -> None:
    """SQL's baton_shard, the bucket a message stores and baton.store.shards agree."""
    import hashlib

    from baton.store.shards import predicate, shard_of

    ids = [f"c{i}" for i in range(200)] + ["ÄÖ@x", ""]
    with fresh_store.connect() as conn:
        for cid in ids:
            conn.execute(
                sa.text(
                    "insert into messages (cycle_at, customer_id, campaign_id, channel, send_at)"
                    " values (now(), :c, 'x', 'email', now())"
                ),
                {"c": cid},
            )
        for shards in (1, 2, 3, 8):
            rows = conn.execute(
                sa.text("select customer_id, bucket, baton_shard(customer_id, :n) from messages"),
                {"n": shards},
            ).all()
            for cid, bucket, shard in rows:
                assert bucket == int(hashlib.md5(cid.encode()).hexdigest()[:8], 16)
                assert shard == shard_of(bucket, shards)
            for k in range(shards):
                picked = conn.execute(
                    sa.text(f"select customer_id from messages where {predicate('bucket', k, shards)}")
                )
                assert sorted(picked.scalars()) == sorted(c for c, _, s in rows if s == k)
        conn.rollback()  # leaves the shared store as it was


def test_db_upgrade_command(fresh_store: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from baton.cli import app

    monkeypatch.setenv("BATON_DATABASE_URL", fresh_store.url.render_as_string(hide_password=False))
    result = CliRunner().invoke(app, ["db", "upgrade"])
    assert result.exit_code == 0, result.output
    assert "up to date" in result.output


@pytest.mark.skipif(bool(os.environ.get("BATON_DATABASE_URL")), reason="about the embedded server only")
def test_a_fresh_embedded_server_runs_with_its_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server initialised just now is restarted so that the start-only settings
    (shared_buffers, wal_buffers) are in effect, not merely pending; Baton's databases
    compare text bytewise."""
    from baton.store import engine as store_engine

    monkeypatch.setenv("BATON_HOME", str(tmp_path))
    url = store_engine.start_embedded()
    try:
        admin = sa.create_engine(url.set(database="postgres"))
        with admin.connect() as conn:
            rows = conn.exec_driver_sql(
                "select name, current_setting(name), pending_restart from pg_settings where name = any(%(n)s)",
                {"n": list(store_engine.EMBEDDED_SETTINGS)},
            ).all()
        admin.dispose()
        assert {name: store_engine._norm(value) for name, value, _ in rows} == {
            k: store_engine._norm(v) for k, v in store_engine.EMBEDDED_SETTINGS.items()
        }
        assert not any(pending for _, _, pending in rows)
        store_engine.ensure_database(url.set(database="collation_check"))
        check = sa.create_engine(url.set(database="collation_check"))
        with check.connect() as conn:
            assert (
                conn.exec_driver_sql(
                    "select datcollate from pg_database where datname = current_database()"
                ).scalar()
                == "C"
            )
            # bytewise: upper case before lower case, as Python's sorted() has it
            assert conn.exec_driver_sql("select 'b' > 'B' and 'a' > 'Z'").scalar() is True
        check.dispose()
    finally:
        assert store_engine.stop_embedded()


def test_the_decisions_view_has_the_documented_columns(fresh_store: Engine) -> None:
    from baton.store.schema import DECISIONS_VIEW_COLUMNS

    with fresh_store.connect() as conn:
        columns = [c["name"] for c in sa.inspect(conn).get_columns("decisions")]
        of = conn.execute(sa.text("select * from baton_decisions_of('nobody')"))
        assert list(of.keys()) == columns
    assert tuple(columns) == DECISIONS_VIEW_COLUMNS
