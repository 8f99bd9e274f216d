"""Resolve the marketing store from inside Airflow tasks.

Order: the Airflow Connection ``baton_db`` (e.g. ``AIRFLOW_CONN_BATON_DB`` or the
secrets backend), then ``BATON_DATABASE_URL``, then the embedded PostgreSQL.
Called only at run time, never while a DAG file is parsed.
"""

from __future__ import annotations

import logging
import os

from sqlalchemy.engine import Engine

from baton.store.engine import get_engine

log = logging.getLogger(__name__)

CONN_ID = "baton_db"


def store_engine() -> Engine:
    url = None
    if not os.environ.get("BATON_DATABASE_URL"):
        try:
            from airflow.sdk import BaseHook

            conn = BaseHook.get_connection(CONN_ID)
            url = conn.get_uri().replace("postgres://", "postgresql://", 1)
            log.info("store from Airflow connection %s", CONN_ID)
        except Exception:  # not defined: fall back to the environment / embedded server
            url = None
    return get_engine(url)
