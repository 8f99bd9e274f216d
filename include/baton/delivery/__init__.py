"""Delivery: hand selected messages to their channels.

This package holds the Airflow-free parts: the channel-adapter family
(:mod:`baton.delivery.base`, :mod:`baton.delivery.channels`), message rendering in
Jinja's sandbox (:mod:`baton.delivery.render`), signed unsubscribe links
(:mod:`baton.delivery.unsubscribe`) and the outbox (:mod:`baton.delivery.outbox`).  The
SMTP sink and provider emulators of the tests and the demo live in ``baton_dev.sinks``.
"""

from __future__ import annotations

from baton.delivery.base import (
    ChannelAdapter,
    ChannelTransientError,
    ConnectionInfo,
    OutboundMessage,
    Recipient,
    RecipientRejectedError,
    SendResult,
    retry_after_of,
)
from baton.delivery.channels import REGISTRY, adapter_for
from baton.delivery.render import message_context, render_message

__all__ = [
    "REGISTRY",
    "ChannelAdapter",
    "ChannelTransientError",
    "ConnectionInfo",
    "OutboundMessage",
    "Recipient",
    "RecipientRejectedError",
    "SendResult",
    "adapter_for",
    "message_context",
    "render_message",
    "retry_after_of",
]
