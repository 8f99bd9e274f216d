"""The marketing store as seen from inside Airflow tasks and triggers.

The store is the Airflow Connection ``baton_db`` when it is defined (``AIRFLOW_CONN_BATON_DB``,
the UI, or a secrets backend), else ``BATON_DATABASE_URL``.  Inside Airflow, Baton never
falls back to the embedded PostgreSQL: a production task that cannot name its store fails
with a message saying what to set, instead of writing into a throw-away database on the
worker.  A connection that cannot be *read* (secrets backend down) is a transient failure
(:class:`~baton.errors.ServiceUnavailableError`: the task is retried); one that is malformed
is a user mistake (:class:`~baton.errors.ConfigError`: the task fails without retries).

Called only at run time, never while a DAG file is parsed.
"""

from __future__ import annotations

import logging
import os

from sqlalchemy.engine import URL, Engine

from baton.errors import ConfigError, ServiceUnavailableError
from baton.store.engine import get_engine, normalise_url

log = logging.getLogger(__name__)

CONN_ID = "baton_db"
"""The Airflow Connection that names the store."""

_POSTGRES_TYPES = frozenset({"postgres", "postgresql", "generic", None, ""})


def store_url() -> URL:
    """The store's URL: connection ``baton_db``, else ``BATON_DATABASE_URL``; never the embedded server."""
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        conn = BaseHook.get_connection(CONN_ID)
    except AirflowNotFoundException:
        conn = None
    except Exception as exc:  # the secrets backend or the API server did not answer
        raise ServiceUnavailableError(
            f"cannot read the Airflow connection {CONN_ID!r} ({type(exc).__name__}: {exc}): check that the "
            "secrets backend and the Airflow API server are reachable; the task is retried"
        ) from exc
    if conn is not None:
        if conn.conn_type not in _POSTGRES_TYPES:
            raise ConfigError(
                f"Airflow connection {CONN_ID!r} has type {conn.conn_type!r}: the store must be PostgreSQL "
                f"(conn_type postgres), e.g. AIRFLOW_CONN_BATON_DB=postgresql://user:password@host:5432/baton"
            )
        if not conn.host:
            raise ConfigError(
                f"Airflow connection {CONN_ID!r} has no host: set host, port, login, password and schema "
                "(the database) of the store"
            )
        try:
            uri = conn.get_uri()
        except Exception as exc:
            raise ConfigError(f"Airflow connection {CONN_ID!r} cannot be turned into a URL: {exc}") from exc
        log.info("store from Airflow connection %s", CONN_ID)
        return normalise_url(
            uri.replace("postgres://", "postgresql://", 1), source=f"Airflow connection {CONN_ID!r}"
        )
    env = os.environ.get("BATON_DATABASE_URL")
    if env:
        return normalise_url(env, source="BATON_DATABASE_URL")
    raise ConfigError(
        f"no marketing store is configured for this Airflow deployment: define the Airflow connection "
        f"{CONN_ID!r} (e.g. AIRFLOW_CONN_BATON_DB=postgresql://user:password@host:5432/baton) or set "
        "BATON_DATABASE_URL on every Airflow component. Inside Airflow, Baton does not start an embedded "
        "PostgreSQL"
    )


def store_engine() -> Engine:
    """A (cached) engine of the store named by :func:`store_url`."""
    return get_engine(store_url())
