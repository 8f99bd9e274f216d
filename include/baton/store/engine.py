"""Where the marketing store lives and how to connect to it.

``BATON_DATABASE_URL`` (any SQLAlchemy URL for PostgreSQL) wins.  Without it Baton
starts an embedded PostgreSQL (pgserver) whose data lives under ``$BATON_HOME/.baton/pg``
(``BATON_HOME`` defaults to the current directory).  The embedded server keeps running
after the process that started it exits, so Airflow's many processes can share it;
``baton db stop`` stops it.

The same server also holds Airflow's metadata database (database ``airflow``), while
Baton's own tables live in database ``baton``.
"""

from __future__ import annotations

import logging
import os
import warnings
from functools import lru_cache
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine, make_url

from baton.errors import ConfigError

log = logging.getLogger(__name__)

STORE_DB = "baton"
AIRFLOW_DB = "airflow"


def baton_home() -> Path:
    """The directory whose ``.baton/`` holds the embedded database and demo state."""
    return Path(os.environ.get("BATON_HOME") or os.getcwd()).resolve()


def embedded_dir() -> Path:
    return baton_home() / ".baton" / "pg"


def _normalise(url: str) -> URL:
    try:
        u = make_url(url)
    except Exception as exc:  # sqlalchemy raises ArgumentError
        raise ConfigError(
            f"BATON_DATABASE_URL is not a valid database URL ({exc}); "
            "expected e.g. postgresql://user:password@host:5432/baton"
        ) from exc
    if not u.drivername.startswith("postgresql"):
        raise ConfigError(f"BATON_DATABASE_URL must point to PostgreSQL, got driver {u.drivername!r}")
    return u.set(drivername="postgresql+psycopg")


def start_embedded() -> URL:
    """Start (or find running) the embedded PostgreSQL and return a URL of its server.

    The returned URL names the ``postgres`` maintenance database.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver  # lazily: only needed without BATON_DATABASE_URL

    logging.getLogger("pgserver").setLevel(logging.WARNING)
    pgdata = embedded_dir()
    pgdata.mkdir(parents=True, exist_ok=True)
    log.info("Using embedded PostgreSQL in %s", pgdata)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs: XDG_RUNTIME_DIR not set (harmless)
        server = pgserver.get_server(pgdata, cleanup_mode=None)
    return make_url(server.get_uri()).set(drivername="postgresql+psycopg")


def stop_embedded() -> bool:
    """Stop the embedded server if it runs; True when one was stopped."""
    pgdata = embedded_dir()
    if not (pgdata / "postmaster.pid").exists():
        return False
    from pgserver._commands import pg_ctl  # type: ignore[import-untyped]

    user = "pgserver" if os.geteuid() == 0 else None
    try:
        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata, user=user)
    except Exception as exc:  # pg_ctl says "no server running" by failing
        log.info("embedded PostgreSQL was not running: %s", exc)
        return False
    return True


def server_url() -> URL:
    """URL of the PostgreSQL server (database part to be replaced by the caller)."""
    env = os.environ.get("BATON_DATABASE_URL")
    if env:
        return _normalise(env)
    return _embedded_url()


@lru_cache(maxsize=1)
def _embedded_url() -> URL:
    return start_embedded()


def store_url() -> URL:
    """URL of Baton's own database.

    With ``BATON_DATABASE_URL`` that URL is used as is (its database is the store);
    embedded, the store is the database ``baton`` of the embedded server.
    """
    if os.environ.get("BATON_DATABASE_URL"):
        return server_url()
    return server_url().set(database=STORE_DB)


def ensure_database(url: URL) -> None:
    """Create the database named in ``url`` if it does not exist yet."""
    assert url.database
    admin = sa.create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            exists = conn.execute(
                sa.text("select 1 from pg_database where datname = :d"), {"d": url.database}
            ).scalar()
            if not exists:
                conn.exec_driver_sql(f'create database "{url.database}"')
                log.info("Created database %s", url.database)
    finally:
        admin.dispose()


def airflow_sql_alchemy_conn() -> str:
    """The metadata-database URL for Airflow (psycopg2 driver, same server, own database)."""
    u = server_url().set(drivername="postgresql+psycopg2", database=AIRFLOW_DB)
    return u.render_as_string(hide_password=False)


_engines: dict[str, Engine] = {}


def get_engine(url: URL | str | None = None, **kwargs: Any) -> Engine:
    """A cached engine for the store (or for ``url``)."""
    u = store_url() if url is None else (_normalise(url) if isinstance(url, str) else url)
    key = u.render_as_string(hide_password=False)
    eng = _engines.get(key)
    if eng is None:
        eng = sa.create_engine(u, pool_pre_ping=True, future=True, **kwargs)
        _engines[key] = eng
    return eng


def dispose_engines() -> None:
    for eng in _engines.values():
        eng.dispose()
    _engines.clear()
