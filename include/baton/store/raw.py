"""The driver (psycopg) connection under a SQLAlchemy connection, for COPY and plain SQL."""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import Connection


def driver_connection(conn: Connection) -> Any:
    """The psycopg connection of ``conn`` (an error if it was closed)."""
    raw = conn.connection.driver_connection
    if raw is None:
        raise RuntimeError("the database connection is closed")
    return raw
