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
import urllib.parse
import warnings
from functools import lru_cache, partial
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine, make_url

from baton.errors import ConfigError

log = logging.getLogger(__name__)

STORE_DB = "baton"
AIRFLOW_DB = "airflow"


#: Server settings of the embedded PostgreSQL (a development/CI server on one machine, not
#: a production database).  Written to ``postgresql.auto.conf`` before the server starts,
#: or with ``ALTER SYSTEM`` + reload when it already runs (``shared_buffers`` and
#: ``wal_buffers`` then wait for the next restart, e.g. ``baton db stop``).
#: * ``shared_buffers`` a quarter of the machine's memory, at most 4GB (the usual guidance):
#:   the store's hot tables (customers, candidates, recent messages) stay cached between the
#:   load and decide phases of a cycle (default 128MB);
#: * ``max_wal_size`` 16GB / ``checkpoint_timeout`` 30min: loading a cycle's candidates and
#:   writing its decisions (millions of rows) does not trigger checkpoints (and the full-page
#:   writes after each one) every few seconds;
#: * ``wal_buffers`` 256MB: a shard writing its decisions and outbox (hundreds of MB of WAL)
#:   does not wait for WAL buffers to be written out;
#: * ``maintenance_work_mem`` 512MB: index builds (migrations, benchmark data) sort in memory;
#: * ``jit`` off: the arbitration statements are many and short-lived; compiling them costs
#:   more than it saves;
#: * ``temp_buffers`` 512MB: arbitration works in temporary tables; they stay in memory
#:   (allocated per session on demand only).
#: Durability (``fsync``, ``synchronous_commit``, ``full_page_writes``) is left as it is.
def _quarter_of_memory(cap_mb: int = 4096, floor_mb: int = 128) -> str:
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return "1GB"
    mb = max(floor_mb, min(cap_mb, total // 4 // 2**20))
    return f"{mb // 1024}GB" if mb % 1024 == 0 else f"{mb}MB"  # as PostgreSQL shows it


EMBEDDED_SETTINGS: dict[str, str] = {
    "shared_buffers": _quarter_of_memory(),
    "wal_buffers": "256MB",
    "max_wal_size": "16GB",
    "min_wal_size": "1GB",
    "checkpoint_timeout": "30min",
    "maintenance_work_mem": "512MB",
    "jit": "off",
    "temp_buffers": "512MB",
}

#: Per-session settings of Baton's own connections (libpq ``options``): arbitration sorts
#: and hashes millions of rows per statement; in memory, not in temporary files.
SESSION_OPTIONS = "-c work_mem=256MB -c temp_buffers=1GB -c max_parallel_workers_per_gather=0"


def connect_args() -> dict[str, Any]:
    """``connect_args`` for engines that run arbitration or loads (see SESSION_OPTIONS)."""
    return {"options": SESSION_OPTIONS}


def baton_home() -> Path:
    """The directory whose ``.baton/`` holds the embedded database and demo state."""
    return Path(os.environ.get("BATON_HOME") or os.getcwd()).resolve()


def embedded_dir() -> Path:
    """The data directory of the embedded PostgreSQL (``.baton/pg``)."""
    return baton_home() / ".baton" / "pg"


def normalise_url(url: str, *, source: str = "BATON_DATABASE_URL") -> URL:
    """*url* as a SQLAlchemy URL with Baton's driver (psycopg 3); ConfigError naming *source* when it
    is not a PostgreSQL URL."""
    try:
        u = make_url(url)
    except Exception as exc:  # sqlalchemy raises ArgumentError
        raise ConfigError(
            f"{source} is not a valid database URL ({exc}); "
            "expected e.g. postgresql://user:password@host:5432/baton"
        ) from exc
    if not u.drivername.startswith("postgres"):
        raise ConfigError(f"{source} must point to PostgreSQL, got driver {u.drivername!r}")
    if not u.database:
        raise ConfigError(
            f"{source} names no database: add it, e.g. postgresql://user:password@host:5432/baton"
        )
    return u.set(drivername="postgresql+psycopg")


def start_embedded() -> URL:
    """Start (or find running) the embedded PostgreSQL and return a URL of its server.

    The returned URL names the ``postgres`` maintenance database.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import pgserver  # lazily: only needed without BATON_DATABASE_URL
    except ImportError:
        raise ConfigError(
            "BATON_DATABASE_URL is not set and the embedded PostgreSQL (pgserver) is not installed: set "
            "BATON_DATABASE_URL=postgresql://user:password@host:5432/baton, or install the development "
            "requirements (make install) for an embedded server"
        ) from None

    logging.getLogger("pgserver").setLevel(logging.WARNING)
    pgdata = embedded_dir()
    pgdata.mkdir(parents=True, exist_ok=True)
    log.info("Using embedded PostgreSQL in %s", pgdata)
    fresh = not (pgdata / "PG_VERSION").exists()
    if not fresh and not (pgdata / "postmaster.pid").exists():
        _write_auto_conf(pgdata)  # stopped: the settings apply as it starts
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs: XDG_RUNTIME_DIR not set (harmless)
        server = pgserver.get_server(pgdata, cleanup_mode=None)  # type: ignore[attr-defined]
    url = make_url(server.get_uri()).set(drivername="postgresql+psycopg")
    try:
        _apply_settings(url, pgdata, restart=fresh)
    except Exception as exc:  # settings are an optimisation, never a reason not to start
        log.warning("could not apply the embedded server settings: %s", exc)
    return url


def _write_auto_conf(pgdata: Path) -> None:
    """Merge EMBEDDED_SETTINGS into ``postgresql.auto.conf`` of a stopped server (idempotent)."""
    path = pgdata / "postgresql.auto.conf"
    lines = path.read_text().splitlines() if path.exists() else []
    keep = [ln for ln in lines if ln.split("=", 1)[0].strip() not in EMBEDDED_SETTINGS]
    new = keep + [f"{k} = '{v}'" for k, v in EMBEDDED_SETTINGS.items()]
    if new != lines:
        path.write_text("\n".join(new) + "\n")


def _apply_settings(url: URL, pgdata: Path, *, restart: bool) -> None:
    """ALTER SYSTEM the settings that differ and reload; restart a server we just created."""
    admin = sa.create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            rows = conn.exec_driver_sql(
                "select name, coalesce(nullif(current_setting(name), ''), ''), context = 'postmaster'"
                " from pg_settings where name = any(%(n)s)",
                {"n": list(EMBEDDED_SETTINGS)},
            ).all()
            current = {name: value for name, value, _ in rows}
            at_start = {name for name, _, postmaster in rows if postmaster}
            wanted = {k: v for k, v in EMBEDDED_SETTINGS.items() if _norm(current.get(k, "")) != _norm(v)}
            for k, v in wanted.items():
                conn.exec_driver_sql(f"alter system set {k} = '{v}'")
            if wanted:
                conn.exec_driver_sql("select pg_reload_conf()")
            # which settings wait for a restart follows from their context: pg_settings'
            # pending_restart is only set once this backend has processed the reload, which
            # pg_reload_conf() merely signals (shared_buffers stayed at 128MB that way)
            pending = bool(at_start & set(wanted))
    finally:
        admin.dispose()
    if pending and restart:  # a server we have just initialised: nobody else uses it yet
        from pgserver._commands import pg_ctl  # type: ignore[attr-defined]

        user = "pgserver" if os.geteuid() == 0 else None
        pg_ctl(["-w", "-m", "fast", "restart"], pgdata=pgdata, user=user)
    elif pending:
        log.info("embedded PostgreSQL: some settings apply at its next restart (baton db stop)")


def _norm(value: str) -> str:
    return value.strip().lower().replace(" ", "")


def stop_embedded() -> bool:
    """Stop the embedded server if it runs; True when one was stopped."""
    pgdata = embedded_dir()
    if not (pgdata / "postmaster.pid").exists():
        return False
    from pgserver._commands import pg_ctl  # type: ignore[attr-defined]

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
        return normalise_url(env)
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


def quote_ident(name: str) -> str:
    """*name* as a quoted SQL identifier (a ``"`` in it doubled)."""
    return '"' + name.replace('"', '""') + '"'


def ensure_database(url: URL) -> None:
    """Create the database named in ``url`` if it does not exist yet.

    A server that cannot be reached, or a URL it does not accept, is a :class:`ConfigError` that says
    where Baton tried to connect (never the password)."""
    assert url.database
    admin = sa.create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            exists = conn.execute(
                sa.text("select 1 from pg_database where datname = :d"), {"d": url.database}
            ).scalar()
            if not exists:
                # C collation (on libc-provider servers, as the embedded one): ids sort and compare
                # bytewise, as Python's sorted() does, and text indexes and sorts cost ~1.7x less
                conn.exec_driver_sql(
                    f"create database {quote_ident(url.database)} template template0 lc_collate 'C'"
                )
                log.info("Created database %s", url.database)
    except sa.exc.DBAPIError as exc:
        raise ConfigError(connection_problem(url, exc)) from None
    finally:
        admin.dispose()


def connection_problem(url: URL, exc: BaseException) -> str:
    """What went wrong connecting to *url*, in one line that names the server but not the password."""
    reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    first = reason[0] if reason else type(exc).__name__
    where = f"{url.host or 'localhost'}:{url.port or 5432}" if url.host or url.port else "the local socket"
    return (
        f"cannot use the PostgreSQL database {url.database!r} at {where} ({first}): check "
        "BATON_DATABASE_URL (or the baton_db connection) and that the server runs"
    )


def drop_database(url: URL) -> None:
    """Drop the database named in ``url`` if it exists, ending the sessions still connected to it."""
    assert url.database
    admin = sa.create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"drop database if exists {quote_ident(url.database)} with (force)")
    finally:
        admin.dispose()


def libpq_url(url: URL) -> str:
    """*url* as a libpq connection URI (``postgresql://…``, no SQLAlchemy driver), which ``psql``,
    ``pg_dump`` and every libpq client accept: user, password, database and parameters are
    percent-encoded (a space is ``%20``: libpq does not read ``+`` as a space); a socket directory
    stays in ``?host=``."""
    quoted = partial(urllib.parse.quote, safe="")
    auth = ""
    if url.username:
        auth = quoted(url.username) + (f":{quoted(url.password)}" if url.password else "") + "@"
    host = url.host or ""
    if ":" in host:  # an IPv6 address
        host = f"[{host}]"
    port = f":{url.port}" if url.port else ""
    database = f"/{quoted(url.database)}" if url.database else ""
    params = [
        (key, item)
        for key, value in url.query.items()
        for item in (value if isinstance(value, tuple) else (value,))
    ]
    query = "?" + "&".join(f"{quoted(k)}={quoted(v)}" for k, v in params) if params else ""
    return f"postgresql://{auth}{host}{port}{database}{query}"


def airflow_sql_alchemy_conn() -> str:
    """The metadata-database URL for Airflow (psycopg2 driver, same server, own database)."""
    u = server_url().set(drivername="postgresql+psycopg2", database=AIRFLOW_DB)
    return u.render_as_string(hide_password=False)


_engines: dict[str, Engine] = {}


def get_engine(url: URL | str | None = None, **kwargs: Any) -> Engine:
    """A cached engine for the store (or for ``url``)."""
    u = store_url() if url is None else (normalise_url(url) if isinstance(url, str) else url)
    key = u.render_as_string(hide_password=False)
    eng = _engines.get(key)
    if eng is None:
        kwargs.setdefault("connect_args", connect_args())
        eng = sa.create_engine(u, pool_pre_ping=True, future=True, **kwargs)
        _engines[key] = eng
    return eng


def dispose_engines() -> None:
    """Close the pools of every cached engine and forget them (e.g. before a test drops its database)."""
    for eng in _engines.values():
        eng.dispose()
    _engines.clear()
