"""Signed unsubscribe tokens: round trip, tamper detection, the secret from the environment."""

from __future__ import annotations

import base64
import json
import re

import pytest

from baton.delivery.unsubscribe import (
    SECRET_ENV,
    UnsubscribeClaim,
    make_token,
    secret_from_env,
    unsubscribe_url,
    verify_token,
)
from baton.errors import ConfigError

pytestmark = pytest.mark.unit

SECRET = b"test-secret-of-at-least-16-bytes"


def test_round_trip() -> None:
    token = make_token(SECRET, 42, "cust-ü/1", "email", "promotions")
    assert re.fullmatch(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+", token)  # URL-safe, no padding
    assert verify_token(SECRET, token) == UnsubscribeClaim(42, "cust-ü/1", "email", "promotions")
    assert verify_token(SECRET, make_token(SECRET, 1, "c", "sms", "")).topic == ""


def test_tampered_payload_is_rejected() -> None:
    token = make_token(SECRET, 42, "alice", "email", "promotions")
    payload, signature = token.split(".")
    forged = (
        base64.urlsafe_b64encode(
            json.dumps(
                {"v": 1, "m": 42, "c": "bob", "ch": "email", "t": "promotions"}, separators=(",", ":")
            ).encode()
        )
        .rstrip(b"=")
        .decode()
    )
    with pytest.raises(ValueError, match="signature does not match"):
        verify_token(SECRET, f"{forged}.{signature}")
    flipped = payload[:-1] + ("A" if payload[-1] != "A" else "B")
    with pytest.raises(ValueError):
        verify_token(SECRET, f"{flipped}.{signature}")
    with pytest.raises(ValueError):
        verify_token(SECRET, f"{payload}.{signature[:-2]}")


def test_other_secret_is_rejected() -> None:
    token = make_token(SECRET, 42, "alice", "email", "promotions")
    with pytest.raises(ValueError, match="signature does not match"):
        verify_token(b"another-secret-of-16-bytes-or-more", token)


@pytest.mark.parametrize("token", ["", "abc", "a.b.c", "!!!.???", ".", "a" * 3000, "e30.AAAA"])
def test_malformed_tokens_are_rejected(token: str) -> None:
    with pytest.raises(ValueError):
        verify_token(SECRET, token)


def test_secret_from_env() -> None:
    assert secret_from_env({SECRET_ENV: " " + SECRET.decode() + "\n"}) == SECRET
    with pytest.raises(ConfigError, match=f"{SECRET_ENV} is not set.*export {SECRET_ENV}="):
        secret_from_env({})
    with pytest.raises(ConfigError, match="at least 16 bytes"):
        secret_from_env({SECRET_ENV: "short"})
    with pytest.raises(ConfigError, match="at least 16 bytes"):
        make_token(b"short", 1, "c", "email", "")


def test_unsubscribe_url() -> None:
    assert (
        unsubscribe_url("https://shop.example/baton/unsubscribe/", "t.k")
        == "https://shop.example/baton/unsubscribe/t.k"
    )
    assert (
        unsubscribe_url("https://shop.example/u?token={token}", "t.k") == "https://shop.example/u?token=t.k"
    )
