"""The one way Baton opens a transaction in the store, and the one way it holds a session of its own.

Every write of the product goes through one of two context managers (as dlt's
``sql_client.begin_transaction()``):

* :func:`transaction` — one transaction on a pooled connection: committed when the block
  ends, rolled back when it raises (or when the block calls :meth:`Tx.rollback`).  It
  yields a :class:`Tx` whose :meth:`~Tx.execute` runs psycopg SQL with **named**
  parameters only (``%(name)s`` and a mapping); positional ``%s`` is refused by type.
* :func:`autocommit_session` — a dedicated connection on which every statement commits on
  its own (the outbox: each outcome is durable the moment it is recorded), optionally
  with session settings such as ``synchronous_commit = off``.  When the block ends, the
  settings are reset and autocommit is turned off *before* the connection goes back to
  the pool; if that reset fails, the connection is invalidated (closed, never reused), so
  a later ``engine.begin()`` never receives a connection that commits every statement or
  forgets commits on a crash.

:func:`settings_session` is the same dedicated connection with session settings but
ordinary transactions (``baton seed``'s bulk load: many transactions, each opened with
:func:`transaction` on that connection).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from psycopg import sql as pgsql
from sqlalchemy.engine import Connection, Engine

from baton.store.raw import driver_connection

log = logging.getLogger(__name__)

__all__ = ["Params", "Session", "Tx", "autocommit_session", "settings_session", "transaction"]

Params = Mapping[str, Any]
"""Named parameters of a statement: ``{"name": value}`` for ``%(name)s``."""


class Session:
    """A psycopg connection under a SQLAlchemy connection, executing with named parameters only."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.raw: Any = driver_connection(conn)

    def execute(self, query: str | pgsql.Composable, params: Params | None = None) -> Any:
        """Run *query* (``%(name)s`` placeholders) with *params*; returns the psycopg cursor.

        Without *params* the query is sent as it is (a ``%`` needs no escaping)."""
        if params is not None and not isinstance(params, Mapping):
            raise TypeError("Baton's SQL takes named parameters: pass a mapping for %(name)s placeholders")
        return self.raw.execute(query, params)

    def cursor(self) -> Any:
        """A psycopg cursor of this connection (for COPY)."""
        return self.raw.cursor()


class Tx(Session):
    """An open transaction (see :func:`transaction`)."""

    def __init__(self, conn: Connection, trans: Any) -> None:
        super().__init__(conn)
        self._trans = trans

    def rollback(self) -> None:
        """Discard the transaction's work now; the block then ends without committing anything."""
        if self._trans.is_active:
            self._trans.rollback()

    @property
    def active(self) -> bool:
        """Whether the transaction is still open (not rolled back by :meth:`rollback`)."""
        return bool(self._trans.is_active)


@contextmanager
def transaction(bind: Engine | Connection) -> Iterator[Tx]:
    """One transaction: committed when the block ends, rolled back when it raises.

    *bind* is an engine (a pooled connection is taken for the block) or a connection
    that is not in a transaction (e.g. a :func:`settings_session`'s), for several
    transactions in a row on one session."""
    if isinstance(bind, Engine):
        with bind.connect() as conn, transaction(conn) as tx:
            yield tx
        return
    trans = bind.begin()
    tx = Tx(bind, trans)
    try:
        yield tx
    except BaseException:
        if trans.is_active:
            trans.rollback()
        raise
    if trans.is_active:
        trans.commit()


def _apply(raw: Any, settings: Mapping[str, str]) -> None:
    for name, value in settings.items():
        raw.execute("select set_config(%(name)s, %(value)s, false)", {"name": name, "value": value})


@contextmanager
def _dedicated(engine: Engine, settings: Mapping[str, str], *, autocommit: bool) -> Iterator[Connection]:
    conn = engine.connect()
    if autocommit:
        # SQLAlchemy sets the driver's autocommit and restores it when the connection is returned
        conn = conn.execution_options(isolation_level="AUTOCOMMIT")
    clean = False
    try:
        raw = driver_connection(conn)
        if settings:
            _apply(raw, settings)
            if not autocommit:
                raw.commit()
        yield conn
        clean = True
    finally:
        try:
            _reset(conn, settings, rollback_first=not clean or not autocommit)
        except Exception as exc:  # the connection is broken or in an unknown state: never reuse it
            log.warning(
                "could not reset a store session (%s: %s); discarding the connection", type(exc).__name__, exc
            )
            conn.invalidate()
        conn.close()


def _reset(conn: Connection, settings: Mapping[str, str], *, rollback_first: bool) -> None:
    if conn.invalidated or conn.closed:
        return
    raw = driver_connection(conn)
    if raw.closed or raw.broken:
        raise RuntimeError("the connection was closed by the server")
    if rollback_first or raw.info.transaction_status != 0:  # 0 = IDLE: no transaction open
        raw.rollback()
    was_autocommit = raw.autocommit
    raw.autocommit = True
    try:
        for name in settings:
            raw.execute(pgsql.SQL("reset {}").format(pgsql.Identifier(name)))
    finally:
        raw.autocommit = was_autocommit


@contextmanager
def autocommit_session(engine: Engine, **settings: str) -> Iterator[Session]:
    """A dedicated connection where each statement commits on its own, with session *settings*
    (e.g. ``synchronous_commit="off"``); reset — or discarded — before it returns to the pool."""
    with _dedicated(engine, settings, autocommit=True) as conn:
        yield Session(conn)


@contextmanager
def settings_session(engine: Engine, **settings: str) -> Iterator[Connection]:
    """A dedicated connection with session *settings*, for several :func:`transaction` blocks in a
    row; the settings are reset (or the connection discarded) before it returns to the pool."""
    with _dedicated(engine, settings, autocommit=False) as conn:
        yield conn
