"""Unforgeable unsubscribe links (the ``List-Unsubscribe`` header and the link in the footer).

A token names the message, the person, the channel and the topic it unsubscribes
from, and is signed with HMAC-SHA256 under a deployment secret, so nobody can
unsubscribe someone else by editing a link.  It is URL-safe (base64url, no padding):

    <payload>.<signature>      payload = base64url(JSON {"v": 1, "m": id, "c": customer, "ch": channel, "t": topic})

The secret comes from the environment variable ``BATON_UNSUBSCRIBE_SECRET`` (at least
16 characters); generate one with::

    export BATON_UNSUBSCRIBE_SECRET="$(python -c 'import secrets; print(secrets.token_urlsafe(32))')"

Rotating it invalidates every link already sent, so keep it stable.  The same URL
serves the footer link (GET, a confirmation page) and RFC 8058 one-click (POST with
body ``List-Unsubscribe=One-Click``); both record an opt-out for ``channel`` and
``topic`` (an empty topic is the whole channel).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
from dataclasses import dataclass

from baton.errors import ConfigError

SECRET_ENV = "BATON_UNSUBSCRIBE_SECRET"
_MIN_SECRET = 16
_DOMAIN = b"baton-unsubscribe-v1:"

__all__ = [
    "SECRET_ENV",
    "UnsubscribeClaim",
    "make_token",
    "secret_from_env",
    "unsubscribe_url",
    "verify_token",
]


@dataclass(frozen=True)
class UnsubscribeClaim:
    """What a verified token says: who unsubscribes from what, from which message."""

    message_id: int
    customer_id: str
    channel: str
    topic: str


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    if not text or not all(c.isalnum() or c in "-_" for c in text):
        raise ValueError("unsubscribe token is malformed")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise ValueError("unsubscribe token is malformed") from None


def _check_secret(secret: bytes) -> None:
    if not isinstance(secret, bytes) or len(secret) < _MIN_SECRET:
        raise ConfigError(
            f"the unsubscribe secret must be at least {_MIN_SECRET} bytes; set {SECRET_ENV}: "
            f"export {SECRET_ENV}=\"$(python -c 'import secrets; print(secrets.token_urlsafe(32))')\""
        )


def _sign(secret: bytes, payload: str) -> bytes:
    return hmac.new(secret, _DOMAIN + payload.encode("ascii"), hashlib.sha256).digest()


def make_token(secret: bytes, message_id: int, customer_id: str, channel: str, topic: str) -> str:
    """A URL-safe token that unsubscribes *customer_id* from *channel*/*topic*, signed with *secret*."""
    _check_secret(secret)
    body = json.dumps(
        {"v": 1, "m": int(message_id), "c": str(customer_id), "ch": str(channel), "t": str(topic)},
        separators=(",", ":"),
        ensure_ascii=True,
    )
    payload = _b64(body.encode("ascii"))
    return f"{payload}.{_b64(_sign(secret, payload))}"


def verify_token(secret: bytes, token: str) -> UnsubscribeClaim:
    """The claim of a token made with *secret*; ValueError when it is malformed, tampered with or signed with another secret."""
    _check_secret(secret)
    if not isinstance(token, str) or token.count(".") != 1 or len(token) > 2048:
        raise ValueError("unsubscribe token is malformed")
    payload, signature = token.split(".")
    given = _unb64(signature)
    _unb64(payload)
    if not hmac.compare_digest(given, _sign(secret, payload)):
        raise ValueError("unsubscribe token signature does not match: the link was altered or is not ours")
    try:
        data = json.loads(_unb64(payload))
        if type(data.get("v")) is not int or data["v"] != 1:  # not true, 1.0
            raise ValueError("unsubscribe token has an unknown version")
        claim = UnsubscribeClaim(
            message_id=data["m"], customer_id=data["c"], channel=data["ch"], topic=data["t"]
        )
    except (KeyError, TypeError, AttributeError, json.JSONDecodeError, UnicodeDecodeError):
        raise ValueError("unsubscribe token is malformed") from None
    if not (
        type(claim.message_id) is int  # not a bool
        and -(2**63) <= claim.message_id < 2**63  # a message id (bigint)
        and isinstance(claim.customer_id, str)
        and isinstance(claim.channel, str)
        and isinstance(claim.topic, str)
        and "\x00" not in claim.customer_id + claim.channel + claim.topic  # no text in the store has one
    ):
        raise ValueError("unsubscribe token is malformed")
    return claim


def unsubscribe_url(base_url: str, token: str) -> str:
    """The link for *token*: *base_url* with ``{token}`` replaced, or ``<base_url>/<token>``."""
    if "{token}" in base_url:
        return base_url.replace("{token}", token)
    return f"{base_url.rstrip('/')}/{token}"


def secret_from_env(environ: dict[str, str] | None = None) -> bytes:
    """The signing secret from ``BATON_UNSUBSCRIBE_SECRET``; ConfigError (saying how to set it) when missing or short."""
    value = (os.environ if environ is None else environ).get(SECRET_ENV, "")
    if not value.strip():
        raise ConfigError(
            f"{SECRET_ENV} is not set: unsubscribe links are signed with it. Set a long random value, e.g. "
            f"export {SECRET_ENV}=\"$(python -c 'import secrets; print(secrets.token_urlsafe(32))')\" "
            "(keep it stable: changing it invalidates the links already sent)"
        )
    secret = value.strip().encode("utf-8")
    _check_secret(secret)
    return secret
