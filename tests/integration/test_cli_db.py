"""``baton db url`` prints what psql accepts (the store's and Airflow's databases)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def _psql() -> str:
    """The psql client that ships with the embedded server (pgserver), so the test needs no system psql."""
    import pgserver

    path = Path(pgserver.__file__).parent / "pginstall" / "bin" / "psql"
    assert path.is_file(), path
    return str(path)


def _baton(*args: str, env: dict[str, str]) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "baton", *args], capture_output=True, text=True, env=env, cwd=ROOT, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    return proc.stdout.strip()


def _query(url: str, sql: str) -> str:
    proc = subprocess.run([_psql(), url, "-Atc", sql], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, f"psql refused {url!r}: {proc.stderr}"
    return proc.stdout.strip()


def test_store_url_is_accepted_by_psql(fresh_store: Engine) -> None:
    env = dict(os.environ, BATON_DATABASE_URL=fresh_store.url.render_as_string(hide_password=False))
    url = _baton("db", "url", env=env)
    assert url.startswith("postgresql://"), url
    assert _query(url, "select current_database()") == fresh_store.url.database
    assert _baton("db", "url", "--sqlalchemy", env=env).startswith("postgresql+psycopg://")


def test_embedded_store_and_airflow_urls_are_accepted_by_psql() -> None:
    env = {k: v for k, v in os.environ.items() if k != "BATON_DATABASE_URL"}
    env["BATON_HOME"] = str(ROOT)
    assert _query(_baton("db", "url", env=env), "select current_database()") == "baton"
    airflow = _baton("db", "url", "--airflow", env=env)
    assert airflow.startswith("postgresql://")
    assert _query(airflow, "select current_database()") == "airflow"
    assert _baton("db", "url", "--airflow", "--sqlalchemy", env=env).startswith("postgresql+psycopg2://")
