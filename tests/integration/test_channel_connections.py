"""Channel connections as Airflow gives them (``AIRFLOW_CONN_<ID>``, JSON form) through
``connection_info`` and ``adapter_for``: every adapter accepts only the extras it reads, and a
misspelt or foreign key is a ConfigError naming the connection and the key — never a silent
plaintext SMTP session.  (No database: Airflow reads these connections from the environment.)"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from baton.delivery.channels import FakeAdapter, adapter_for
from baton.errors import ConfigError

pytestmark = pytest.mark.integration

BASE: dict[str, dict[str, Any]] = {
    "email": {
        "conn_type": "smtp",
        "host": "127.0.0.1",
        "port": 2525,
        "extra": {"from": "Shop <shop@example.com>"},
    },
    "sms": {
        "conn_type": "http",
        "host": "http://127.0.0.1:8025",
        "login": "AC123",
        "password": "token",
        "extra": {"from": "+15005550006"},
    },
    "push": {
        "conn_type": "http",
        "host": "http://127.0.0.1:8025",
        "password": "t",
        "extra": {"project": "p"},
    },
    "audience": {"conn_type": "generic", "extra": {"base_path": "/tmp/baton-exports"}},
    "direct_mail": {"conn_type": "generic", "extra": {"base_path": "/tmp/baton-exports"}},
}


def _adapter(monkeypatch: pytest.MonkeyPatch, channel: str, *, extra: Any = None, **fields: Any) -> Any:
    from baton.airflow.hooks.channels import connection_info

    conn_id = f"baton_{channel}"
    spec = {**BASE[channel], **fields}
    if extra is not None:
        spec["extra"] = extra
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(spec))
    return adapter_for(channel, connection_info(conn_id))


@pytest.mark.parametrize("channel", sorted(BASE))
def test_the_documented_extras_are_accepted(monkeypatch: pytest.MonkeyPatch, channel: str) -> None:
    adapter = _adapter(monkeypatch, channel)
    assert adapter.channel == channel and adapter.conn.conn_id == f"baton_{channel}"


@pytest.mark.parametrize(
    ("channel", "key", "hint"),
    [
        ("email", "starttsl", "did you mean 'starttls'?"),
        ("email", "form", "did you mean 'from'?"),
        ("email", "time_out", "did you mean 'timeout'?"),
        ("email", "disable_tls", "set 'starttls': true"),
        ("email", "from_email", "Baton reads 'from'"),
        ("sms", "messaging_service", "did you mean 'messaging_service_sid'?"),
        ("sms", "auth_token", "goes in the connection's password"),
        ("push", "projcet", "did you mean 'project'?"),
        ("audience", "basepath", "did you mean 'base_path'?"),
        ("direct_mail", "bucket", ""),
    ],
)
def test_an_unknown_extra_is_a_config_error_naming_connection_and_key(
    monkeypatch: pytest.MonkeyPatch, channel: str, key: str, hint: str
) -> None:
    extra = {**BASE[channel]["extra"], key: True}
    with pytest.raises(ConfigError) as info:
        _adapter(monkeypatch, channel, extra=extra)
    message = str(info.value)
    assert f"connection 'baton_{channel}'" in message and f"unknown extra {key!r}" in message
    assert hint in message if hint else "did you mean" not in message
    assert "its extras are:" in message


def test_starttls_misspelt_never_means_a_plaintext_session(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="'starttsl' \\(did you mean 'starttls'\\?\\)"):
        _adapter(monkeypatch, "email", extra={"from": "shop@example.com", "starttsl": True})
    adapter = _adapter(monkeypatch, "email", extra={"from": "shop@example.com", "starttls": True})
    assert adapter.starttls


def test_the_fake_switch_and_its_knobs_are_allowed_where_they_apply(monkeypatch: pytest.MonkeyPatch) -> None:
    extra = {"from": "shop@example.com", "fake": True, "transient_rate": 0.1, "seed": 3}
    fake = _adapter(monkeypatch, "email", extra=extra)
    assert isinstance(fake, FakeAdapter) and fake.transient_rate == 0.1
    assert fake.needs_unsubscribe_link and fake.suppression_address(" A@B.example ") == "a@b.example"
    fake_type = _adapter(
        monkeypatch, "sms", conn_type="baton_fake", extra={"latency_ms": 1, "record": "/tmp/x"}
    )
    assert isinstance(fake_type, FakeAdapter)
    assert not _adapter(monkeypatch, "email", extra={"from": "shop@example.com", "fake": False}).conn.extra[
        "fake"
    ]
    with pytest.raises(ConfigError, match="unknown extra 'transient_rate' for the email channel"):
        _adapter(monkeypatch, "email", extra={"from": "shop@example.com", "transient_rate": 0.1})
    with pytest.raises(ConfigError, match="unknown extra 'latncy_ms' \\(did you mean 'latency_ms'\\?\\)"):
        _adapter(monkeypatch, "sms", conn_type="baton_fake", extra={"latncy_ms": 1})


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("{not json", "'baton_email': its extra is not valid JSON"),
        ('["starttls"]', "'baton_email': its extra must be a JSON object, not list"),
    ],
)
def test_a_malformed_extra_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch, extra: str, message: str
) -> None:
    from baton.airflow.hooks.channels import connection_info

    monkeypatch.setenv("AIRFLOW_CONN_BATON_EMAIL", json.dumps({**BASE["email"], "extra": extra}))
    with pytest.raises(ConfigError, match=message):
        connection_info("baton_email")


def test_file_channels_without_an_export_folder_fail_when_built(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError, match="'baton_audience': no base_path for the audience files"):
        _adapter(monkeypatch, "audience", extra={})
    assert _adapter(monkeypatch, "audience", extra={"base_path": f"file://{tmp_path}"}).root() == tmp_path
