"""A fake channel for tests and dry runs, with knobs for failures and latency (like dlt's ``dummy``).

Selected by ``adapter_for`` for *any* channel when the connection's ``conn_type`` is
``baton_fake`` or its extra has ``"fake": true``.  Knobs, from the connection's extra:

* ``transient_rate`` / ``terminal_rate`` — probability (0..1) that a send fails
  transiently / terminally (drawn in that order from one random number);
* ``retry_after`` — seconds put on the transient failures (default none);
* ``latency_ms`` — time each send takes;
* ``seed`` — seeds the random draws (default: unseeded).  With a seed, every new
  adapter (and every new process) draws the same sequence;
* ``record`` — a file to append one JSON line per accepted message to
  (``{"message_id", "channel", "campaign_id", "customer_id", "content", "provider_id"}``;
  appends of single lines are atomic, so several processes may share the file).

Accepted messages are also kept in memory (``adapter.sent``).  A failure sends
nothing.  The provider id is ``fake-{channel}-{message_id}``; ``idempotent_by_key`` is
True (the record lets a test count copies per message id).
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
from typing import Any, ClassVar

from baton.delivery.base import (
    ChannelAdapter,
    ChannelTransientError,
    ConnectionInfo,
    OutboundMessage,
    SendResult,
)
from baton.errors import ConfigError, TerminalDeliveryError


class FakeAdapter(ChannelAdapter):
    """Pretends to send; fails and waits as its knobs say; records what it accepted.

    Standing in for a channel (``like``, the channel's adapter class), it keeps that
    channel's ``needs_unsubscribe_link`` and address declarations (so the outbox renders and
    suppresses as for the real channel) and accepts that channel's connection extras
    besides its own knobs; it writes no files.
    """

    channel: ClassVar[str] = "fake"
    idempotent_by_key: bool = True
    allowed_extras: ClassVar[frozenset[str]] = frozenset(
        {"transient_rate", "terminal_rate", "retry_after", "latency_ms", "seed", "record"}
    )
    batch_stop_after_transient: ClassVar[int] = 0  # failures are independent draws: try every message

    def __init__(
        self,
        conn: ConnectionInfo,
        *,
        base_path: Any | None = None,
        channel: str | None = None,
        like: type[ChannelAdapter] | None = None,
    ) -> None:
        self.for_channel = channel or "fake"
        self.like = like
        if like is not None:
            self.needs_unsubscribe_link = like.needs_unsubscribe_link
            self.address_field = like.address_field
            self.address_case_insensitive = like.address_case_insensitive
        super().__init__(conn, base_path=base_path)
        self.transient_rate = self._rate("transient_rate")
        self.terminal_rate = self._rate("terminal_rate")
        if self.transient_rate + self.terminal_rate > 1:
            raise ConfigError(
                f"connection {conn.conn_id!r}: transient_rate + terminal_rate must be at most 1"
            )
        self.latency = conn.extra_float("latency_ms", 0.0) / 1000.0
        retry_after = conn.extra.get("retry_after")
        self.retry_after = float(retry_after) if retry_after not in (None, "") else None
        seed = conn.extra.get("seed")
        self._random = random.Random(seed) if seed not in (None, "") else random.Random()
        self.record_path = conn.extra_str("record")
        self.sent: list[dict[str, Any]] = []
        self.attempts = 0
        self._lock = threading.Lock()

    def allowed_extra_keys(self) -> frozenset[str]:
        """Its own knobs, and the extras of the channel it stands in for."""
        own = super().allowed_extra_keys()
        return own | self.like.allowed_extras if self.like is not None else own

    def _rate(self, key: str) -> float:
        value = self.conn.extra_float(key, 0.0)
        if not 0.0 <= value <= 1.0:
            raise ConfigError(f"connection {self.conn.conn_id!r}: extra {key!r} must be between 0 and 1")
        return value

    def send(self, msg: OutboundMessage) -> SendResult:
        """Wait ``latency_ms``, fail as drawn, else record the message."""
        with self._lock:
            self.attempts += 1
            draw = self._random.random()
        if self.latency:
            time.sleep(self.latency)
        if draw < self.transient_rate:
            raise ChannelTransientError(
                f"fake {self.for_channel}: simulated transient failure", retry_after=self.retry_after
            )
        if draw < self.transient_rate + self.terminal_rate:
            raise TerminalDeliveryError(f"fake {self.for_channel}: simulated terminal failure")
        provider_id = f"fake-{self.for_channel}-{msg.message_id}"
        entry = {
            "message_id": msg.message_id,
            "channel": self.for_channel,
            "campaign_id": msg.campaign_id,
            "customer_id": msg.recipient.customer_id,
            "content": dict(msg.content),
            "provider_id": provider_id,
        }
        with self._lock:
            self.sent.append(entry)
            if self.record_path:
                line = (json.dumps(entry, sort_keys=True, ensure_ascii=True) + "\n").encode("ascii")
                fd = os.open(self.record_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
                try:
                    os.write(fd, line)
                finally:
                    os.close(fd)
        return SendResult(message_id=msg.message_id, provider_id=provider_id)


def read_record(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The entries a fake adapter appended to *path* (empty when the file does not exist)."""
    try:
        with open(path, encoding="ascii") as fh:
            return [json.loads(line) for line in fh if line.strip()]
    except FileNotFoundError:
        return []


__all__ = ["FakeAdapter", "read_record"]
