"""The Alembic migrations create exactly the tables of ``baton.store.schema``, and
``baton db upgrade`` is idempotent."""

from __future__ import annotations

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


def test_db_upgrade_command(fresh_store: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from baton.cli import app

    monkeypatch.setenv("BATON_DATABASE_URL", fresh_store.url.render_as_string(hide_password=False))
    result = CliRunner().invoke(app, ["db", "upgrade"])
    assert result.exit_code == 0, result.output
    assert "up to date" in result.output
