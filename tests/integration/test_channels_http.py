"""The sms (Twilio-shaped) and push (FCM-shaped) adapters against the provider emulator on loopback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import delivery_servers
from baton.delivery import (
    ChannelTransientError,
    RecipientRejectedError,
    SendResult,
    adapter_for,
    retry_after_of,
)
from baton.delivery.base import ChannelAdapter, ConnectionInfo
from baton.errors import ConfigError, TerminalDeliveryError
from baton_dev.sinks import ProviderEmulator
from delivery_servers import free_port, make_message, make_recipient, outcomes

pytestmark = pytest.mark.integration
provider = delivery_servers.provider  # fixture

CHANNELS = ["sms", "push"]


def _adapter(provider: ProviderEmulator, channel: str, **extra: object) -> ChannelAdapter:
    conn = provider.sms_connection(**extra) if channel == "sms" else provider.push_connection(**extra)
    return adapter_for(channel, conn)


def test_twilio_shape_is_accepted(provider: ProviderEmulator, tmp_path: Path) -> None:
    with _adapter(provider, "sms") as adapter:
        result = adapter.send(make_message(7, "sms", recipient=make_recipient(phone="+1 (555) 010-0001")))
    [accepted] = provider.messages("sms")
    assert accepted["to"] == "+15550100001"
    assert accepted["body"] == "Your cart is waiting: https://shop.example/cart"
    assert accepted["from"] == "+15005550006"
    assert accepted["key"] == "baton-7" and accepted["message_id"] == "7"
    assert result == SendResult(7, accepted["provider_id"]) and result.provider_id.startswith("SM")
    stored = [json.loads(line) for line in (tmp_path / "provider.jsonl").read_text().splitlines()]
    assert [s["key"] for s in stored] == ["baton-7"]


def test_fcm_shape_is_accepted(provider: ProviderEmulator) -> None:
    with _adapter(provider, "push") as adapter:
        result = adapter.send(make_message(8, "push"))
    [accepted] = provider.messages("push")
    assert accepted["to"] == "device-token-1"
    assert (accepted["title"], accepted["body"]) == ("Still thinking?", "Your cart is waiting")
    assert accepted["data"] == {
        "baton_message_id": "8",
        "campaign_id": "abandoned_cart",
        "url": "https://shop.example/cart",
    }
    assert result == SendResult(8, accepted["provider_id"])
    assert result.provider_id is not None and result.provider_id.startswith("projects/baton-demo/messages/")


@pytest.mark.parametrize("channel", CHANNELS)
def test_idempotency_key_makes_a_resend_a_duplicate_not_a_second_message(
    provider: ProviderEmulator, channel: str
) -> None:
    with _adapter(provider, channel) as adapter:
        first = adapter.send(make_message(9, channel))
        again = adapter.send(make_message(9, channel))
    assert first == again
    assert len(provider.messages(channel)) == 1
    assert provider.duplicates == 1 and provider.count(channel, "baton-9" if channel == "sms" else "9") == 2


@pytest.mark.parametrize("channel", CHANNELS)
def test_one_connection_for_a_batch(provider: ProviderEmulator, channel: str) -> None:
    with _adapter(provider, channel) as adapter:
        results = outcomes(adapter, [make_message(i, channel) for i in range(1, 6)])
    assert all(isinstance(r, SendResult) for r in results)
    assert provider.connections == 1 and provider.requests == 5


@pytest.mark.parametrize("channel", CHANNELS)
def test_429_is_transient_with_retry_after(provider: ProviderEmulator, channel: str) -> None:
    provider.fail_rate_transient, provider.transient_status, provider.retry_after = 1.0, 429, 3
    with _adapter(provider, channel) as adapter, pytest.raises(ChannelTransientError, match="429") as info:
        adapter.send(make_message(1, channel))
    assert info.value.retry_after == 3.0 and retry_after_of(info.value) == 3.0
    assert not info.value.maybe_sent
    assert provider.messages(channel) == []


@pytest.mark.parametrize("channel", CHANNELS)
def test_500_is_transient(provider: ProviderEmulator, channel: str) -> None:
    provider.fail_rate_transient, provider.transient_status = 1.0, 500
    with _adapter(provider, channel) as adapter, pytest.raises(ChannelTransientError, match="500") as info:
        adapter.send(make_message(1, channel))
    assert info.value.retry_after is None


@pytest.mark.parametrize("channel", CHANNELS)
def test_a_hanging_provider_times_out_as_transient(provider: ProviderEmulator, channel: str) -> None:
    provider.hang_seconds = 5.0  # released at once when the fixture stops the emulator
    with _adapter(provider, channel, timeout=0.2) as adapter:
        with pytest.raises(ChannelTransientError, match="timed out") as info:
            adapter.send(make_message(1, channel))
        assert info.value.maybe_sent  # the provider may still act on it: hence the idempotency key
        provider.hang_seconds = 0.0
        assert isinstance(adapter.send(make_message(2, channel)), SendResult)  # a fresh connection


@pytest.mark.parametrize("channel", CHANNELS)
def test_400_is_terminal_with_the_providers_reason(provider: ProviderEmulator, channel: str) -> None:
    provider.always_terminal = True
    with (
        _adapter(provider, channel) as adapter,
        pytest.raises(TerminalDeliveryError, match="always_terminal") as info,
    ):
        adapter.send(make_message(1, channel))
    assert "HTTP 400" in str(info.value) and not isinstance(info.value, RecipientRejectedError)


def test_twilio_error_code_in_the_reason_and_rejected_number(provider: ProviderEmulator) -> None:
    provider.reject.add("+15550100002")
    with _adapter(provider, "sms") as adapter, pytest.raises(RecipientRejectedError) as info:
        adapter.send(make_message(1, "sms", recipient=make_recipient(phone="+15550100002")))
    assert "Twilio error 21610" in str(info.value) and "unsubscribed" in str(info.value)
    assert info.value.address == "+15550100002"


def test_unregistered_push_token_is_rejected(provider: ProviderEmulator) -> None:
    provider.reject.add("stale-token")
    with (
        _adapter(provider, "push") as adapter,
        pytest.raises(RecipientRejectedError, match="UNREGISTERED") as info,
    ):
        adapter.send(make_message(1, "push", recipient=make_recipient(push_token="stale-token")))
    assert info.value.address == "stale-token"


@pytest.mark.parametrize(
    ("channel", "field", "value"),
    [
        ("sms", "phone", "555-0100"),
        ("sms", "phone", None),
        ("push", "push_token", ""),
        ("push", "push_token", "a b"),
    ],
)
def test_invalid_address_is_terminal_without_a_request(
    provider: ProviderEmulator, channel: str, field: str, value: str | None
) -> None:
    with _adapter(provider, channel) as adapter, pytest.raises(RecipientRejectedError):
        adapter.send(make_message(1, channel, recipient=make_recipient(**{field: value})))
    assert provider.requests == 0


@pytest.mark.parametrize("channel", CHANNELS)
def test_bad_credentials_are_transient_and_say_what_to_check(
    provider: ProviderEmulator, channel: str
) -> None:
    conn = provider.sms_connection() if channel == "sms" else provider.push_connection()
    wrong = ConnectionInfo(
        conn.conn_id, conn.conn_type, conn.host, None, conn.login, "wrong", None, conn.extra
    )
    with pytest.raises(ChannelTransientError, match="authentication failed.*credentials of connection"):
        adapter_for(channel, wrong).send(make_message(1, channel))
    assert provider.messages(channel) == []


@pytest.mark.parametrize("channel", CHANNELS)
def test_provider_down_is_transient_not_sent(channel: str) -> None:
    conn = ConnectionInfo(
        "c",
        "http",
        f"http://127.0.0.1:{free_port()}",
        None,
        "ACx",
        "tok",
        None,
        {"from": "+15005550006", "timeout": 1} if channel == "sms" else {"project": "p", "timeout": 1},
    )
    with pytest.raises(ChannelTransientError, match="cannot connect") as info:
        adapter_for(channel, conn).send(make_message(1, channel))
    assert not info.value.maybe_sent


def test_a_failing_provider_stops_the_batch_early(provider: ProviderEmulator) -> None:
    provider.fail_rate_transient, provider.transient_status = 1.0, 500
    with _adapter(provider, "sms") as adapter:
        results = outcomes(adapter, [make_message(i, "sms") for i in range(1, 7)])
    assert all(isinstance(r, ChannelTransientError) for r in results)
    assert [r.attempted for r in results if isinstance(r, ChannelTransientError)] == [True] * 3 + [False] * 3
    assert provider.requests == 3


def test_rate_limiting_stops_the_batch_at_once_and_passes_retry_after(provider: ProviderEmulator) -> None:
    provider.fail_rate_transient, provider.transient_status, provider.retry_after = 1.0, 429, 2
    with _adapter(provider, "push") as adapter:
        results = outcomes(adapter, [make_message(i, "push") for i in range(1, 5)])
    assert provider.requests == 1
    assert [retry_after_of(r) for r in results if isinstance(r, ChannelTransientError)] == [2.0] * 4
    assert [r.attempted for r in results if isinstance(r, ChannelTransientError)] == [
        True,
        False,
        False,
        False,
    ]


def test_flaky_provider_every_message_once_after_retries(provider: ProviderEmulator) -> None:
    provider.fail_rate_transient = 0.3
    pending = [make_message(i, "sms") for i in range(1, 41)]
    with _adapter(provider, "sms") as adapter:
        for _ in range(50):
            if not pending:
                break
            results = outcomes(adapter, pending)
            pending = [
                m for m, r in zip(pending, results, strict=True) if isinstance(r, ChannelTransientError)
            ]
    assert pending == []
    assert sorted(int(m["message_id"]) for m in provider.messages("sms")) == list(range(1, 41))
    assert provider.duplicates == 0


def test_connection_settings_errors() -> None:
    with pytest.raises(ConfigError, match="login"):
        adapter_for("sms", ConnectionInfo("baton_sms", password="t", extra={"from": "+15005550006"}))
    with pytest.raises(ConfigError, match="'from'"):
        adapter_for("sms", ConnectionInfo("baton_sms", login="AC1", password="t"))
    with pytest.raises(ConfigError, match="project"):
        adapter_for("push", ConnectionInfo("baton_push", password="t"))
    with pytest.raises(ConfigError, match="no credentials for FCM: set extra 'service_account'"):
        adapter_for("push", ConnectionInfo("baton_push", extra={"project": "p"}))
    with pytest.raises(ConfigError, match="not an http"):
        adapter_for(
            "push", ConnectionInfo("baton_push", host="ftp://x", password="t", extra={"project": "p"})
        )
