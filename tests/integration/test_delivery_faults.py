"""Faults of a channel, seen through the function the delivery task calls (``run_delivery``),
with the connection given the way Airflow gives it (``AIRFLOW_CONN_BATON_EMAIL``) and a real
SMTP server on loopback.

* A server that stops answering costs one timeout per batch, not one per message: the
  connection failure stops the batch, the messages not attempted go back to ``pending`` with
  a backoff and keep their attempts, and the task fails with a transient error (retried).
* A per-message transient answer (451 for one recipient) retries that message only; three in
  a row stop the batch.
* A bug while sending one message fails that message with the reason and the rest goes out;
  a batch method that raises leaves no message ``sending``.
* A misspelt connection extra fails the task without retries and sends nothing.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from baton.delivery.base import OutboundMessage
from baton.delivery.channels.email import EmailAdapter
from baton.errors import TransientDeliveryError
from baton_dev.sinks import SmtpSink

pytestmark = pytest.mark.integration

N = 20
POLICY = """\
cycle: {schedule: "0 * * * *", wait_for: 30m, max_send_delay: 2h}
caps:
  - {name: daily_total, limit: 2, window: 24h}
"""
CAMPAIGN = """\
id: promo
name: promo
owner: crm
schedule: '@hourly'
start_date: 2026-01-01
channels: [email]
audience:
  sql: select 1 as customer_id
message:
  email: {subject: "Hello {{ first_name }}", html: "<p>{{ item_name }}</p>"}
"""


@pytest.fixture()
def dags(fresh_store: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A deployment (policy, one email campaign) and N due email messages in the store."""
    from baton.store.engine import dispose_engines

    folder = tmp_path / "dags"
    (folder / "campaigns").mkdir(parents=True)
    (folder / "templates").mkdir()
    (folder / "policy.yaml").write_text(POLICY)
    (folder / "campaigns" / "promo.yaml").write_text(CAMPAIGN)
    monkeypatch.setenv("BATON_DATABASE_URL", fresh_store.url.render_as_string(hide_password=False))
    monkeypatch.setenv("BATON_UNSUBSCRIBE_SECRET", "fault-test-secret-" + "x" * 32)
    monkeypatch.setenv("BATON_DELIVERY_SHARDS", "1")
    at = datetime.now(UTC)
    with fresh_store.begin() as conn:
        conn.execute(
            sa.text(
                "insert into customers (customer_id, email, first_name)"
                " select 'p' || i, 'p' || i || '@example.com', 'N' || i from generate_series(1, :n) i"
            ),
            {"n": N},
        )
        conn.execute(
            sa.text(
                "insert into messages (cycle_at, customer_id, campaign_id, channel, send_at, payload)"
                " select :at, 'p' || i, 'promo', 'email', :at, jsonb_build_object('item_name', 'Boots ' || i)"
                " from generate_series(1, :n) i order by i"
            ),
            {"at": at, "n": N},
        )
    yield folder
    dispose_engines()


def _connect(monkeypatch: pytest.MonkeyPatch, port: int, **extra: Any) -> None:
    """The email connection to the test's server: a timeout of 20 s unless the test sets one (only the
    tests of a server that stops answering use a short one: a loaded machine may take over a second)."""
    monkeypatch.setenv(
        "AIRFLOW_CONN_BATON_EMAIL",
        json.dumps(
            {
                "conn_type": "smtp",
                "host": "127.0.0.1",
                "port": port,
                "extra": {"from": "Shop <shop@example.com>", "timeout": 20, **extra},
            }
        ),
    )


def _deliver(dags: Path) -> dict[str, Any]:
    from baton.airflow.tasks.delivery import run_delivery

    return run_delivery("email", 0, dags, {})


def _warm_up(dags: Path) -> None:
    """Import Airflow and read the deployment once, so that a timing measures the delivery only."""
    from baton.airflow.hooks.channels import connection_info
    from baton.airflow.hooks.store import store_engine
    from baton.spec import load_deployment

    load_deployment(dags)
    connection_info("baton_email")
    with store_engine().connect():
        pass


def _rows(engine: Engine) -> dict[str, sa.Row[Any]]:
    """customer id → (status, attempts, error, send_at)."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("select customer_id, status, attempts, error, send_at from messages order by message_id")
        ).all()
    return {r.customer_id: r for r in rows}


def _events(engine: Engine, type_: str) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [
            dict(r.detail or {}, customer_id=r.customer_id)
            for r in conn.execute(
                sa.text(
                    "select m.customer_id, e.detail from message_events e join messages m using (message_id)"
                    " where e.type = :t order by e.event_id"
                ),
                {"t": type_},
            ).all()
        ]


def _by_status(rows: dict[str, sa.Row[Any]]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for cid, r in rows.items():
        out.setdefault(r.status, set()).add(cid)
    return out


def _people(*numbers: int) -> set[str]:
    return {f"p{i}" for i in numbers}


def test_a_server_that_hangs_mid_session_costs_one_timeout(
    dags: Path, fresh_store: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with SmtpSink(maildir=tmp_path / "maildir", hang_after=5) as sink:
        _connect(monkeypatch, sink.port, timeout=3)
        _warm_up(dags)
        started = time.monotonic()
        with pytest.raises(TransientDeliveryError, match="connection of 'baton_email' failed.*timed out"):
            _deliver(dags)
        elapsed = time.monotonic() - started
        assert sink.received == 5 and sink.stalled == 1 and sink.sessions == 1
    rows = _rows(fresh_store)
    assert _by_status(rows) == {"sent": _people(1, 2, 3, 4, 5), "pending": _people(*range(6, N + 1))}
    # the message the server hung on was attempted; the 14 after it were not: their attempt is given back
    assert rows["p6"].attempts == 1 and "timed out" in rows["p6"].error
    assert all(rows[f"p{i}"].attempts == 0 for i in range(7, N + 1))
    assert all(
        rows[f"p{i}"].error.startswith("not attempted: the connection failed") for i in range(7, N + 1)
    )
    assert all(rows[f"p{i}"].send_at > datetime.now(UTC) for i in range(6, N + 1)), "backoff"
    retries = _events(fresh_store, "retry")
    assert [e["attempted"] for e in retries] == [True] + [False] * (N - 6)
    assert elapsed < 20, elapsed  # one 3-second timeout (one per message would be 45 s)


class _SilentServer:
    """Accepts TCP connections and never says a word (a wedged server, a black-holing proxy)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port: int = self.sock.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted.append(conn)

    def close(self) -> None:
        self.sock.close()
        for conn in self.accepted:
            conn.close()


def test_a_server_that_never_answers_costs_one_connection_attempt(
    dags: Path, fresh_store: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = _SilentServer()
    try:
        _connect(monkeypatch, server.port, timeout=3)
        _warm_up(dags)
        started = time.monotonic()
        with pytest.raises(TransientDeliveryError, match="cannot connect: timed out"):
            _deliver(dags)
        elapsed = time.monotonic() - started
        time.sleep(0.1)  # let the accept thread see any further connection
        assert len(server.accepted) == 1
    finally:
        server.close()
    rows = _rows(fresh_store)
    assert {r.status for r in rows.values()} == {"pending"}
    assert sum(r.attempts for r in rows.values()) == 1  # only the first message counts as attempted
    assert elapsed < 20, elapsed  # one 3-second timeout (one per message would be 60 s)


@pytest.mark.parametrize(
    ("tempfail", "sent", "attempted", "skipped"),
    [
        # one recipient answered 451: only that message waits, the batch goes on
        ([2], _people(1, *range(3, N + 1)), _people(2), set()),
        # two 451s, then three in a row: the breaker stops the rest of the batch
        ([2, 5, 6, 7], _people(1, 3, 4), _people(2, 5, 6, 7), _people(*range(8, N + 1))),
    ],
)
def test_per_message_transient_answers_keep_the_consecutive_failures_breaker(
    dags: Path,
    fresh_store: Engine,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    tempfail: list[int],
    sent: set[str],
    attempted: set[str],
    skipped: set[str],
) -> None:
    with SmtpSink(maildir=tmp_path / "maildir", tempfail={f"p{i}@example.com" for i in tempfail}) as sink:
        _connect(monkeypatch, sink.port)
        stats = _deliver(dags)  # a recipient's 451 is no connection failure: the task succeeds
        assert sink.received == len(sent) and sink.sessions == 1
    rows = _rows(fresh_store)
    assert _by_status(rows) == {"sent": sent, "pending": attempted | skipped}
    assert {c for c in attempted | skipped if rows[c].attempts == 1} == attempted
    assert all("451" in rows[c].error for c in attempted)
    assert stats["sent"] == len(sent) and stats["not_attempted"] == len(skipped)


def test_a_bug_sending_one_message_fails_it_with_the_reason_and_the_batch_goes_on(
    dags: Path, fresh_store: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_build = EmailAdapter.build

    def build(self: EmailAdapter, msg: OutboundMessage, rcpt: str | None = None) -> bytes:
        if msg.recipient.customer_id == "p3":
            raise KeyError("oops")
        return real_build(self, msg, rcpt)

    monkeypatch.setattr(EmailAdapter, "build", build)
    with SmtpSink(maildir=tmp_path / "maildir") as sink:
        _connect(monkeypatch, sink.port)
        stats = _deliver(dags)
        assert sink.received == N - 1
    rows = _rows(fresh_store)
    assert _by_status(rows) == {"sent": _people(*range(1, N + 1)) - {"p3"}, "failed": {"p3"}}
    assert "KeyError" in rows["p3"].error and "oops" in rows["p3"].error
    [failed] = _events(fresh_store, "failed")
    assert failed["customer_id"] == "p3" and "unexpected KeyError" in failed["reason"]
    assert stats["failed"] == 1 and stats["sent"] == N - 1


def test_a_batch_method_that_raises_leaves_no_message_sending(
    dags: Path, fresh_store: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_send_batch = EmailAdapter.send_batch

    def send_batch(self: EmailAdapter, msgs: Any, *, interval: float = 0.0) -> Any:
        for n, item in enumerate(real_send_batch(self, msgs, interval=interval)):
            if n == 3:
                raise RuntimeError("adapter bug")  # the 4th message went out, its outcome is lost
            yield item

    monkeypatch.setattr(EmailAdapter, "send_batch", send_batch)
    with SmtpSink(maildir=tmp_path / "maildir") as sink:
        _connect(monkeypatch, sink.port)
        with pytest.raises(RuntimeError, match="adapter bug"):
            _deliver(dags)
        assert sink.received == 4
    rows = _rows(fresh_store)
    assert _by_status(rows) == {"sent": _people(1, 2, 3), "pending": _people(*range(4, N + 1))}
    later = [rows[f"p{i}"] for i in range(4, N + 1)]
    assert all("RuntimeError: adapter bug" in r.error for r in later)
    assert all(r.send_at > datetime.now(UTC) for r in later), "back with a backoff"


def test_a_misspelt_extra_fails_the_task_without_retries_and_sends_nothing(
    dags: Path, fresh_store: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.sdk.exceptions import AirflowFailException

    with SmtpSink(maildir=tmp_path / "maildir") as sink:
        _connect(monkeypatch, sink.port, starttsl=True)
        with pytest.raises(AirflowFailException) as info:
            _deliver(dags)
        assert sink.sessions == 0
    message = str(info.value)
    assert "'baton_email'" in message and "'starttsl'" in message and "did you mean 'starttls'?" in message
    rows = _rows(fresh_store)
    assert {(r.status, r.attempts) for r in rows.values()} == {("pending", 0)}


def test_rate_pacing_spreads_a_batch(
    dags: Path, fresh_store: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """policy.channels.email.rate_per_second paces the sends inside one batch (the shared budget's
    first slot starts at once, so without pacing the 20 messages would leave together)."""
    (dags / "policy.yaml").write_text(POLICY + "channels:\n  email: {rate_per_second: 40}\n")
    with SmtpSink(maildir=tmp_path / "maildir") as sink:
        _connect(monkeypatch, sink.port)
        _warm_up(dags)
        started = time.monotonic()
        stats = _deliver(dags)
        elapsed = time.monotonic() - started
        assert sink.received == N and stats["sent"] == N
    assert elapsed >= (N - 1) / 40 - 0.05, elapsed  # 19 intervals of 25 ms
