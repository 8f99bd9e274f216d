"""OAuth 2.0 access tokens for a Google service account (what FCM HTTP v1 needs).

The two-legged flow of RFC 7523 as Google runs it: a JWT signed with the service account's
RSA key (``iss`` = its ``client_email``, ``aud`` = its ``token_uri``, ``scope``, ``iat``,
``exp`` an hour later) is exchanged at ``token_uri``
(``grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer``) for an access token that
expires after ``expires_in`` seconds.  :class:`ServiceAccountToken` caches that token and
fetches a new one five minutes before it expires, or at once when the provider refused it
(:meth:`ServiceAccountToken.invalidate`).

The key is the JSON key file Google gives for a service account, held by an Airflow
Connection (its extra ``service_account``), never by a file in the repository.
"""

from __future__ import annotations

import hashlib
import json
import ssl
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any

from baton.delivery.base import ChannelTransientError
from baton.errors import ConfigError

GRANT_TYPE = "urn:ietf:params:oauth:grant-type:jwt-bearer"
FCM_SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
DEFAULT_TOKEN_URI = "https://oauth2.googleapis.com/token"
#: fetch a new token this long before the current one expires
REFRESH_MARGIN = 300.0
_REQUIRED = ("client_email", "private_key")


def service_account_info(value: Any, conn_id: str) -> dict[str, Any]:
    """The service account key of connection ``conn_id`` (a JSON object, or its text)."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError as exc:
            raise ConfigError(
                f"connection {conn_id!r}: extra 'service_account' is not JSON ({exc}): paste the whole key"
                " file Google gives for the service account"
            ) from None
    if not isinstance(value, dict):
        raise ConfigError(
            f"connection {conn_id!r}: extra 'service_account' must be the service account's JSON key"
        )
    missing = [k for k in _REQUIRED if not value.get(k)]
    if missing:
        raise ConfigError(
            f"connection {conn_id!r}: the service account key has no {', '.join(missing)}: use the JSON key"
            " file Google gives for the service account"
        )
    return value


class ServiceAccountToken:
    """A cached access token of a service account for ``scope``; thread-safe."""

    def __init__(
        self,
        info: dict[str, Any],
        *,
        conn_id: str,
        scope: str = FCM_SCOPE,
        timeout: float = 10.0,
        ca_file: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        import jwt  # PyJWT (with cryptography): only needed in this mode

        self._jwt = jwt
        self.conn_id = conn_id
        self.client_email = str(info["client_email"])
        self.token_uri = str(info.get("token_uri") or DEFAULT_TOKEN_URI)
        self.key_id = info.get("private_key_id")
        self.scope = scope
        self.timeout = timeout
        self.ca_file = ca_file
        self.clock = clock
        from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
        from cryptography.hazmat.primitives.serialization import load_pem_private_key

        try:
            key = load_pem_private_key(str(info["private_key"]).encode(), password=None)
        except (ValueError, TypeError) as exc:
            raise ConfigError(
                f"connection {conn_id!r}: the service account's private_key is not a PEM key ({exc})"
            ) from None
        if not isinstance(key, RSAPrivateKey):
            raise ConfigError(f"connection {conn_id!r}: the service account's private_key is not an RSA key")
        self._key: RSAPrivateKey = key
        self._token: str | None = None
        self._expires_at = 0.0
        self._lock = threading.Lock()
        self.fetched = 0  # how many tokens were fetched (observability, tests)

    def get(self) -> str:
        """A valid access token (fetching a new one when the cached one is about to expire)."""
        with self._lock:
            if self._token is None or self.clock() >= self._expires_at - REFRESH_MARGIN:
                self._token, lifetime = self._fetch()
                self._expires_at = self.clock() + lifetime
            return self._token

    def invalidate(self) -> None:
        """Forget the cached token (the provider refused it): the next :meth:`get` fetches one."""
        with self._lock:
            self._token = None

    def assertion(self) -> str:
        """The signed JWT exchanged for a token."""
        now = int(time.time())  # the endpoint checks these against its own clock
        claims = {
            "iss": self.client_email,
            "scope": self.scope,
            "aud": self.token_uri,
            "iat": now,
            "exp": now + 3600,
        }
        headers = {"kid": str(self.key_id)} if self.key_id else None
        return str(self._jwt.encode(claims, self._key, algorithm="RS256", headers=headers))

    def _fetch(self) -> tuple[str, float]:
        body = urllib.parse.urlencode({"grant_type": GRANT_TYPE, "assertion": self.assertion()}).encode()
        request = urllib.request.Request(
            self.token_uri,
            data=body,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            method="POST",
        )
        where = f"OAuth token endpoint {self.token_uri} (connection {self.conn_id!r})"
        try:
            context = (
                ssl.create_default_context(cafile=self.ca_file)
                if self.token_uri.startswith("https")
                else None
            )
            with urllib.request.urlopen(request, timeout=self.timeout, context=context) as resp:  # noqa: S310
                data = json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            try:
                error = json.loads(exc.read() or b"null")
            except ValueError:
                error = None
            what = (
                f"{error.get('error')}: {error.get('error_description', '')}".rstrip(": ")
                if isinstance(error, dict)
                else exc.reason
            )
            # transient: the messages wait (and are retried) while someone fixes the key
            raise ChannelTransientError(
                f"{where}: HTTP {exc.code} {what}: check the service account key of the connection"
                " (and that the machine's clock is right)"
            ) from None
        except (OSError, ValueError) as exc:
            raise ChannelTransientError(f"{where}: {type(exc).__name__}: {exc}") from None
        token = data.get("access_token") if isinstance(data, dict) else None
        if not isinstance(token, str) or not token:
            raise ChannelTransientError(f"{where}: the answer has no access_token")
        self.fetched += 1
        return token, float(data.get("expires_in") or 3600)


_SHARED: dict[tuple[str, str, str, str], ServiceAccountToken] = {}
_SHARED_LOCK = threading.Lock()


def shared_token(
    info: dict[str, Any],
    *,
    conn_id: str,
    scope: str = FCM_SCOPE,
    timeout: float = 10.0,
    ca_file: str | None = None,
) -> ServiceAccountToken:
    """The process's token of this service account and scope: the delivery batches of a worker
    share one token (a fetch an hour), not one each."""
    key = (
        str(info["client_email"]),
        str(info.get("token_uri") or DEFAULT_TOKEN_URI),
        scope,
        hashlib.sha256(str(info["private_key"]).encode()).hexdigest(),
    )
    with _SHARED_LOCK:
        token = _SHARED.get(key)
        if token is None:
            token = _SHARED[key] = ServiceAccountToken(
                info, conn_id=conn_id, scope=scope, timeout=timeout, ca_file=ca_file
            )
        return token


__all__ = ["FCM_SCOPE", "ServiceAccountToken", "service_account_info", "shared_token"]
