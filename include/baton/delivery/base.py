"""The channel-adapter contract: what a message looks like on its way out, and how a channel sends it.

Every channel (``channels/<name>.py``) is a :class:`ChannelAdapter` subclass that declares
what it is — ``channel``, ``idempotent_by_key``, ``writes_files``, ``needs_export_path``,
``needs_unsubscribe_link``, ``address_field``, the connection extras it reads — and is
built from a :class:`ConnectionInfo` (what an Airflow Connection carries; ``baton.airflow``
maps one to the other, so secrets only ever come from Airflow Connections).

An adapter sends one :class:`OutboundMessage` (already rendered) and answers a
:class:`SendResult`, or raises one of the two delivery errors of ``baton.errors``:

* :class:`~baton.errors.TransientDeliveryError` — retry with backoff: timeouts,
  connection errors, SMTP 4xx, HTTP 429 and 5xx.  Adapters raise
  :class:`ChannelTransientError`, which adds ``retry_after`` (the provider's hint, in
  seconds), ``attempted`` (False when the message never left: it was skipped because
  the channel was already failing in this batch), ``maybe_sent`` (True when the
  provider may have accepted it: a timeout after the request was written) and
  ``connection_failed`` (the connection failed, not the message: the batch stops).
* :class:`~baton.errors.TerminalDeliveryError` — record the reason, never retry:
  invalid addresses (detected without contacting the provider), SMTP 5xx, HTTP 4xx.
  :class:`RecipientRejectedError` marks the ones that mean "this address is dead"
  (SMTP 550, an unregistered push token, an invalid phone number): candidates for the
  channel's suppression list.

Adapters hold a connection across a batch: ``open()``/``close()`` or ``with adapter:``.
:meth:`ChannelAdapter.send_batch` is the one way the outbox sends, for every channel: a
generator of ``(message, outcome)`` in the order the messages complete, which never
raises a :class:`~baton.errors.DeliveryError`.
"""

from __future__ import annotations

import csv
import difflib
import hashlib
import http.client
import io
import json
import logging
import os
import re
import select
import ssl
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from types import TracebackType
from typing import Any, ClassVar, Self, TypeAlias
from urllib.parse import urlsplit

from baton.errors import ConfigError, DeliveryError, TerminalDeliveryError, TransientDeliveryError

log = logging.getLogger(__name__)

__all__ = [
    "ChannelAdapter",
    "ChannelTransientError",
    "ConnectionInfo",
    "FileChannelAdapter",
    "HttpChannelAdapter",
    "HttpResponse",
    "OutboundMessage",
    "Recipient",
    "RecipientRejectedError",
    "SendResult",
    "batch_id",
    "csv_bytes",
    "write_atomic",
    "normalize_email",
    "normalize_phone",
    "retry_after_of",
]


@dataclass(frozen=True)
class ConnectionInfo:
    """What an Airflow Connection carries, without Airflow: host, credentials and the ``extra`` JSON."""

    conn_id: str
    conn_type: str | None = None
    host: str | None = None
    port: int | None = None
    login: str | None = None
    password: str | None = None
    schema: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def extra_str(self, key: str, default: str | None = None) -> str | None:
        """``extra[key]`` as a string (None and "" mean *default*)."""
        value = self.extra.get(key)
        if value is None or value == "":
            return default
        return str(value)

    def extra_bool(self, key: str, default: bool = False) -> bool:
        """``extra[key]`` as a boolean; accepts JSON booleans and "true"/"false"/"1"/"0"/"yes"/"no"."""
        value = self.extra.get(key)
        if value is None or value == "":
            return default
        if isinstance(value, bool):
            return value
        if isinstance(value, int | float):
            return bool(value)
        text = str(value).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"connection {self.conn_id!r}: extra {key!r} must be true or false, got {value!r}")

    def extra_float(self, key: str, default: float) -> float:
        """``extra[key]`` as a number."""
        value = self.extra.get(key)
        if value is None or value == "":
            return default
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(
                f"connection {self.conn_id!r}: extra {key!r} must be a number, got {value!r}"
            ) from None

    def require(self, attr: str, what: str) -> str:
        """The connection attribute *attr* (``login``, ``password``, ``host``…), or a ConfigError saying what to set."""
        value = getattr(self, attr)
        if not value:
            raise ConfigError(
                f"connection {self.conn_id!r} has no {attr}: set it to {what} "
                f"(airflow connections add {self.conn_id} --conn-{attr} ...)"
            )
        return str(value)


@dataclass(frozen=True)
class Recipient:
    """The person a message goes to, with every address Baton knows for them."""

    customer_id: str
    email: str | None = None
    phone: str | None = None
    push_token: str | None = None
    postal_address: str | None = None
    first_name: str | None = None
    last_name: str | None = None

    @property
    def full_name(self) -> str:
        """First and last name joined by a space (either may be missing)."""
        return " ".join(p.strip() for p in (self.first_name, self.last_name) if p and p.strip())


@dataclass(frozen=True)
class OutboundMessage:
    """One rendered message of the outbox, ready for its channel.

    ``content`` holds the rendered fields of the campaign's block for ``channel``
    (see ``baton.delivery.render``): email ``subject``, ``html``, optional ``text`` and
    ``unsubscribe_url``; sms ``text``; push ``title``, ``body``, optional ``url``;
    audience ``list``; direct_mail ``creative``.
    """

    message_id: int
    channel: str
    campaign_id: str
    recipient: Recipient
    content: dict[str, str]


@dataclass(frozen=True)
class SendResult:
    """The channel accepted the message; ``provider_id`` is the provider's reference for it, when it gives one."""

    message_id: int
    provider_id: str | None


class ChannelTransientError(TransientDeliveryError):
    """A transient failure with what the caller needs to schedule the retry.

    ``retry_after``: seconds the provider asked to wait (HTTP ``Retry-After``), or None.
    ``attempted``: False when the message was not even tried (skipped after the channel
    failed for earlier messages of the same batch) — not an attempt against the provider.
    ``maybe_sent``: True when the request reached the provider and the answer was lost
    (a read timeout, a connection dropped after the SMTP DATA): a retry may duplicate
    on a channel that is not ``idempotent_by_key``.
    ``connection_failed``: True when the connection to the provider failed, not the
    message (cannot connect, a timeout, the connection lost, authentication refused):
    every other message of the batch would fail the same way, so the batch stops at once.
    """

    def __init__(
        self,
        reason: str,
        *,
        retry_after: float | None = None,
        attempted: bool = True,
        maybe_sent: bool = False,
        connection_failed: bool = False,
    ) -> None:
        super().__init__(reason)
        self.retry_after = retry_after
        self.attempted = attempted
        self.maybe_sent = maybe_sent
        self.connection_failed = connection_failed


class RecipientRejectedError(TerminalDeliveryError):
    """Terminal, and the address itself is bad or gone: a candidate for the channel's suppression list."""

    def __init__(self, reason: str, *, address: str | None) -> None:
        super().__init__(reason)
        self.address = address


def retry_after_of(exc: BaseException) -> float | None:
    """The provider's retry hint of a transient error, in seconds (None when it gave none)."""
    value = getattr(exc, "retry_after", None)
    return float(value) if isinstance(value, int | float) else None


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from an HTTP ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    from datetime import UTC, datetime
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


_PHONE_JUNK = re.compile(r"[\s().\-/]")
_E164 = re.compile(r"^\+[1-9]\d{6,14}$")


def normalize_email(value: str | None) -> str | None:
    """Trimmed and lower-cased, as ad platforms and suppression lists compare emails; None when empty."""
    if value is None:
        return None
    text = value.strip().lower()
    return text or None


def normalize_phone(value: str | None) -> str | None:
    """E.164 (``+`` and 7-15 digits, no spaces or punctuation); ``00`` becomes ``+``; None when not E.164."""
    if value is None:
        return None
    text = _PHONE_JUNK.sub("", value.strip())
    if text.startswith("00"):
        text = "+" + text[2:]
    return text if _E164.match(text) else None


def http_base_url(conn: ConnectionInfo, default: str) -> str:
    """The base URL of an HTTP provider: the connection's host (with scheme, or ``schema``/https) and port, else *default*."""
    host = (conn.host or "").strip().rstrip("/")
    if not host:
        return default.rstrip("/")
    if "://" not in host:
        host = f"{conn.schema or 'https'}://{host}"
    if conn.port:
        scheme, _, rest = host.partition("://")
        authority, slash, path = rest.partition("/")
        if ":" not in authority.rsplit("]", 1)[-1]:
            host = f"{scheme}://{authority}:{conn.port}{slash}{path}"
    return host


Outcome: TypeAlias = SendResult | DeliveryError
"""What became of one message: the provider took it, or why not."""

Outcomes: TypeAlias = Generator[tuple[OutboundMessage, Outcome], None, None]
"""What :meth:`ChannelAdapter.send_batch` yields: each message with its outcome, as it completes."""

ALWAYS_ALLOWED_EXTRAS = frozenset({"fake"})
"""Extra keys every channel connection may carry: ``fake`` switches it to the fake adapter."""


def did_you_mean(key: str, allowed: Iterable[str], aliases: Mapping[str, str] | None = None) -> str:
    """`` (did you mean 'x'?)`` for a misspelt *key*, or the hint of *aliases* for a key known from elsewhere."""
    if aliases and key in aliases:
        return f" ({aliases[key]})"
    close = difflib.get_close_matches(key, sorted(allowed), n=1, cutoff=0.6)
    if not close:
        close = [a for a in sorted(allowed) if a.replace("_", "") == key.replace("_", "").replace("-", "")]
    return f" (did you mean {close[0]!r}?)" if close else ""


class ChannelAdapter(ABC):
    """One channel's way out.  A subclass declares what it is and implements :meth:`send`.

    Declared capabilities (class attributes, like dlt's destination capabilities;
    orchestration reads them instead of testing channel names):

    * ``channel`` — the channel's name (the registry key);
    * ``idempotent_by_key`` — the provider deduplicates on a key derived from the message
      id (Twilio's idempotency token, a file name), so sending a message twice delivers it
      once.  The outbox records the outcomes of such channels in small groups; elsewhere
      each outcome at once (a retry after a ``maybe_sent`` failure may deliver a copy);
    * ``writes_files`` — a batch becomes files rather than requests;
    * ``needs_export_path`` — the adapter wants ``base_path`` (the object-storage folder its
      files go to) from its caller;
    * ``needs_unsubscribe_link`` — marketing messages of this channel carry a signed
      one-click unsubscribe link (the outbox renders ``unsubscribe_url`` for them);
    * ``address_field`` — the :class:`Recipient` field the channel delivers to (None: the
      channel matches on several, e.g. hashed audiences), and ``address_case_insensitive``
      (emails): :meth:`suppression_address` normalises an address accordingly, the way
      the channel's suppression list stores it;
    * ``allowed_extras`` — the connection ``extra`` keys the adapter reads; any other key is
      a ConfigError naming it (a misspelt ``starttls`` must never mean a plaintext session);
      ``extra_hints`` explains keys known from elsewhere (e.g. the SMTP provider's).

    ``batch_stop_after_transient``: in :meth:`send_batch`, after this many consecutive
    per-message transient failures — or at once when the provider asks to wait
    (``retry_after`` > 0) or the connection itself failed (``connection_failed``) — the rest of
    the batch is not attempted (``ChannelTransientError(attempted=False)``), so a channel
    that is down or throttling costs one timeout, not one per message.  0 tries every
    message whatever the earlier ones answered (a connection failure still stops the batch).
    """

    channel: ClassVar[str]
    idempotent_by_key: bool
    writes_files: bool = False
    needs_export_path: bool = False
    needs_unsubscribe_link: bool = False
    address_field: str | None = None
    address_case_insensitive: bool = False
    allowed_extras: ClassVar[frozenset[str]] = frozenset()
    extra_hints: ClassVar[Mapping[str, str]] = {}
    batch_stop_after_transient: ClassVar[int] = 3

    def __init__(self, conn: ConnectionInfo, *, base_path: Any | None = None) -> None:
        self.conn = conn
        self.base_path = base_path
        self.check_extras()

    def allowed_extra_keys(self) -> frozenset[str]:
        """The connection extra keys this adapter accepts."""
        return self.allowed_extras | ALWAYS_ALLOWED_EXTRAS

    def check_extras(self) -> None:
        """ConfigError naming the connection and each unknown extra key (with a "did you mean" hint)."""
        allowed = self.allowed_extra_keys()
        unknown = sorted(str(k) for k in self.conn.extra if k not in allowed)
        if not unknown:
            return
        what = "; ".join(f"{k!r}{did_you_mean(k, allowed, self.extra_hints)}" for k in unknown)
        name = getattr(self, "for_channel", None) or self.channel
        raise ConfigError(
            f"connection {self.conn.conn_id!r}: unknown extra {what} for the {name} channel; "
            f"its extras are: {', '.join(sorted(allowed))}. Fix the key in the connection's extra JSON"
        )

    def suppression_address(self, address: str) -> str:
        """*address* as the channel's suppression list stores it: trimmed (and lower-cased when
        ``address_case_insensitive``)."""
        text = address.strip()
        return text.lower() if self.address_case_insensitive else text

    def open(self) -> None:  # noqa: B027 - optional hook
        """Open the connection to the provider (optional: ``send`` opens lazily)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the connection; the adapter may be opened again."""

    def discard(self) -> None:
        """Drop the connection without a goodbye (its state is unknown, e.g. after a bug); default :meth:`close`."""
        self.close()

    def __enter__(self) -> Self:
        self.open()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @abstractmethod
    def send(self, msg: OutboundMessage) -> SendResult:
        """Hand one message to the provider; raise Transient/TerminalDeliveryError when it does not take it."""

    def send_batch(self, msgs: Sequence[OutboundMessage], *, interval: float = 0.0) -> Outcomes:
        """Send a batch, yielding ``(message, outcome)`` as each message completes, in order.

        The only way the outbox sends: it records each outcome as it is yielded, so a crash
        mid-batch never loses or re-sends what was already recorded.  *interval* paces the
        sends (seconds between the starts of two sends: the channel's rate limit).

        Never raises a :class:`~baton.errors.DeliveryError`.  An unexpected exception while
        sending one message (a bug, not a provider's answer) is logged with its traceback
        and yielded as a terminal error for that message naming the exception; the
        connection is dropped and the rest of the batch goes on.
        """
        consecutive = 0
        stop: ChannelTransientError | None = None
        started: float | None = None
        for msg in msgs:
            if stop is not None:
                yield msg, stop
                continue
            if interval > 0 and started is not None:
                left = interval - (time.perf_counter() - started)
                if left > 0:
                    time.sleep(left)
            started = time.perf_counter()
            try:
                outcome: Outcome = self.send(msg)
            except DeliveryError as exc:
                outcome = exc
            except Exception as exc:
                log.exception("%s adapter: unexpected error sending message %s", self.channel, msg.message_id)
                self.discard()
                outcome = TerminalDeliveryError(
                    f"unexpected {type(exc).__name__} in the {self.channel} adapter: {exc} "
                    "(a bug, not the provider's answer: see the task log for the traceback)"
                )
            yield msg, outcome
            if not isinstance(outcome, TransientDeliveryError):
                consecutive = 0
                continue
            consecutive += 1
            wait = retry_after_of(outcome)
            down = isinstance(outcome, ChannelTransientError) and outcome.connection_failed
            limit = self.batch_stop_after_transient
            if down or (limit and ((wait is not None and wait > 0) or consecutive >= limit)):
                if down:
                    why = "the connection failed"
                elif wait is not None:
                    why = f"provider asked to retry after {wait:g}s"
                else:
                    why = f"{consecutive} consecutive transient failures"
                stop = ChannelTransientError(
                    f"not attempted: {why} earlier in this batch (last: {outcome})",
                    retry_after=wait,
                    attempted=False,
                    connection_failed=down,
                )


@dataclass(frozen=True)
class HttpResponse:
    """An HTTP answer, read whole (attribute names as in httpx/requests; ``headers`` keys lower-case)."""

    status_code: int
    reason_phrase: str
    headers: Mapping[str, str]
    content: bytes

    def header(self, name: str) -> str | None:
        """A response header, by case-insensitive name."""
        return self.headers.get(name.lower())

    @property
    def text(self) -> str:
        """The body decoded as UTF-8 (errors replaced)."""
        return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        """The body parsed as JSON (ValueError when it is not JSON)."""
        return json.loads(self.content)


class HttpChannelAdapter(ChannelAdapter):
    """Common ground of the HTTP channels: one keep-alive connection per batch and the error split.

    Connection: ``host`` (a base URL such as ``http://127.0.0.1:8025`` or
    ``https://api.example.com/prefix``; a bare host gets ``schema`` or https, and
    ``port``), extra ``timeout`` (seconds per connect/read, default 10) and ``ca_file``
    (a CA bundle for https; default the system's).

    Built on the standard library's ``http.client`` rather than httpx: at the
    thousand-requests-a-second rates of a delivery worker, httpx costs about four
    times the CPU per request (measured: ~1 ms vs ~0.25 ms).  Transport failures are
    transient; ``maybe_sent`` is set when the whole request was written and the answer
    was lost (a read timeout, a connection closed before the status line).  A
    keep-alive connection the server has closed while idle is replaced before use.
    """

    default_base_url: ClassVar[str]
    allowed_extras: ClassVar[frozenset[str]] = frozenset({"timeout", "ca_file"})

    def __init__(self, conn: ConnectionInfo, *, base_path: Any | None = None) -> None:
        super().__init__(conn, base_path=base_path)
        self.base_url = http_base_url(conn, self.default_base_url)
        parts = urlsplit(self.base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(
                f"connection {conn.conn_id!r}: host {self.base_url!r} is not an http(s) URL: "
                "set it to e.g. https://api.example.com"
            )
        self._scheme = parts.scheme
        self._host = parts.hostname
        self._port = parts.port
        self._prefix = parts.path.rstrip("/")
        self.timeout = conn.extra_float("timeout", 10.0)
        self.ca_file = conn.extra_str("ca_file")
        self._http: http.client.HTTPConnection | None = None
        self._headers: dict[str, str] = {}

    def default_headers(self) -> dict[str, str]:
        """Headers of every request (authorization)."""
        return {}

    def open(self) -> None:
        """Create the keep-alive connection object (it connects on first use)."""
        if self._http is None:
            self._headers = {"User-Agent": "baton-delivery/1", **self.default_headers()}
            if self._scheme == "https":
                context = ssl.create_default_context(cafile=self.ca_file)
                self._http = http.client.HTTPSConnection(
                    self._host, self._port, timeout=self.timeout, context=context
                )
            else:
                self._http = http.client.HTTPConnection(self._host, self._port, timeout=self.timeout)

    def close(self) -> None:
        """Close the connection."""
        conn, self._http = self._http, None
        if conn is not None:
            conn.close()

    def _post(self, path: str, body: bytes, headers: Mapping[str, str]) -> HttpResponse:
        """POST *body* to *path* (under the base URL); transport failures become ChannelTransientError."""
        self.open()
        conn = self._http
        assert conn is not None
        where = f"{self.channel} provider {self.base_url} (connection {self.conn.conn_id!r})"
        if conn.sock is not None and select.select([conn.sock], [], [], 0)[0]:
            conn.close()  # idle keep-alive closed by the server (or unexpected bytes): start afresh
        try:
            if conn.sock is None:
                conn.connect()
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise ChannelTransientError(
                f"{where}: cannot connect: {_describe_net(exc)}", connection_failed=True
            ) from exc
        try:
            conn.request("POST", self._prefix + path, body=body, headers={**self._headers, **headers})
        except (OSError, http.client.HTTPException) as exc:
            conn.close()  # the request was not written whole: the provider cannot have acted on it
            raise ChannelTransientError(
                f"{where}: sending failed: {_describe_net(exc)}", connection_failed=True
            ) from exc
        try:
            resp = conn.getresponse()
            content = resp.read()
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            timed_out = isinstance(exc, TimeoutError)
            what = f"timed out after {self.timeout:g}s waiting for the answer" if timed_out else "no answer"
            raise ChannelTransientError(
                f"{where}: {what}: {_describe_net(exc)}; the provider may have the message",
                maybe_sent=True,
                connection_failed=True,
            ) from exc
        if resp.will_close:
            conn.close()
        return HttpResponse(
            resp.status, resp.reason, {k.lower(): v for k, v in resp.headers.items()}, content
        )

    def _transient_status(self, resp: HttpResponse, detail: str) -> ChannelTransientError | None:
        """The transient error of an HTTP answer (429, 5xx, 408, 401/403), or None when it is not transient."""
        status = resp.status_code
        retry_after = parse_retry_after(resp.header("Retry-After"))
        if status == 429:
            return ChannelTransientError(f"HTTP 429 rate limited: {detail}", retry_after=retry_after)
        if status >= 500:
            return ChannelTransientError(f"HTTP {status} provider error: {detail}", retry_after=retry_after)
        if status in (401, 403):
            return ChannelTransientError(
                f"HTTP {status} authentication failed: {detail}: check the credentials of connection "
                f"{self.conn.conn_id!r}",
                connection_failed=True,  # every message of the batch would be refused the same way
            )
        if status == 408:
            return ChannelTransientError(f"HTTP 408 request timeout: {detail}", maybe_sent=True)
        return None


def _describe_net(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "TimeoutError"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def batch_id(message_ids: Iterable[int]) -> str:
    """A file-name-safe id of a set of messages: the same ids always give the same name (order does not matter)."""
    ids = sorted(set(message_ids))
    if not ids:
        raise ValueError("a batch needs at least one message")
    digest = hashlib.sha256(",".join(map(str, ids)).encode("ascii")).hexdigest()[:12]
    return f"{ids[0]}-{ids[-1]}-{digest}"


def _is_local(path: Any) -> bool:
    protocol = getattr(path, "protocol", None)
    if protocol is None:
        return isinstance(path, PurePath)
    if isinstance(protocol, tuple | list):
        protocol = protocol[0] if protocol else ""
    return protocol in ("", "file", "local")


def write_atomic(directory: Any, name: str, data: bytes) -> Any:
    """Write *data* to ``directory / name`` so that readers see the whole file or nothing; returns the path.

    *directory* is a ``pathlib.Path`` or an object-storage path (Airflow's
    ObjectStoragePath, a ``UPath``).  Local paths get a temporary name in the same folder
    and a rename over the final name (atomic on POSIX); object stores publish an object
    whole when it is closed, so they are written directly.
    """
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except (NotImplementedError, FileExistsError):
        pass  # object stores have no real folders
    final = directory / name
    if not _is_local(final):
        with final.open("wb") as fh:
            fh.write(data)
        return final
    tmp = directory / f".{name}.{uuid.uuid4().hex}.tmp"
    try:
        with tmp.open("wb") as fh:
            fh.write(data)
            fh.flush()
            fileno = getattr(fh, "fileno", None)
            if fileno is not None:
                try:
                    os.fsync(fileno())
                except (OSError, ValueError):
                    pass
        replace = getattr(tmp, "replace", None)
        if replace is not None:
            replace(final)
        else:
            tmp.rename(final)
    except BaseException:
        try:
            tmp.unlink()
        except (OSError, NotImplementedError):
            pass
        raise
    return final


class FileChannelAdapter(ChannelAdapter):
    """Common ground of the file channels (audience, direct_mail): one file per batch under ``base_path``.

    ``base_path`` is given by the caller (``baton.airflow`` passes an ObjectStoragePath,
    e.g. ``file:///…`` or ``s3://bucket/prefix``: the adapter declares
    ``needs_export_path``); without it the connection's extra ``base_path`` (a local
    folder or a ``file://`` URL) is used; with neither, building the adapter is a
    ConfigError.  File names derive from the message ids of the batch (:func:`batch_id`):
    re-sending the same batch rewrites the same file, so the channel is idempotent by file
    name.  :meth:`send_batch` yields the messages of a file once it is written; a write
    failure is transient for every message of the file.  Files are written at once, so the
    pacing *interval* does not apply (the outbox's rate reservation still spaces batches).
    """

    idempotent_by_key: bool = True
    writes_files: bool = True
    needs_export_path: bool = True
    allowed_extras: ClassVar[frozenset[str]] = frozenset({"base_path", "path"})
    batch_stop_after_transient: ClassVar[int] = 0

    def __init__(self, conn: ConnectionInfo, *, base_path: Any | None = None) -> None:
        super().__init__(conn, base_path=base_path)
        self._root = self._resolve_root()

    def root(self) -> Any:
        """The folder all files of this channel go under."""
        return self._root

    def _resolve_root(self) -> Any:
        if self.base_path is not None:
            return self.base_path
        raw = self.conn.extra_str("base_path") or self.conn.extra_str("path")
        if not raw:
            raise ConfigError(
                f"connection {self.conn.conn_id!r}: no base_path for the {self.channel} files: pass base_path "
                "or set extra base_path to a folder (e.g. file:///var/lib/baton/exports)"
            )
        if raw.startswith("file://"):
            from urllib.parse import unquote, urlparse

            raw = unquote(urlparse(raw).path)
        elif "://" in raw:
            raise ConfigError(
                f"connection {self.conn.conn_id!r}: base_path {raw!r} is object storage: "
                "run through baton.airflow, which opens it as an ObjectStoragePath"
            )
        return Path(raw)

    def send(self, msg: OutboundMessage) -> SendResult:
        """A batch of one: writes one file."""
        for _, result in self.send_batch([msg]):
            if isinstance(result, DeliveryError):
                raise result
            return result
        raise AssertionError(f"the {self.channel} adapter gave no outcome for message {msg.message_id}")

    @abstractmethod
    def send_batch(self, msgs: Sequence[OutboundMessage], *, interval: float = 0.0) -> Outcomes:
        """Write the batch's file(s); yield each message's outcome once its file is written."""

    def _write(self, directory: Any, name: str, data: bytes) -> str | ChannelTransientError:
        """Write one file; its path relative to the root, or the transient error of the failed write."""
        try:
            write_atomic(directory, name, data)
        except (OSError, NotImplementedError) as exc:
            return ChannelTransientError(f"cannot write {directory}/{name}: {type(exc).__name__}: {exc}")
        return name


def csv_bytes(header: Sequence[str], rows: Iterable[Sequence[str]]) -> bytes:
    """RFC 4180 CSV (CRLF line ends, minimal quoting), UTF-8."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue().encode("utf-8")
