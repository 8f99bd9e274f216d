"""Shared fixtures for delivery tests: real SMTP and HTTP provider servers on loopback.

Use a fixture in a test module by binding it there (``smtp_sink =
delivery_servers.smtp_sink``), or load them all with ``pytest_plugins =
["delivery_servers"]`` in the root conftest; import the helpers as usual.  Each fixture starts a fresh
server on a free port and stops it after the test; knobs are attributes of the
server objects (``smtp_sink.reject``, ``provider.fail_rate_transient``…).

Also: builders of test messages and a self-signed TLS certificate for STARTTLS tests.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from baton.delivery.base import ChannelAdapter, OutboundMessage, Outcome, Recipient
from baton_dev.sinks import ProviderEmulator, SmtpSink

__all__ = [
    "free_port",
    "make_message",
    "make_recipient",
    "outcomes",
    "provider",
    "self_signed_cert",
    "smtp_sink",
]


@pytest.fixture()
def smtp_sink(tmp_path: Path) -> Iterator[SmtpSink]:
    """An SMTP sink on 127.0.0.1 delivering into ``tmp_path/maildir``."""
    with SmtpSink("127.0.0.1", 0, tmp_path / "maildir") as sink:
        yield sink


@pytest.fixture()
def provider(tmp_path: Path) -> Iterator[ProviderEmulator]:
    """A Twilio/FCM provider emulator on 127.0.0.1 recording into ``tmp_path/provider.jsonl``."""
    with ProviderEmulator("127.0.0.1", 0, tmp_path / "provider.jsonl", seed=7) as emulator:
        yield emulator


def free_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def make_recipient(**overrides: Any) -> Recipient:
    """A reachable person on every channel."""
    fields: dict[str, Any] = {
        "customer_id": "c-1",
        "email": "ann.lee@example.com",
        "phone": "+15550100001",
        "push_token": "device-token-1",
        "postal_address": "1 Main St\nSpringfield, IL 62701",
        "first_name": "Ann",
        "last_name": "Lee",
    }
    fields.update(overrides)
    return Recipient(**fields)


_CONTENT: dict[str, dict[str, str]] = {
    "email": {
        "subject": "Your cart is waiting",
        "html": '<p>Hello <b>Ann</b>, see <a href="https://shop.example/cart">your cart</a>.</p>',
        "unsubscribe_url": "https://shop.example/u/TOKEN",
    },
    "sms": {"text": "Your cart is waiting: https://shop.example/cart"},
    "push": {"title": "Still thinking?", "body": "Your cart is waiting", "url": "https://shop.example/cart"},
    "audience": {"list": "cart_abandoners"},
    "direct_mail": {"creative": "WINBACK-2026-A"},
}


def make_message(
    message_id: int = 1,
    channel: str = "email",
    *,
    recipient: Recipient | None = None,
    campaign_id: str = "abandoned_cart",
    **content: str,
) -> OutboundMessage:
    """A rendered message of *channel* (default content per channel, overridden by *content*)."""
    body = {**_CONTENT[channel], **content}
    return OutboundMessage(message_id, channel, campaign_id, recipient or make_recipient(), body)


def outcomes(adapter: ChannelAdapter, msgs: list[OutboundMessage], **kw: Any) -> list[Outcome]:
    """Run the adapter's batch path and return one outcome per message, in the order of *msgs*
    (the generator yields them as they complete; every message must get exactly one)."""
    got: list[Outcome | None] = [None] * len(msgs)
    for msg, outcome in adapter.send_batch(msgs, **kw):
        i = next(i for i, m in enumerate(msgs) if m is msg and got[i] is None)
        got[i] = outcome
    assert all(o is not None for o in got), "the batch gave no outcome for some message"
    return [o for o in got if o is not None]


def self_signed_cert(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1/localhost: ``(cert.pem, key.pem)``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


def server_tls_context(cert: Path, key: Path) -> ssl.SSLContext:
    """A server-side TLS context for *cert*/*key*."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context
