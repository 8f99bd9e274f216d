"""Push with a service account: the adapter signs a JWT, exchanges it for an OAuth access
token at the key's token endpoint (the emulator's, which verifies the RS256 signature,
issuer, audience and scope as Google's does), caches it, and fetches a new one before it
expires or when FCM answers 401."""

from __future__ import annotations

import json

import pytest

import delivery_servers
from baton.delivery import ChannelTransientError, adapter_for
from baton.delivery.oauth import REFRESH_MARGIN, ServiceAccountToken
from baton.errors import ConfigError
from baton_dev.sinks import ProviderEmulator
from delivery_servers import make_message

pytestmark = pytest.mark.integration
provider = delivery_servers.provider  # fixture


def test_one_token_serves_many_batches(provider: ProviderEmulator) -> None:
    conn = provider.oauth_connection()
    for batch in range(3):  # a worker opens an adapter per batch
        with adapter_for("push", conn) as adapter:
            for i in range(2):
                adapter.send(make_message(10 * batch + i, "push"))
    assert len(provider.messages("push")) == 6
    assert provider.token_requests == 1, "the batches of a process share the token"


def test_the_token_is_renewed_before_it_expires(provider: ProviderEmulator) -> None:
    now = [1_000_000.0]
    token = ServiceAccountToken(provider.service_account(), conn_id="c", clock=lambda: now[0])
    first = token.get()
    now[0] += 3600 - REFRESH_MARGIN - 1
    assert token.get() == first and token.fetched == 1
    now[0] += 2  # within the margin before expiry
    second = token.get()
    assert second != first and token.fetched == 2 and provider.token_requests == 2


def test_a_revoked_token_is_replaced_and_the_message_sent_once(provider: ProviderEmulator) -> None:
    with adapter_for("push", provider.oauth_connection()) as adapter:
        adapter.send(make_message(1, "push"))
        provider.revoke_tokens()  # e.g. the key was rotated, or the token expired early
        adapter.send(make_message(2, "push"))
    assert [m["message_id"] for m in provider.messages("push")] == ["1", "2"]
    assert provider.token_requests == 2
    assert provider.requests == 3, "the refused request, then the same message with a new token"


def test_a_key_the_endpoint_does_not_trust_is_transient_and_says_what_to_check(
    provider: ProviderEmulator,
) -> None:
    other = ProviderEmulator()  # another account's key, never served
    account = {
        **other.service_account(),
        "token_uri": provider.service_account()["token_uri"],
        "client_email": provider.service_account()["client_email"],
    }
    conn = provider.push_connection(service_account=json.dumps(account))  # as text, the way a secret holds it
    with adapter_for("push", conn) as adapter, pytest.raises(ChannelTransientError) as err:
        adapter.send(make_message(1, "push"))
    assert "HTTP 400 invalid_grant: Invalid JWT Signature." in str(err.value)
    assert "check the service account key of the connection" in str(err.value)
    assert provider.messages("push") == [] and provider.requests == 0


def test_a_token_endpoint_that_is_down_is_transient(provider: ProviderEmulator) -> None:
    account = {
        **provider.service_account(),
        "token_uri": f"http://127.0.0.1:{delivery_servers.free_port()}/token",
    }
    with adapter_for("push", provider.push_connection(service_account=account)) as adapter:
        with pytest.raises(ChannelTransientError, match="OAuth token endpoint"):
            adapter.send(make_message(1, "push"))
    assert provider.messages("push") == []


def test_service_account_settings_errors(provider: ProviderEmulator) -> None:
    account = provider.service_account()
    with pytest.raises(ConfigError, match="'baton_push': extra 'service_account' is not JSON"):
        adapter_for("push", provider.oauth_connection(service_account="{not json"))
    with pytest.raises(ConfigError, match="the service account key has no private_key"):
        adapter_for("push", provider.oauth_connection(service_account={**account, "private_key": ""}))
    with pytest.raises(ConfigError, match="private_key is not a PEM key"):
        adapter_for("push", provider.oauth_connection(service_account={**account, "private_key": "nope"}))
    # the project comes from the key unless the connection names one
    adapter = adapter_for("push", provider.oauth_connection())
    assert adapter.project == provider.fcm_project  # type: ignore[attr-defined]
