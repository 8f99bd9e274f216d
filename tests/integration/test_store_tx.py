"""The store's one way into a transaction (``baton.store.tx``), and sessions that never leak.

The outbox works on an autocommit session with ``synchronous_commit = off``; ``baton seed`` on
a session with ``synchronous_commit = off``.  Neither may reach a later ``engine.begin()``
through the pool: there, a block that raises must roll back whole, and commits must wait for
the WAL flush.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from baton.delivery.base import ConnectionInfo
from baton.delivery.channels import adapter_for
from baton.delivery.outbox import DeliverySettings, Outbox, deliver_shard
from baton.spec import Campaign
from baton.store.status import MessageStatus
from baton.store.tx import autocommit_session, transaction

pytestmark = pytest.mark.integration


@pytest.fixture()
def one_connection(fresh_store: Engine) -> Iterator[Engine]:
    """An engine over the test store whose pool holds exactly one connection."""
    engine = sa.create_engine(fresh_store.url, pool_size=1, max_overflow=0)
    try:
        yield engine
    finally:
        engine.dispose()


def _campaign() -> Campaign:
    return Campaign.model_validate(
        {
            "id": "promo",
            "name": "Promo",
            "owner": "crm",
            "schedule": "@hourly",
            "start_date": "2026-01-01",
            "channels": ["sms"],
            "audience": {"sql": "select 1"},
            "message": {"sms": {"text": "hello"}},
        }
    )


def _run_outbox(engine: Engine, tmp_path: Path) -> None:
    now = datetime.now(UTC)
    with engine.begin() as conn:
        conn.execute(sa.text("insert into customers (customer_id, phone) values ('p1', '+15550000001')"))
        conn.execute(
            sa.text(
                "insert into messages (cycle_at, customer_id, campaign_id, channel, send_at)"
                " values (:at, 'p1', 'promo', 'sms', :at)"
            ),
            {"at": now},
        )
    stats = deliver_shard(
        engine,
        channel="sms",
        shard=0,
        shards=1,
        campaigns={"promo": _campaign()},
        adapter=adapter_for("sms", ConnectionInfo("baton_sms", "baton_fake")),
        templates_dir=tmp_path,
        settings=DeliverySettings(max_send_delay=timedelta(hours=1)),
    )
    assert stats.sent == 1


def _open_and_close_outbox(engine: Engine, tmp_path: Path) -> None:
    box = Outbox(engine, "email", 0, 1)
    assert box.claim(datetime.now(UTC), 10, timedelta(minutes=1)) == []
    box.close()


def _seed(engine: Engine, tmp_path: Path) -> None:
    from baton.seed import run_seed

    assert run_seed(engine, customers=20, days=1, seed=3).customers == 20


SESSIONS: dict[str, Callable[[Engine, Path], None]] = {
    "deliver_shard": _run_outbox,
    "outbox open/close": _open_and_close_outbox,
    "seed": _seed,
}


@pytest.mark.parametrize("session", list(SESSIONS))
def test_a_session_never_leaks_into_the_next_transaction(
    one_connection: Engine, tmp_path: Path, session: str
) -> None:
    SESSIONS[session](one_connection, tmp_path)
    with pytest.raises(RuntimeError, match="abort"):
        with one_connection.begin() as conn:
            assert conn.exec_driver_sql("show synchronous_commit").scalar() == "on"
            conn.exec_driver_sql("insert into rate_limits (channel, next_at) values ('leak-probe', now())")
            raise RuntimeError("abort")
    with one_connection.connect() as conn:
        kept = conn.exec_driver_sql("select count(*) from rate_limits where channel = 'leak-probe'").scalar()
        assert conn.exec_driver_sql("show synchronous_commit").scalar() == "on"
    assert kept == 0, "the block raised: its insert must have been rolled back"
    assert one_connection.pool.checkedin() == 1  # the same, single connection served every step


def test_a_session_that_cannot_be_reset_is_discarded(one_connection: Engine) -> None:
    with autocommit_session(one_connection, synchronous_commit="off") as db:
        pid = db.execute("select pg_backend_pid()").fetchone()[0]
        with one_connection.pool._creator() as killer:  # type: ignore[attr-defined]  # outside the pool
            killer.execute("select pg_terminate_backend(%(pid)s)", {"pid": pid})
    with one_connection.begin() as conn:  # a fresh connection, not the dead one
        assert conn.exec_driver_sql("select pg_backend_pid()").scalar() != pid
        assert conn.exec_driver_sql("show synchronous_commit").scalar() == "on"


def test_transaction_commits_rolls_back_and_takes_named_parameters(fresh_store: Engine) -> None:
    with transaction(fresh_store) as tx:
        tx.execute("insert into rate_limits (channel, next_at) values (%(ch)s, now())", {"ch": "kept"})
    with pytest.raises(ValueError), transaction(fresh_store) as tx:
        tx.execute("insert into rate_limits (channel, next_at) values (%(ch)s, now())", {"ch": "raised"})
        raise ValueError
    with transaction(fresh_store) as tx:
        tx.execute("insert into rate_limits (channel, next_at) values (%(ch)s, now())", {"ch": "rolled"})
        tx.rollback()
        assert not tx.active
    with transaction(fresh_store) as tx, pytest.raises(TypeError, match="named parameters"):
        tx.execute("select %s", ("positional",))  # type: ignore[arg-type]
    with fresh_store.connect() as conn:
        rows = conn.exec_driver_sql("select channel from rate_limits order by 1").scalars().all()
    assert rows == ["kept"]


def test_the_status_check_constraint_is_the_enum(fresh_store: Engine) -> None:
    with fresh_store.connect() as conn:
        definition = conn.exec_driver_sql(
            "select pg_get_constraintdef(oid) from pg_constraint where conname = 'ck_messages_status'"
        ).scalar()
    assert definition is not None
    assert set(re.findall(r"'(\w+)'::text", definition)) == {s.value for s in MessageStatus}
