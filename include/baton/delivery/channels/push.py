"""Push notifications over HTTP in the request shape of FCM HTTP v1.

``POST {base_url}/v1/projects/{project}/messages:send`` with ``Authorization: Bearer
<token>`` and the JSON body::

    {"message": {"token": "<device token>",
                 "notification": {"title": "...", "body": "..."},
                 "data": {"baton_message_id": "42", "campaign_id": "...", "url": "..."}}}

The provider id is the ``name`` of the answer (``projects/p/messages/...``).

Connection: extra ``service_account`` = the service account's JSON key (as Google gives
it; the adapter signs a JWT with it, exchanges it for an OAuth access token at the key's
``token_uri``, caches the token and fetches a new one before it expires or when FCM answers
401 — see :mod:`baton.delivery.oauth`), or ``password`` (or extra ``token``) = a bearer token
obtained elsewhere (sent as given); extra ``project`` (or ``project_id``; default the
service account's ``project_id``), ``host`` = base URL (default
``https://fcm.googleapis.com``), extra ``timeout`` (seconds, default 10).

Errors: 429 (``Retry-After``), 5xx, timeouts and connection errors are transient; 404
``UNREGISTERED`` and 403 ``SENDER_ID_MISMATCH`` reject the token (a suppression
candidate); 400 ``INVALID_ARGUMENT`` and other 4xx are terminal.  FCM has no
idempotency key (``idempotent_by_key`` is False); the app can drop a duplicate by
``data.baton_message_id``.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar
from urllib.parse import quote

from baton.delivery.base import (
    ConnectionInfo,
    HttpChannelAdapter,
    HttpResponse,
    OutboundMessage,
    RecipientRejectedError,
    SendResult,
)
from baton.delivery.oauth import ServiceAccountToken, service_account_info, shared_token
from baton.errors import ConfigError, TerminalDeliveryError

_REJECTED = frozenset({"UNREGISTERED", "SENDER_ID_MISMATCH"})


class PushAdapter(HttpChannelAdapter):
    """FCM-v1-shaped push notifications."""

    channel: ClassVar[str] = "push"
    idempotent_by_key: bool = False
    address_field: str | None = "push_token"
    default_base_url: ClassVar[str] = "https://fcm.googleapis.com"
    allowed_extras: ClassVar[frozenset[str]] = HttpChannelAdapter.allowed_extras | {
        "service_account",
        "token",
        "project",
        "project_id",
    }

    def __init__(self, conn: ConnectionInfo, *, base_path: Any | None = None) -> None:
        super().__init__(conn, base_path=base_path)
        account = conn.extra.get("service_account")
        self.oauth: ServiceAccountToken | None = None
        if account:
            info = service_account_info(account, conn.conn_id)
            self.oauth = shared_token(info, conn_id=conn.conn_id, timeout=self.timeout, ca_file=self.ca_file)
            self.token = ""
        else:
            info = {}
            token = conn.password or conn.extra_str("token")
            if not token:
                raise ConfigError(
                    f"connection {conn.conn_id!r} has no credentials for FCM: set extra 'service_account' to the"
                    " service account's JSON key, or its password (or extra 'token') to an OAuth access token"
                )
            self.token = token
        project = conn.extra_str("project") or conn.extra_str("project_id") or info.get("project_id")
        if not project or not isinstance(project, str):
            raise ConfigError(f"connection {conn.conn_id!r}: set extra 'project' to the Firebase project id")
        self.project = project
        self.path = f"/v1/projects/{quote(project, safe='')}/messages:send"

    def default_headers(self) -> dict[str, str]:
        """A static bearer token; with a service account the token is added per request instead."""
        return {} if self.oauth is not None else {"Authorization": f"Bearer {self.token}"}

    def _authorization(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.oauth.get()}"} if self.oauth is not None else {}

    def payload(self, msg: OutboundMessage) -> dict[str, Any]:
        """The JSON body of *msg*."""
        data = {"baton_message_id": str(msg.message_id), "campaign_id": msg.campaign_id}
        url = msg.content.get("url")
        if url:
            data["url"] = url
        return {
            "message": {
                "token": (msg.recipient.push_token or "").strip(),
                "notification": {"title": msg.content.get("title", ""), "body": msg.content.get("body", "")},
                "data": data,
            }
        }

    def send(self, msg: OutboundMessage) -> SendResult:
        """POST one notification; the provider id is FCM's message ``name``."""
        token = (msg.recipient.push_token or "").strip()
        if not token or any(c.isspace() for c in token):
            raise RecipientRejectedError(
                f"invalid push token {msg.recipient.push_token!r}", address=token or None
            )
        if not msg.content.get("title") or not msg.content.get("body"):
            raise TerminalDeliveryError(f"message {msg.message_id}: push content needs a title and a body")
        body = json.dumps(self.payload(msg), separators=(",", ":")).encode("utf-8")
        headers = {"Content-Type": "application/json; charset=utf-8"}
        resp = self._post(self.path, body, {**headers, **self._authorization()})
        if resp.status_code == 401 and self.oauth is not None:
            # the token expired early or was revoked: FCM did nothing with the request, so it
            # is sent once more with a new token
            self.oauth.invalidate()
            resp = self._post(self.path, body, {**headers, **self._authorization()})
        if resp.status_code == 200:
            try:
                name = resp.json().get("name")
            except ValueError:
                name = None
            return SendResult(message_id=msg.message_id, provider_id=str(name) if name else None)
        status, error_code, detail = _fcm_error(resp)
        if error_code in _REJECTED:
            raise RecipientRejectedError(f"HTTP {resp.status_code} {error_code}: {detail}", address=token)
        transient = self._transient_status(resp, f"{status or ''} {detail}".strip())
        if transient is not None:
            raise transient
        raise TerminalDeliveryError(
            f"HTTP {resp.status_code} {error_code or status or ''}: {detail}".replace("  ", " ")
        )


def _fcm_error(resp: HttpResponse) -> tuple[str | None, str | None, str]:
    """(status, FCM errorCode, message) of an FCM error answer."""
    try:
        data = resp.json()
    except ValueError:
        data = None
    error = data.get("error") if isinstance(data, dict) else None
    if not isinstance(error, dict):
        return None, None, (resp.text[:200].strip() or resp.reason_phrase)
    code: str | None = None
    for detail in error.get("details") or []:
        if isinstance(detail, dict) and detail.get("errorCode"):
            code = str(detail["errorCode"])
    status = error.get("status")
    return (str(status) if status else None), code, str(error.get("message") or resp.reason_phrase)


__all__ = ["PushAdapter"]
