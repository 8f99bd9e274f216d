"""Schema migrations of the marketing store (Alembic), run by ``baton db upgrade``.

Upgrading is idempotent: an up-to-date database is left untouched.  A transaction-level
advisory lock serialises concurrent upgrades (several Airflow workers starting at once).
"""

from __future__ import annotations

import logging
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"
_LOCK_KEY = 0x0BA7_0001


def alembic_config(engine: Engine | None = None) -> Config:
    """An Alembic configuration for the store's migrations (on *engine*'s database when given)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    if engine is not None:
        cfg.set_main_option(
            "sqlalchemy.url", engine.url.render_as_string(hide_password=False).replace("%", "%%")
        )
    return cfg


def head_revision() -> str | None:
    """The newest migration revision this code ships."""
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(engine: Engine) -> str | None:
    """The revision the store's database is at (None when never migrated)."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def require_current(engine: Engine) -> None:
    """ConfigError unless the store is reachable and migrated to the newest revision."""
    from sqlalchemy.exc import OperationalError

    from baton.errors import ConfigError
    from baton.store.engine import connection_problem

    try:
        current = current_revision(engine)
    except OperationalError as exc:
        raise ConfigError(connection_problem(engine.url, exc)) from None
    head = head_revision()
    if current != head:
        state = "empty (no tables)" if current is None else f"at revision {current}, not {head}"
        raise ConfigError(f"the store is {state}: run `baton db upgrade` first")


def upgrade(engine: Engine, revision: str = "head") -> tuple[str | None, str | None]:
    """Bring the store to ``revision``; returns (before, after) revisions."""
    cfg = alembic_config(engine)
    with engine.begin() as conn:
        conn.execute(sa.text("select pg_advisory_xact_lock(:k)"), {"k": _LOCK_KEY})
        before = MigrationContext.configure(conn).get_current_revision()
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)
        after = MigrationContext.configure(conn).get_current_revision()
    if before != after:
        log.info("store migrated from %s to %s", before, after)
    return before, after
