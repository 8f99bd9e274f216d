"""The channel adapters, one module per channel, and their explicit registry.

``REGISTRY`` maps a channel name (SPEC §1: email, sms, push, audience, direct_mail —
plus ``fake``) to its adapter class.  :func:`adapter_for` builds the adapter of a
channel from an Airflow-free :class:`~baton.delivery.base.ConnectionInfo`; a
connection of type ``baton_fake`` (or with extra ``{"fake": true}``) selects the fake
adapter whatever the channel, so tests and dry runs only swap connections.
"""

from __future__ import annotations

from typing import Any

from baton.delivery.base import ChannelAdapter, ConnectionInfo
from baton.delivery.channels.audience import AudienceAdapter
from baton.delivery.channels.direct_mail import DirectMailAdapter
from baton.delivery.channels.email import EmailAdapter
from baton.delivery.channels.fake import FakeAdapter
from baton.delivery.channels.push import PushAdapter
from baton.delivery.channels.sms import SmsAdapter
from baton.errors import ConfigError

FAKE_CONN_TYPE = "baton_fake"

REGISTRY: dict[str, type[ChannelAdapter]] = {
    cls.channel: cls
    for cls in (EmailAdapter, SmsAdapter, PushAdapter, AudienceAdapter, DirectMailAdapter, FakeAdapter)
}


def is_fake(conn: ConnectionInfo) -> bool:
    """Whether *conn* selects the fake adapter."""
    return conn.conn_type == FAKE_CONN_TYPE or conn.extra_bool("fake")


def _channel_name(channel: str) -> str:
    name = str(getattr(channel, "value", channel))
    if name not in REGISTRY:
        raise ConfigError(f"unknown channel {name!r}: known channels are {', '.join(sorted(REGISTRY))}")
    return name


def adapter_class(channel: str, conn: ConnectionInfo) -> type[ChannelAdapter]:
    """The adapter class that :func:`adapter_for` builds for *channel* over *conn*: its declared
    capabilities (``needs_export_path``…) tell the caller what to pass before building it."""
    name = _channel_name(channel)
    return FakeAdapter if is_fake(conn) else REGISTRY[name]


def adapter_for(channel: str, conn: ConnectionInfo, **kw: Any) -> ChannelAdapter:
    """The adapter of *channel* over *conn* (keyword arguments, e.g. ``base_path``, go to its constructor).

    Raises ConfigError for an unknown channel, an unknown extra key of the connection, or a
    connection that lacks what the channel needs.
    """
    name = _channel_name(channel)
    cls = adapter_class(name, conn)
    if cls is FakeAdapter:
        like = None if name == FakeAdapter.channel else REGISTRY[name]
        return FakeAdapter(conn, channel=name, like=like, **kw)
    return cls(conn, **kw)


__all__ = [
    "FAKE_CONN_TYPE",
    "REGISTRY",
    "AudienceAdapter",
    "DirectMailAdapter",
    "EmailAdapter",
    "FakeAdapter",
    "PushAdapter",
    "SmsAdapter",
    "adapter_class",
    "adapter_for",
    "is_fake",
]
