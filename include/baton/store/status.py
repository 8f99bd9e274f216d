"""The life of an outbox message as an enum: the only spelling of a message status in the code.

``messages.status`` is checked against exactly these values (``ck_messages_status``, built
from this enum in :mod:`baton.store.schema`); SQL binds them as parameters or renders them
with :func:`sql_in`.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["DUE", "FINAL", "MessageStatus", "sql_in"]


class MessageStatus(StrEnum):
    """Where a message is: ``pending`` → ``sending`` (claimed, leased) → ``sent`` | ``failed`` |
    back to ``pending``; ``expired`` (too late to send), ``cancelled`` (withdrawn before sending)."""

    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    EXPIRED = "expired"
    CANCELLED = "cancelled"


DUE = (MessageStatus.PENDING, MessageStatus.SENDING)
"""Statuses of messages delivery still has to handle."""

FINAL = (MessageStatus.SENT, MessageStatus.FAILED, MessageStatus.EXPIRED, MessageStatus.CANCELLED)
"""Statuses a message never leaves."""


def sql_in(*statuses: MessageStatus) -> str:
    """``('a', 'b')``: a SQL list of statuses, for constraints and index predicates (values, not input)."""
    return "(" + ", ".join(f"'{MessageStatus(s).value}'" for s in statuses) + ")"
