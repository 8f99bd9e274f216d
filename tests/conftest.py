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
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("BATON_HOME", ROOT)
# Airflow reads its configuration when first imported: point it at a test home, the
# project's dags/, and a metadata database of its own on the same PostgreSQL server.
os.environ.setdefault("AIRFLOW_HOME", os.path.join(ROOT, ".baton", "airflow-test"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("AIRFLOW__CORE__DAGS_FOLDER", os.path.join(ROOT, "dags"))
os.environ.setdefault("AIRFLOW__CORE__PLUGINS_FOLDER", os.path.join(ROOT, "plugins"))
AIRFLOW_TEST_DB = os.environ.get("BATON_TEST_AIRFLOW_DB", "airflow_test")  # one per concurrent test run


def _fresh_database(prefix: str, *, migrate: bool = True) -> Iterator[Engine]:
    from baton.store import engine as store_engine
    from baton.store.migrate import upgrade

    base = store_engine.server_url()
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    url = base.set(database=name)
    store_engine.ensure_database(url)
    eng = sa.create_engine(url)
    if migrate:
        upgrade(eng)
    try:
        yield eng
    finally:
        eng.dispose()
        store_engine.drop_database(url)


@pytest.fixture(scope="session")
def store_engine() -> Iterator[Engine]:
    """A migrated store database for this test session (dropped afterwards)."""
    yield from _fresh_database("baton_test")


@pytest.fixture()
def fresh_store() -> Iterator[Engine]:
    """A migrated store database for one test."""
    yield from _fresh_database("baton_t")


@pytest.fixture()
def empty_store() -> Iterator[Engine]:
    """A database without tables for one test (e.g. to migrate step by step)."""
    yield from _fresh_database("baton_mig", migrate=False)


def airflow_test_url() -> str:
    from baton.store import engine as store_engine

    return (
        store_engine.server_url()
        .set(drivername="postgresql+psycopg2", database=AIRFLOW_TEST_DB)
        .render_as_string(hide_password=False)
    )


def pytest_configure(config: pytest.Config) -> None:
    """Point Airflow's metadata database at the test server — before any test module imports Airflow,
    and only when tests other than unit tests may run: ``make test-fast`` (``-m unit``) starts no database."""
    if (config.option.markexpr or "").strip() == "unit":
        return
    if "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN" not in os.environ:
        os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = airflow_test_url()


@pytest.fixture(autouse=True)
def _unit_tests_use_no_database(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """A test marked ``unit`` that reaches for the embedded PostgreSQL or opens a database connection fails."""
    if request.node.get_closest_marker("unit") is None:
        return
    import psycopg

    from baton.store import engine as store_engine

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("a unit test started a database or opened a connection: mark it integration")

    monkeypatch.setattr(store_engine, "start_embedded", refuse)
    monkeypatch.setattr(psycopg, "connect", refuse)


@pytest.fixture(scope="session")
def airflow_db() -> str:
    """Airflow's metadata database for tests, migrated (once per server)."""
    import subprocess
    import sys

    from sqlalchemy.engine import make_url

    from baton.store import engine as store_engine

    url = os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    store_engine.ensure_database(make_url(url).set(drivername="postgresql+psycopg"))
    proc = subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        capture_output=True,
        text=True,
        env=dict(os.environ),
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return url


def point_airflow_at(monkeypatch: pytest.MonkeyPatch, dags: Path) -> None:
    """Make ``dag.test()`` parse ``dags``: Airflow keeps the DAGs folder in ``airflow.settings``
    from its first import, so the environment variable alone does not move it."""
    import airflow.settings

    monkeypatch.setenv("AIRFLOW__CORE__DAGS_FOLDER", str(dags))
    monkeypatch.setattr(airflow.settings, "DAGS_FOLDER", str(dags))
