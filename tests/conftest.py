"""Shared fixtures.

``store_engine`` gives each test session a fresh, migrated database: a new database
on the server of ``BATON_DATABASE_URL`` when it is set, otherwise on the embedded
PostgreSQL under ``.baton/pg`` (started on demand).  Tests that need it are marked
``integration``.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

os.environ.setdefault("BATON_HOME", os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _fresh_database(prefix: str) -> Iterator[Engine]:
    from baton.store import engine as store_engine
    from baton.store.migrate import upgrade

    base = store_engine.server_url()
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    url = base.set(database=name)
    store_engine.ensure_database(url)
    eng = sa.create_engine(url)
    upgrade(eng)
    try:
        yield eng
    finally:
        eng.dispose()
        admin = sa.create_engine(base.set(database="postgres"), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.exec_driver_sql(f'drop database if exists "{name}" with (force)')
        admin.dispose()


@pytest.fixture(scope="session")
def store_engine() -> Iterator[Engine]:
    """A migrated store database for this test session (dropped afterwards)."""
    yield from _fresh_database("baton_test")


@pytest.fixture()
def fresh_store() -> Iterator[Engine]:
    """A migrated store database for one test."""
    yield from _fresh_database("baton_t")
