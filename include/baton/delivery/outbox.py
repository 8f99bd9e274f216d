"""The outbox: hand each selected message to its channel at most once, and never lose one.

Life of a message row (``messages``, statuses :class:`~baton.store.status.MessageStatus`):
``pending`` → *claim* (``sending``, with a lease) → render → send → ``sent`` (provider
id) | ``failed`` (reason) | back to ``pending`` with a backoff (transient failure).
Every state change is its own committed transaction, so a worker killed at any point
leaves either a ``pending`` row or a ``sending`` row whose lease is claimed again once it
expires — or at once, when the worker's database session has ended; the retry carries
the same idempotency key (the message id) to the provider.

* One path out for every channel: each batch goes to the adapter's
  :meth:`~baton.delivery.base.ChannelAdapter.send_batch`, whose outcomes are recorded as
  they are yielded.  What differs between channels is declared by the adapter
  (``idempotent_by_key``, ``needs_unsubscribe_link``, how it normalises an address),
  never tested by channel name here.
* A transient failure puts the message back with a backoff; when the connection failed,
  the rest of the batch is not attempted (their claim's attempt is given back) and the
  run stops: a channel that is down costs one timeout, not one per message.
* Claims use ``FOR UPDATE SKIP LOCKED``: parallel workers of one (channel, shard) never
  take the same row.
* A message whose cycle is older than ``max_send_delay`` when delivery reaches it is
  ``expired``, not sent (backfills recompute history; they do not spam), unless
  ``allow_late_send``.
* Messages deferred by quiet hours (``send_at`` in the future) wait; every cycle's
  delivery sends whatever is due, so they go out with the first cycle after ``send_at``.
* Rate limits (``policy.channels.<ch>.rate_per_second``) hold across workers: each batch
  reserves its time slot in ``rate_limits`` (a shared leaky bucket in Postgres), and the
  adapter paces the batch's sends within it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextlib import ExitStack, closing
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Self

from sqlalchemy.engine import Engine

from baton.delivery.base import (
    ChannelAdapter,
    ChannelTransientError,
    OutboundMessage,
    Recipient,
    RecipientRejectedError,
    SendResult,
    retry_after_of,
)
from baton.delivery.render import Renderer, message_context
from baton.delivery.unsubscribe import make_token, unsubscribe_url
from baton.errors import DeliveryError, TerminalDeliveryError, TransientDeliveryError
from baton.spec import Campaign, Channel
from baton.store.shards import bounds as shard_bounds
from baton.store.status import MessageStatus
from baton.store.tx import autocommit_session

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 5
GROUP = 50  # outcomes recorded together on channels idempotent by key
GROUP_SECONDS = 0.25
LEASE = timedelta(minutes=5)


@dataclass
class DeliveryStats:
    """What one delivery run did (counts of messages)."""

    channel: str
    shard: int
    expired: int = 0
    claimed: int = 0
    sent: int = 0
    failed: int = 0
    retried: int = 0  # back to pending with a backoff (not_attempted included)
    not_attempted: int = 0  # skipped: the batch had stopped (the claim's attempt given back)
    seconds: float = 0.0
    failures: dict[str, int] = field(default_factory=dict)
    connection_failed: str | None = None  # why the run stopped early: the channel's connection failed

    def as_dict(self) -> dict[str, Any]:
        """The counts (for XCom)."""
        return {
            "channel": self.channel,
            "shard": self.shard,
            "expired": self.expired,
            "claimed": self.claimed,
            "sent": self.sent,
            "failed": self.failed,
            "retried": self.retried,
            "not_attempted": self.not_attempted,
        }


@dataclass(frozen=True)
class DeliverySettings:
    """How one delivery run works (policy settings and limits)."""

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
    """Claims and records the messages of one (channel, shard) on an autocommit session.

    Each statement commits on its own, without waiting for the WAL flush
    (``synchronous_commit = off``): a killed worker loses nothing (the server has the
    commit); only a crash of PostgreSQL itself may forget the last fraction of a second of
    outcomes, and those messages are handed over again under the same idempotency key /
    Message-ID.  The session is reset before its connection returns to the pool
    (:func:`baton.store.tx.autocommit_session`).  Use it as a context manager, or call
    :meth:`close`.

    A claimed row carries the server pid of this session (``lease_owner``): when the
    session has ended — the worker died — its leases are void at once, so the next claim
    takes those messages without waiting for ``lease_until``.
    """

    def __init__(self, engine: Engine, channel: str, shard: int, shards: int) -> None:
        self.engine = engine
        self.channel = channel
        self.shard = shard
        self.shards = max(1, shards)
        self._stack = ExitStack()
        self._db = self._stack.enter_context(autocommit_session(engine, synchronous_commit="off"))

    def close(self) -> None:
        """End the session (its connection goes back to the pool, reset)."""
        self._stack.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _where(self) -> str:
        """This outbox's messages: its channel and shard (by the person's hash), and only
        messages whose cycle has committed (a cycle's shards write their outbox rows before
        the cycle commits; messages of no cycle — written by hand — are always due)."""
        part = "" if self.shards == 1 else " and messages.bucket >= %(lo)s and messages.bucket < %(hi)s"
        return (
            f"channel = %(ch)s{part} and not exists (select 1 from cycles c"
            " where c.cycle_at = messages.cycle_at and c.status <> 'decided')"
        )

    @staticmethod
    def _claimable() -> str:
        """Pending, or leased by a session whose lease ran out or which has ended.  The statuses are
        rendered from the enum, not bound: the planner matches them with ``ix_messages_due``'s
        predicate, also in the generic plan of a prepared claim."""
        return (
            f"(status = '{MessageStatus.PENDING}' or (status = '{MessageStatus.SENDING}' and (lease_until < %(now)s"
            " or (lease_owner is not null and lease_owner not in (select pid from pg_stat_activity)))))"
        )

    def _params(self, **kw: Any) -> dict[str, Any]:
        lo, hi = shard_bounds(self.shard, self.shards)
        return {"ch": self.channel, "lo": lo, "hi": hi, **kw}

    def expire_late(self, now: datetime, max_send_delay: timedelta) -> int:
        """Expire the due messages whose cycle is older than *max_send_delay*; returns how many."""
        cur = self._db.execute(
            "with late as (update messages set status = %(expired)s, lease_until = null, lease_owner = null,"
            " updated_at = now(), error = 'cycle older than max_send_delay when delivery reached it'"
            f" where {self._where()} and cycle_at < %(cutoff)s and {self._claimable()} returning message_id)"
            " insert into message_events (message_id, type, detail)"
            " select message_id, 'expired', jsonb_build_object('max_send_delay', %(delay)s::text) from late",
            self._params(
                cutoff=now - max_send_delay, now=now, delay=str(max_send_delay), expired=MessageStatus.EXPIRED
            ),
        )
        return int(cur.rowcount or 0)

    def claim(self, now: datetime, limit: int, lease: timedelta) -> list[dict[str, Any]]:
        """Lease up to *limit* due messages (``sending``, one attempt more) with what rendering needs."""
        rows = self._db.execute(
            "with due as (select message_id from messages"
            f" where {self._where()} and send_at <= %(now)s and {self._claimable()}"
            " order by send_at, message_id limit %(limit)s for update skip locked)"
            " update messages m set status = %(sending)s, lease_until = %(lease)s, lease_owner = pg_backend_pid(),"
            " attempts = m.attempts + 1, updated_at = now() from due where m.message_id = due.message_id"
            " returning m.message_id, m.customer_id, m.campaign_id, m.payload, m.attempts, m.batch_id, m.seq,"
            " m.address",
            self._params(now=now, limit=limit, lease=now + lease, sending=MessageStatus.SENDING),
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
            for r in self._db.execute(
                f"select {', '.join(cols)} from customers where customer_id = any(%(ids)s)", {"ids": ids}
            ).fetchall()
        }
        # the payload of a decided message is its candidate row's (not copied into the outbox)
        refs = [(r[5], r[6]) for r in rows if r[5] is not None]
        payloads: dict[tuple[int, int], Any] = {}
        if refs:
            payloads = {
                (b, q): p
                for b, q, p in self._db.execute(
                    "select c.batch_id, c.seq, c.payload from unnest(%(batches)s::bigint[], %(seqs)s::int[])"
                    " r(batch_id, seq) join candidates c on c.batch_id = r.batch_id and c.seq = r.seq",
                    {"batches": [b for b, _ in refs], "seqs": [q for _, q in refs]},
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
                "address": r[7],
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
        self._db.execute(
            "update messages m set status = %(sent)s, provider_id = v.pid, sent_at = now(), lease_until = null,"
            " lease_owner = null, error = null, updated_at = now()"
            " from unnest(%(ids)s::bigint[], %(pids)s::text[]) as v(id, pid)"
            " where m.message_id = v.id and m.status = %(sending)s",
            {
                "ids": [r.message_id for r in results],
                "pids": [r.provider_id for r in results],
                "sent": MessageStatus.SENT,
                "sending": MessageStatus.SENDING,
            },
        )

    def failed(self, message_id: int, reason: str) -> None:
        """Record a terminal failure with its reason (and a ``failed`` event)."""
        self._db.execute(
            "with f as (update messages set status = %(failed)s, error = %(reason)s, lease_until = null,"
            " lease_owner = null, updated_at = now() where message_id = %(id)s and status = %(sending)s"
            " returning message_id)"
            " insert into message_events (message_id, type, detail) select message_id, 'failed',"
            " jsonb_build_object('reason', %(reason)s::text) from f",
            {
                "reason": reason[:2000],
                "id": message_id,
                "failed": MessageStatus.FAILED,
                "sending": MessageStatus.SENDING,
            },
        )

    def retry_later(self, message_id: int, reason: str, when: datetime, *, attempted: bool = True) -> None:
        """Put a message back to ``pending`` until *when* (a ``retry`` event); a message that was
        not attempted gets its claim's attempt back."""
        self.retry_many([message_id], reason, when, attempted=attempted)

    def retry_many(
        self, message_ids: list[int], reason: str, when: datetime, *, attempted: bool = True
    ) -> None:
        """:meth:`retry_later` for several messages in one statement."""
        if not message_ids:
            return
        # send_at moves forward for the retry; the decision keeps the original send_at
        self._db.execute(
            "with r as (update messages set status = %(pending)s, error = %(reason)s, send_at = %(when)s,"
            " lease_until = null, lease_owner = null, updated_at = now(),"
            " attempts = case when %(attempted)s then attempts else greatest(attempts - 1, 0) end"
            " where message_id = any(%(ids)s) and status = %(sending)s returning message_id)"
            " insert into message_events (message_id, type, detail) select message_id, 'retry',"
            " jsonb_build_object('reason', %(reason)s::text, 'next_at', %(next)s::text, 'attempted', %(attempted)s)"
            " from r",
            {
                "reason": reason[:2000],
                "when": when,
                "next": when.isoformat(),
                "ids": list(message_ids),
                "attempted": attempted,
                "pending": MessageStatus.PENDING,
                "sending": MessageStatus.SENDING,
            },
        )

    def suppress(self, address: str, reason: str) -> None:
        """Add *address* (normalised by the channel's adapter) to the channel's suppression list."""
        self._db.execute(
            "insert into suppressions (channel, address, reason) values (%(ch)s, %(address)s, %(reason)s)"
            " on conflict do nothing",
            {"ch": self.channel, "address": address, "reason": reason[:200]},
        )

    def reserve(self, n: int, rate: float | None) -> float:
        """Reserve ``n`` sends in the channel's shared rate budget; returns seconds to wait first."""
        if not rate or n <= 0:
            return 0.0
        row = self._db.execute(
            "insert into rate_limits as r (channel, next_at) values (%(ch)s, clock_timestamp() + %(d)s)"
            " on conflict (channel) do update set next_at = greatest(r.next_at, clock_timestamp()) + %(d)s"
            " returning extract(epoch from (next_at - %(d)s - clock_timestamp()))",
            {"ch": self.channel, "d": timedelta(seconds=n / rate)},
        ).fetchone()
        return max(0.0, float(row[0])) if row else 0.0


def _recipient(row: dict[str, Any]) -> Recipient:
    """Who the message goes to: the row's profile, with the address the decision took from another
    profile of the person where the row's profile has none (``messages.address``, SPEC §6)."""
    c = {**(row["customer"] or {}), **(row.get("address") or {})}
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
    """Deliver every due message of (channel, shard); returns counts.

    Batch by batch: claim, render, reserve the batch's time in the channel's shared rate
    budget, then hand the batch to the adapter's :meth:`~ChannelAdapter.send_batch` — the
    one way messages leave, for every channel — recording each outcome as it is yielded
    (channels idempotent by key in small groups).  A batch whose connection failed ends the
    run (``stats.connection_failed``): the rest waits, untouched, for the next run.  If the
    batch raises (a bug in an adapter, the task being stopped), the outcomes already known
    are recorded and every message of the batch without one goes back to ``pending`` with a
    backoff before the exception propagates: none stays ``sending`` until its lease runs out.
    The adapter connects when the first message goes out and is closed at the end.
    """
    started = time.perf_counter()
    stats = DeliveryStats(channel, shard)
    renderer = Renderer(templates_dir)
    interval = 1.0 / settings.rate_per_second if settings.rate_per_second else 0.0
    batches = 0
    with Outbox(engine, channel, shard, shards) as box:
        try:
            if not settings.allow_late_send:
                stats.expired = box.expire_late(now_fn(), settings.max_send_delay)
            while settings.max_batches is None or batches < settings.max_batches:
                rows = box.claim(now_fn(), settings.batch_size, settings.lease)
                if not rows:
                    break
                batches += 1
                stats.claimed += len(rows)
                batch = _Batch(box, adapter, stats, settings, now_fn, rows)
                try:
                    batch.run(campaigns, renderer, interval)
                except BaseException as exc:
                    batch.release(exc)
                    raise
                if progress is not None:
                    progress(stats)
                if stats.connection_failed:
                    log.warning(
                        "%s shard %s/%s: the connection failed, the rest waits for the next run: %s",
                        channel,
                        shard,
                        shards,
                        stats.connection_failed,
                    )
                    break
        finally:
            adapter.close()
    stats.seconds = time.perf_counter() - started
    log.info(
        "%s shard %s/%s: claimed %d, sent %d, failed %d, retried later %d (%d not attempted), expired %d in %.1fs",
        channel,
        shard,
        shards,
        stats.claimed,
        stats.sent,
        stats.failed,
        stats.retried,
        stats.not_attempted,
        stats.expired,
        stats.seconds,
    )
    return stats


class _Batch:
    """One claimed batch on its way out: which messages still lack a recorded outcome."""

    def __init__(
        self,
        box: Outbox,
        adapter: ChannelAdapter,
        stats: DeliveryStats,
        settings: DeliverySettings,
        now_fn: Callable[[], datetime],
        rows: list[dict[str, Any]],
    ) -> None:
        self.box = box
        self.adapter = adapter
        self.stats = stats
        self.settings = settings
        self.now_fn = now_fn
        self.rows = rows
        self.attempts: dict[int, int] = {r["message_id"]: r["attempts"] for r in rows}
        self.unrecorded: set[int] = set(self.attempts)
        self.done: list[SendResult] = []  # sent, to be recorded in a group
        self.retry_at: datetime | None = None  # when the batch's transient failures are retried

    def run(self, campaigns: dict[str, Campaign], renderer: Renderer, interval: float) -> None:
        """Render, reserve the rate budget, send, and record each outcome as it comes."""
        channel = self.box.channel
        link = self.adapter.needs_unsubscribe_link
        ready: list[OutboundMessage] = []
        for row in self.rows:
            msg = _render(row, channel, campaigns, renderer, self.settings, unsubscribe_link=link)
            if isinstance(msg, str):
                self.box.failed(row["message_id"], msg)
                self.unrecorded.discard(row["message_id"])
                self.stats.failed += 1
                self.stats.failures["render"] = self.stats.failures.get("render", 0) + 1
            else:
                ready.append(msg)
        wait = self.box.reserve(len(ready), self.settings.rate_per_second)
        if wait > 0:
            time.sleep(wait)
        # Where the provider deduplicates by our key (Twilio's idempotency token, a file name),
        # outcomes are recorded in small groups: a crash re-sends at most one group under the same
        # keys, which the provider drops.  Elsewhere (SMTP, FCM) each hand-over is recorded as it
        # happens.
        grouped = self.adapter.idempotent_by_key
        flushed = time.perf_counter()
        with closing(self.adapter.send_batch(ready, interval=interval)) as outcomes:
            for msg, outcome in outcomes:
                if msg.message_id not in self.unrecorded:
                    raise RuntimeError(
                        f"the {channel} adapter gave a second outcome for message {msg.message_id}"
                    )
                if isinstance(outcome, DeliveryError):
                    self._failure(msg, outcome)
                    continue
                self.stats.sent += 1
                if not grouped:
                    self.box.sent(outcome)
                    self.unrecorded.discard(msg.message_id)
                    continue
                self.done.append(outcome)
                now = time.perf_counter()
                if len(self.done) >= GROUP or now - flushed > GROUP_SECONDS:
                    self.flush()
                    flushed = now
        self.flush()
        if self.unrecorded:
            raise RuntimeError(
                f"the {channel} adapter gave no outcome for {len(self.unrecorded)} message(s) of the batch"
            )

    def flush(self) -> None:
        """Record the grouped hand-overs."""
        if self.done:
            self.box.sent_many(self.done)
            self.unrecorded.difference_update(r.message_id for r in self.done)
            self.done = []

    def _failure(self, msg: OutboundMessage, exc: DeliveryError) -> None:
        box, stats, settings = self.box, self.stats, self.settings
        attempts = self.attempts[msg.message_id]
        reason = str(exc) or type(exc).__name__
        self.unrecorded.discard(msg.message_id)
        if isinstance(exc, ChannelTransientError) and exc.connection_failed and not stats.connection_failed:
            stats.connection_failed = reason
        if isinstance(exc, ChannelTransientError) and not exc.attempted:
            # never left: the claim's attempt is given back; it waits as long as the failure that
            # stopped the batch
            when = self.now_fn() + backoff(attempts - 1, exc.retry_after)
            if self.retry_at is not None:
                when = max(when, self.retry_at)
            box.retry_later(msg.message_id, reason, when, attempted=False)
            stats.retried += 1
            stats.not_attempted += 1
            return
        kind = type(exc).__name__
        stats.failures[kind] = stats.failures.get(kind, 0) + 1
        if isinstance(exc, TransientDeliveryError) and attempts < settings.max_attempts:
            when = self.now_fn() + backoff(attempts, retry_after_of(exc))
            self.retry_at = when if self.retry_at is None else max(self.retry_at, when)
            box.retry_later(msg.message_id, reason, when)
            stats.retried += 1
            return
        if isinstance(exc, TransientDeliveryError):
            reason = f"gave up after {attempts} attempts: {reason}"
        box.failed(msg.message_id, reason)
        stats.failed += 1
        if isinstance(exc, RecipientRejectedError) and exc.address:
            box.suppress(self.adapter.suppression_address(exc.address), reason)

    def release(self, exc: BaseException) -> None:
        """The batch was interrupted by *exc*: record the known hand-overs and put every message
        without an outcome back to ``pending`` with a backoff (best effort: the database may be
        what failed, and then the leases — void once this session has ended — take over)."""
        try:
            self.flush()
        except Exception as err:
            log.warning("could not record the hand-overs of an interrupted batch: %s", err)
        if not self.unrecorded:
            return
        reason = (
            f"delivery was interrupted before this message's outcome was recorded ({type(exc).__name__}: {exc});"
            " it may have been handed over"
        )
        by_attempts: dict[int, list[int]] = {}
        for mid in self.unrecorded:
            by_attempts.setdefault(self.attempts[mid], []).append(mid)
        try:
            now = self.now_fn()
            for attempts, ids in sorted(by_attempts.items()):
                self.box.retry_many(sorted(ids), reason, now + backoff(attempts, None))
            log.warning(
                "%s: batch interrupted by %s; %d message(s) without an outcome are pending again",
                self.box.channel,
                type(exc).__name__,
                len(self.unrecorded),
            )
            self.stats.retried += len(self.unrecorded)
            self.unrecorded.clear()
        except Exception as err:
            log.warning(
                "could not put %d message(s) of an interrupted batch back to pending (%s): their lease ends"
                " with this session",
                len(self.unrecorded),
                err,
            )


def _render(
    row: dict[str, Any],
    channel: str,
    campaigns: dict[str, Campaign],
    renderer: Renderer,
    settings: DeliverySettings,
    *,
    unsubscribe_link: bool,
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
    if unsubscribe_link and settings.unsubscribe_secret and campaign.category.value == "marketing":
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
