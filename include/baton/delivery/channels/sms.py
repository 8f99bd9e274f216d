"""SMS over HTTP in the request shape of Twilio's Messages API.

``POST {base_url}/2010-04-01/Accounts/{AccountSid}/Messages.json``, form-encoded
``To``, ``From`` (or ``MessagingServiceSid``) and ``Body``, HTTP basic auth with the
account SID and auth token, and the header ``I-Twilio-Idempotency-Token:
baton-{message_id}`` so that a retried request is deduplicated by the provider.
The provider id is the ``sid`` of the JSON answer.

Connection: ``login`` = account SID, ``password`` = auth token, ``host`` = base URL
(default ``https://api.twilio.com``); extra ``from`` (an E.164 number or alphanumeric
sender id) or ``messaging_service_sid``, optional ``status_callback`` (a URL) and
``timeout`` (seconds, default 10).

Errors: a phone number that is not E.164 after normalisation is terminal without a
request; 429 (with ``Retry-After``), 5xx, timeouts and connection errors are
transient; other 4xx are terminal with Twilio's ``message`` and ``code`` in the reason
(21211 invalid number, 21610 unsubscribed, 21614 not a mobile: the recipient is
rejected).
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any, ClassVar
from urllib.parse import quote, urlencode

from baton.delivery.base import (
    ConnectionInfo,
    HttpChannelAdapter,
    HttpResponse,
    OutboundMessage,
    RecipientRejectedError,
    SendResult,
    normalize_phone,
)
from baton.errors import ConfigError, TerminalDeliveryError

_REJECTED_CODES = frozenset({21211, 21610, 21614})


def idempotency_token(message_id: int) -> str:
    """The ``I-Twilio-Idempotency-Token`` of a message."""
    return f"baton-{message_id}"


class SmsAdapter(HttpChannelAdapter):
    """Twilio-shaped SMS; deduplicated by the provider on ``baton-{message_id}``."""

    channel: ClassVar[str] = "sms"
    idempotent_by_key: bool = True
    address_field: str | None = "phone"
    default_base_url: ClassVar[str] = "https://api.twilio.com"
    allowed_extras: ClassVar[frozenset[str]] = HttpChannelAdapter.allowed_extras | {
        "from",
        "messaging_service_sid",
        "status_callback",
    }
    extra_hints: ClassVar[Mapping[str, str]] = {
        "account_sid": "the account SID goes in the connection's login",
        "auth_token": "the auth token goes in the connection's password",
    }

    def __init__(self, conn: ConnectionInfo, *, base_path: Any | None = None) -> None:
        super().__init__(conn, base_path=base_path)
        self.account_sid = conn.require("login", "the Twilio account SID (AC...)")
        self.auth_token = conn.require("password", "the Twilio auth token")
        self.sender = conn.extra_str("from")
        self.messaging_service_sid = conn.extra_str("messaging_service_sid")
        if not self.sender and not self.messaging_service_sid:
            raise ConfigError(
                f"connection {conn.conn_id!r}: set extra 'from' (the sending number, E.164) "
                "or 'messaging_service_sid'"
            )
        self.status_callback = conn.extra_str("status_callback")
        self.path = f"/2010-04-01/Accounts/{quote(self.account_sid, safe='')}/Messages.json"

    def default_headers(self) -> dict[str, str]:
        """HTTP basic authorization with the account SID and auth token."""
        basic = base64.b64encode(f"{self.account_sid}:{self.auth_token}".encode()).decode("ascii")
        return {"Authorization": f"Basic {basic}"}

    def send(self, msg: OutboundMessage) -> SendResult:
        """POST one message; the provider id is Twilio's ``sid``."""
        to = normalize_phone(msg.recipient.phone)
        if to is None:
            raise RecipientRejectedError(
                f"phone number {msg.recipient.phone!r} is not a valid E.164 number",
                address=msg.recipient.phone,
            )
        body = msg.content.get("text", "")
        if not body.strip():
            raise TerminalDeliveryError(f"message {msg.message_id}: the SMS text is empty")
        form = {"To": to, "Body": body}
        if self.messaging_service_sid:
            form["MessagingServiceSid"] = self.messaging_service_sid
        if self.sender:
            form["From"] = self.sender
        if self.status_callback:
            form["StatusCallback"] = self.status_callback
        resp = self._post(
            self.path,
            urlencode(form).encode("utf-8"),
            {
                "Content-Type": "application/x-www-form-urlencoded",
                "Accept": "application/json",
                "I-Twilio-Idempotency-Token": idempotency_token(msg.message_id),
            },
        )
        if resp.status_code in (200, 201):
            try:
                sid = resp.json().get("sid")
            except ValueError:
                sid = None
            return SendResult(message_id=msg.message_id, provider_id=str(sid) if sid else None)
        code, detail = _twilio_error(resp)
        transient = self._transient_status(resp, detail)
        if transient is not None:
            raise transient
        reason = (
            f"HTTP {resp.status_code} Twilio error {code}: {detail}"
            if code
            else f"HTTP {resp.status_code}: {detail}"
        )
        if code in _REJECTED_CODES:
            raise RecipientRejectedError(reason, address=to)
        raise TerminalDeliveryError(reason)


def _twilio_error(resp: HttpResponse) -> tuple[int | None, str]:
    try:
        data = resp.json()
    except ValueError:
        data = None
    if isinstance(data, dict):
        code = data.get("code")
        message = data.get("message") or data.get("detail") or resp.reason_phrase
        return (code if isinstance(code, int) else None), str(message)
    return None, (resp.text[:200].strip() or resp.reason_phrase)


__all__ = ["SmsAdapter", "idempotency_token"]
