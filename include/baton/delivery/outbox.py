"""The outbox: hand each selected message to its channel at most once, and never lose one.

Life of a message row (``messages``): ``pending`` → *claim* (``sending``, with a lease)
→ render → send → ``sent`` (provider id) | ``failed`` (reason) | back to ``pending``
with a backoff (transient failure).  Every state change is its own committed
transaction, so a worker killed at any point leaves either a ``pending`` row or a
``sending`` row whose lease expires and is claimed again; the retry carries the same
idempotency key (the message id) to the provider.

* Claims use ``FOR UPDATE SKIP LOCKED``: parallel workers of one (channel, shard) never
  take the same row.
* A message whose cycle is older than ``max_send_delay`` when delivery reaches it is
  ``expired``, not sent (backfills recompute history; they do not spam), unless
  ``allow_late_send``.
* Messages deferred by quiet hours (``send_at`` in the future) wait; every cycle's
  delivery sends whatever is due, so they go out with the first cycle after ``send_at``.
* Rate limits (``policy.channels.<ch>.rate_per_second``) hold across workers: each batch
  reserves its time slot in ``rate_limits`` (a shared leaky bucket in Postgres).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine

from baton.delivery.base import (
    ChannelAdapter,
    ChannelTransientError,
    OutboundMessage,
    Recipient,
    RecipientRejectedError,
    SendResult,
)
from baton.delivery.render import Renderer, message_context
from baton.delivery.unsubscribe import make_token, unsubscribe_url
from baton.errors import DeliveryError, TerminalDeliveryError, TransientDeliveryError
from baton.spec import Campaign, Channel
from baton.store.shards import bounds as shard_bounds

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 5
FILE_CHANNELS = frozenset({"audience", "direct_mail"})
GROUP = 50  # outcomes recorded together on channels idempotent by key
GROUP_SECONDS = 0.25
LEASE = timedelta(minutes=5)


@dataclass
class DeliveryStats:
    channel: str
    shard: int
    expired: int = 0
    claimed: int = 0
    sent: int = 0
    failed: int = 0
    retried: int = 0
    seconds: float = 0.0
    failures: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "channel": self.channel,
            "shard": self.shard,
            "expired": self.expired,
            "claimed": self.claimed,
            "sent": self.sent,
            "failed": self.failed,
            "retried": self.retried,
        }


@dataclass(frozen=True)
class DeliverySettings:
    max_send_delay: timedelta
    allow_late_send: bool = False
    rate_per_second: float | None = None
    batch_size: int = 200
    lease: timedelta = LEASE
    max_attempts: int = MAX_ATTEMPTS
    unsubscribe_base: str = "http://localhost:8080/baton/unsubscribe"
    unsubscribe_secret: bytes | None = None
    max_batches: int | None = None  # stop after this many batches (tests)


def _now() -> datetime:
    return datetime.now(UTC)


def backoff(attempts: int, retry_after: float | None) -> timedelta:
    """Exponential backoff from 10 s (10, 20, 40, … capped at 15 min); a provider's Retry-After wins if longer."""
    seconds = min(10 * 2 ** max(0, attempts - 1), 900)
    if retry_after is not None:
        seconds = max(seconds, retry_after)
    return timedelta(seconds=seconds)


class Outbox:
    """Claims and records messages of one (channel, shard) on an autocommit connection."""

    def __init__(self, engine: Engine, channel: str, shard: int, shards: int) -> None:
        self.engine = engine
        self.channel = channel
        self.shard = shard
        self.shards = max(1, shards)
        self._conn = engine.raw_connection()
        self._raw: Any = self._conn.driver_connection
        if self._raw is None:
            raise RuntimeError("could not open a database connection for the outbox")
        self._raw.autocommit = True
        # Each outcome commits on its own, without waiting for the WAL flush: a killed worker loses
        # nothing (the server has the commit); only a crash of PostgreSQL itself may forget the last
        # fraction of a second of outcomes, and those messages are handed over again under the same
        # idempotency key / Message-ID.
        self._raw.execute("set synchronous_commit = off")

    def close(self) -> None:
        self._conn.close()

    def _where(self) -> str:
        """This outbox's messages: its channel and shard (by the person's hash), and only
        messages whose cycle has committed (a cycle's shards write their outbox rows before
        the cycle commits; messages of no cycle — written by hand — are always due)."""
        part = "" if self.shards == 1 else " and messages.bucket >= %(lo)s and messages.bucket < %(hi)s"
        return (
            f"channel = %(ch)s{part} and not exists (select 1 from cycles c"
            " where c.cycle_at = messages.cycle_at and c.status <> 'decided')"
        )

    def _params(self, **kw: Any) -> dict[str, Any]:
        lo, hi = shard_bounds(self.shard, self.shards)
        return {"ch": self.channel, "lo": lo, "hi": hi, **kw}

    def expire_late(self, now: datetime, max_send_delay: timedelta) -> int:
        cur = self._raw.execute(
            "with late as (update messages set status = 'expired', lease_until = null, updated_at = now(),"
            " error = 'cycle older than max_send_delay when delivery reached it'"
            f" where {self._where()} and cycle_at < %(cutoff)s"
            " and (status = 'pending' or (status = 'sending' and lease_until < %(now)s)) returning message_id)"
            " insert into message_events (message_id, type, detail)"
            " select message_id, 'expired', jsonb_build_object('max_send_delay', %(delay)s::text) from late",
            self._params(cutoff=now - max_send_delay, now=now, delay=str(max_send_delay)),
        )
        return int(cur.rowcount or 0)

    def claim(self, now: datetime, limit: int, lease: timedelta) -> list[dict[str, Any]]:
        rows = self._raw.execute(
            "with due as (select message_id from messages"
            f" where {self._where()} and send_at <= %(now)s"
            " and (status = 'pending' or (status = 'sending' and lease_until < %(now)s))"
            " order by send_at, message_id limit %(limit)s for update skip locked)"
            " update messages m set status = 'sending', lease_until = %(lease)s, attempts = m.attempts + 1,"
            " updated_at = now() from due where m.message_id = due.message_id"
            " returning m.message_id, m.customer_id, m.campaign_id, m.payload, m.attempts, m.batch_id, m.seq",
            self._params(now=now, limit=limit, lease=now + lease),
        ).fetchall()
        if not rows:
            return []
        ids = [r[1] for r in rows]
        cols = (
            "customer_id",
            "email",
            "phone",
            "push_token",
            "postal_address",
            "first_name",
            "last_name",
            "attributes",
        )
        people = {
            r[0]: dict(zip(cols, r, strict=True))
            for r in self._raw.execute(
                f"select {', '.join(cols)} from customers where customer_id = any(%s)", (ids,)
            ).fetchall()
        }
        # the payload of a decided message is its candidate row's (not copied into the outbox)
        refs = [(r[5], r[6]) for r in rows if r[5] is not None]
        payloads: dict[tuple[int, int], Any] = {}
        if refs:
            payloads = {
                (b, q): p
                for b, q, p in self._raw.execute(
                    "select c.batch_id, c.seq, c.payload from unnest(%s::bigint[], %s::int[]) r(batch_id, seq)"
                    " join candidates c on c.batch_id = r.batch_id and c.seq = r.seq",
                    ([b for b, _ in refs], [q for _, q in refs]),
                ).fetchall()
            }
        return [
            {
                "message_id": r[0],
                "customer_id": r[1],
                "campaign_id": r[2],
                "payload": (payloads.get((r[5], r[6])) if r[5] is not None else r[3]) or {},
                "attempts": r[4],
                "customer": people.get(r[1]),
            }
            for r in rows
        ]

    def sent(self, result: SendResult) -> None:
        """Record one hand-over, committed at once."""
        self.sent_many([result])

    def sent_many(self, results: list[SendResult]) -> None:
        """Record hand-overs in one statement.  The row itself records them (status, provider_id,
        sent_at); message events are for the exceptions."""
        if not results:
            return
        self._raw.execute(
            "update messages m set status = 'sent', provider_id = v.pid, sent_at = now(), lease_until = null,"
            " error = null, updated_at = now() from unnest(%s::bigint[], %s::text[]) as v(id, pid)"
            " where m.message_id = v.id and m.status = 'sending'",
            ([r.message_id for r in results], [r.provider_id for r in results]),
        )

    def failed(self, message_id: int, reason: str) -> None:
        self._raw.execute(
            "with f as (update messages set status = 'failed', error = %s, lease_until = null, updated_at = now()"
            " where message_id = %s and status = 'sending' returning message_id)"
            " insert into message_events (message_id, type, detail) select message_id, 'failed',"
            " jsonb_build_object('reason', %s::text) from f",
            (reason[:2000], message_id, reason[:2000]),
        )

    def retry_later(self, message_id: int, reason: str, when: datetime) -> None:
        # send_at moves forward for the retry; the decision keeps the original send_at
        self._raw.execute(
            "with r as (update messages set status = 'pending', error = %s, send_at = %s, lease_until = null,"
            " updated_at = now() where message_id = %s and status = 'sending' returning message_id)"
            " insert into message_events (message_id, type, detail) select message_id, 'retry',"
            " jsonb_build_object('reason', %s::text, 'next_at', %s::text) from r",
            (reason[:2000], when, message_id, reason[:2000], when.isoformat()),
        )

    def suppress(self, address: str, reason: str) -> None:
        addr = address.strip().lower() if self.channel == "email" else address.strip()
        self._raw.execute(
            "insert into suppressions (channel, address, reason) values (%s, %s, %s) on conflict do nothing",
            (self.channel, addr, reason[:200]),
        )

    def reserve(self, n: int, rate: float | None) -> float:
        """Reserve ``n`` sends in the channel's shared rate budget; returns seconds to wait first."""
        if not rate or n <= 0:
            return 0.0
        row = self._raw.execute(
            "insert into rate_limits as r (channel, next_at) values (%(ch)s, clock_timestamp() + %(d)s)"
            " on conflict (channel) do update set next_at = greatest(r.next_at, clock_timestamp()) + %(d)s"
            " returning extract(epoch from (next_at - %(d)s - clock_timestamp()))",
            {"ch": self.channel, "d": timedelta(seconds=n / rate)},
        ).fetchone()
        return max(0.0, float(row[0])) if row else 0.0


def _recipient(row: dict[str, Any]) -> Recipient:
    c = row["customer"] or {}
    return Recipient(
        customer_id=row["customer_id"],
        email=c.get("email"),
        phone=c.get("phone"),
        push_token=c.get("push_token"),
        postal_address=c.get("postal_address"),
        first_name=c.get("first_name"),
        last_name=c.get("last_name"),
    )


def deliver_shard(
    engine: Engine,
    *,
    channel: str,
    shard: int,
    shards: int,
    campaigns: dict[str, Campaign],
    adapter: ChannelAdapter,
    templates_dir: Path,
    settings: DeliverySettings,
    now_fn: Callable[[], datetime] = _now,
    progress: Callable[[DeliveryStats], None] | None = None,
) -> DeliveryStats:
    """Deliver every due message of (channel, shard); returns counts."""
    started = time.perf_counter()
    stats = DeliveryStats(channel, shard)
    box = Outbox(engine, channel, shard, shards)
    renderer = Renderer(templates_dir)
    batches = 0
    try:
        if not settings.allow_late_send:
            stats.expired = box.expire_late(now_fn(), settings.max_send_delay)
        with adapter:
            while settings.max_batches is None or batches < settings.max_batches:
                now = now_fn()
                rows = box.claim(now, settings.batch_size, settings.lease)
                if not rows:
                    break
                batches += 1
                stats.claimed += len(rows)
                ready: list[OutboundMessage] = []
                for row in rows:
                    msg = _render(row, channel, campaigns, renderer, settings)
                    if isinstance(msg, str):
                        box.failed(row["message_id"], msg)
                        stats.failed += 1
                        stats.failures["render"] = stats.failures.get("render", 0) + 1
                    else:
                        ready.append(msg)
                wait = box.reserve(len(ready), settings.rate_per_second)
                if wait > 0:
                    time.sleep(wait)
                attempts = {r["message_id"]: r["attempts"] for r in rows}
                if channel in FILE_CHANNELS:  # one file per batch, written atomically
                    for msg, outcome in zip(ready, adapter.send_batch(ready), strict=True):
                        if isinstance(outcome, DeliveryError):
                            _record_failure(
                                box, stats, msg, outcome, attempts[msg.message_id], settings, now_fn()
                            )
                        else:
                            box.sent(outcome)
                            stats.sent += 1
                    ready = []
                pace = 1.0 / settings.rate_per_second if settings.rate_per_second else 0.0
                # Where the provider deduplicates by our key (Twilio's idempotency token), outcomes are
                # recorded in small groups: a crash re-sends at most one group under the same keys, which
                # the provider drops.  Elsewhere (SMTP, FCM) each hand-over is recorded as it happens.
                grouped = bool(getattr(adapter, "idempotent_by_key", False))
                done: list[SendResult] = []
                flushed = time.perf_counter()
                for msg in ready:
                    t0 = time.perf_counter()
                    try:
                        result = adapter.send(msg)
                    except DeliveryError as exc:
                        _record_failure(box, stats, msg, exc, attempts[msg.message_id], settings, now_fn())
                    else:
                        stats.sent += 1
                        if grouped:
                            done.append(result)
                            if len(done) >= GROUP or t0 - flushed > GROUP_SECONDS:
                                box.sent_many(done)
                                done, flushed = [], t0
                        else:
                            box.sent(result)
                    if pace:
                        left = pace - (time.perf_counter() - t0)
                        if left > 0:
                            time.sleep(left)
                box.sent_many(done)
                if progress is not None:
                    progress(stats)
    finally:
        box.close()
    stats.seconds = time.perf_counter() - started
    log.info(
        "%s shard %s/%s: claimed %d, sent %d, failed %d, retried later %d, expired %d in %.1fs",
        channel,
        shard,
        shards,
        stats.claimed,
        stats.sent,
        stats.failed,
        stats.retried,
        stats.expired,
        stats.seconds,
    )
    return stats


def _render(
    row: dict[str, Any],
    channel: str,
    campaigns: dict[str, Campaign],
    renderer: Renderer,
    settings: DeliverySettings,
) -> OutboundMessage | str:
    campaign = campaigns.get(row["campaign_id"])
    if campaign is None:
        return (
            f"campaign {row['campaign_id']!r} is no longer defined (its YAML file was removed or is invalid)"
        )
    if row["customer"] is None:
        return f"customer {row['customer_id']!r} no longer exists"
    block = campaign.message.block(Channel(channel))
    if block is None:
        return f"campaign {campaign.id} has no message.{channel} block"
    unsub = None
    if settings.unsubscribe_secret and campaign.category.value == "marketing":
        token = make_token(
            settings.unsubscribe_secret, row["message_id"], row["customer_id"], channel, campaign.topic
        )
        unsub = unsubscribe_url(settings.unsubscribe_base, token)
    context = message_context(row["customer"], row["payload"], unsubscribe_url=unsub)
    try:
        content = renderer.render(channel, block, context)
    except TerminalDeliveryError as exc:
        return str(exc)
    if unsub is not None:
        content["unsubscribe_url"] = unsub
    return OutboundMessage(row["message_id"], channel, campaign.id, _recipient(row), content)


def _record_failure(
    box: Outbox,
    stats: DeliveryStats,
    msg: OutboundMessage,
    exc: DeliveryError,
    attempts: int,
    settings: DeliverySettings,
    now: datetime,
) -> None:
    reason = str(exc) or type(exc).__name__
    kind = type(exc).__name__
    stats.failures[kind] = stats.failures.get(kind, 0) + 1
    if isinstance(exc, TransientDeliveryError) and attempts < settings.max_attempts:
        retry_after = exc.retry_after if isinstance(exc, ChannelTransientError) else None
        box.retry_later(msg.message_id, reason, now + backoff(attempts, retry_after))
        stats.retried += 1
        return
    if isinstance(exc, TransientDeliveryError):
        reason = f"gave up after {attempts} attempts: {reason}"
    box.failed(msg.message_id, reason)
    stats.failed += 1
    if isinstance(exc, RecipientRejectedError) and exc.address:
        box.suppress(exc.address, reason)
