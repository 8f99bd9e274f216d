"""Email over SMTP (smtplib), one connection reused across a batch.

Connection (Airflow ``smtp`` type): ``host``, ``port`` (default 25, or 465 with
``ssl``), ``login``/``password`` (AUTH when set); ``extra``:

* ``from`` — the From header, e.g. ``"Shop <shop@example.com>"`` (default
  ``Baton <baton@localhost>``); its domain names the Message-IDs;
* ``starttls`` (bool, default false), ``ssl`` (bool: implicit TLS, default false),
  ``ca_file`` (a CA bundle to verify the server with; default the system's),
* ``timeout`` (seconds per SMTP command, default 30), ``reply_to``, ``return_path``
  (the envelope sender; default the From address).

A test send of a preview (content ``test``) carries ``X-Baton-Test: 1`` instead of
``X-Baton-Message-Id`` and a ``<baton-test-…>`` Message-ID.

Each message is ``multipart/alternative`` (text, then HTML; the text is derived from
the HTML when the block has none) with ``Message-ID: <baton-{message_id}@{domain}>``,
``X-Baton-Message-Id`` and ``X-Baton-Campaign``, and — when the content has an
``unsubscribe_url`` — ``List-Unsubscribe: <url>`` and ``List-Unsubscribe-Post:
List-Unsubscribe=One-Click`` (RFC 8058).

Errors: an invalid address is terminal without contacting the server; SMTP 4xx
replies are transient, 5xx terminal (550/551/553 on RCPT: the recipient is rejected);
connection failures, timeouts and authentication failures are transient (a broken
connection or a bad password is fixed by the operator, not by dropping the messages).
A disconnect before DATA reconnects once and retries; after DATA it is transient with
``maybe_sent`` (SMTP has no idempotency key: ``idempotent_by_key`` is False, but every
copy carries the same Message-ID, so receivers can tell).
"""

from __future__ import annotations

import binascii
import logging
import re
import smtplib
import socket
import ssl
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from email.header import Header
from email.utils import format_datetime, formataddr, parseaddr
from typing import ClassVar

from baton.delivery.base import (
    ChannelAdapter,
    ChannelTransientError,
    ConnectionInfo,
    OutboundMessage,
    RecipientRejectedError,
    SendResult,
)
from baton.delivery.render import html_to_text
from baton.errors import ConfigError, TerminalDeliveryError

log = logging.getLogger(__name__)

_LOCAL = re.compile(r"^[^\s@<>()\[\]\\,;:\"]+$")
_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")
_RECIPIENT_REJECTED = frozenset({550, 551, 553})
_DOT_LINE = re.compile(rb"(?m)^\.")


def split_address(value: str | None) -> tuple[str, str] | None:
    """``(local, ascii_domain)`` of a plausible mailbox address (``a@b.example``), or None."""
    if not value:
        return None
    addr = value.strip()
    if len(addr) > 254 or addr.count("@") != 1 or any(c in addr for c in "\r\n\t "):
        return None
    local, domain = addr.split("@")
    if not local or len(local) > 64 or not _LOCAL.match(local):
        return None
    if local.startswith(".") or local.endswith(".") or ".." in local:
        return None
    try:
        ascii_domain = domain.encode("idna").decode("ascii").lower()
    except UnicodeError:
        return None
    labels = ascii_domain.split(".")
    if len(labels) < 2 or not all(_LABEL.match(label) for label in labels) or labels[-1].isdigit():
        return None
    return local, ascii_domain


class EmailAdapter(ChannelAdapter):
    """SMTP with STARTTLS/TLS options and one connection per batch."""

    channel: ClassVar[str] = "email"
    idempotent_by_key: bool = False
    needs_unsubscribe_link: bool = True
    address_field: str | None = "email"
    address_case_insensitive: bool = True
    allowed_extras: ClassVar[frozenset[str]] = frozenset(
        {"from", "starttls", "ssl", "ca_file", "timeout", "reply_to", "return_path"}
    )
    extra_hints: ClassVar[Mapping[str, str]] = {
        # the Airflow SMTP provider's connection form: other names, other meanings
        "from_email": "the SMTP provider's name: Baton reads 'from'",
        "disable_tls": "the SMTP provider's setting, which Baton does not read: set 'starttls': true (or 'ssl': true)",
        "disable_ssl": "the SMTP provider's setting, which Baton does not read: set 'ssl': true for implicit TLS",
        "tls": "set 'starttls': true (or 'ssl': true for implicit TLS)",
        "use_tls": "set 'starttls': true (or 'ssl': true for implicit TLS)",
        "use_ssl": "did you mean 'ssl'?",
        "retry_limit": "the SMTP provider's setting: Baton retries each message itself (remove it)",
        "sender": "did you mean 'from'?",
    }

    def __init__(self, conn: ConnectionInfo, *, base_path: object | None = None) -> None:
        super().__init__(conn, base_path=base_path)
        self.use_ssl = conn.extra_bool("ssl")
        self.starttls = conn.extra_bool("starttls")
        if self.use_ssl and self.starttls:
            raise ConfigError(f"connection {conn.conn_id!r}: set extra ssl or starttls, not both")
        self.host = conn.host or "localhost"
        self.port = conn.port or (465 if self.use_ssl else 25)
        self.timeout = conn.extra_float("timeout", 30.0)
        self.ca_file = conn.extra_str("ca_file")
        sender = conn.extra_str("from", "Baton <baton@localhost>") or ""
        name, address = parseaddr(sender)
        parts = split_address(address) if "@" in address else None
        if parts is None and address.endswith("@localhost"):
            parts = (address.split("@")[0], "localhost")
        if parts is None:
            raise ConfigError(
                f"connection {conn.conn_id!r}: extra 'from' must be an address like "
                f"'Shop <shop@example.com>', got {sender!r}"
            )
        self.from_header = formataddr((name, address)) if name else address
        self.domain = parts[1]
        self.envelope_from = conn.extra_str("return_path", address) or address
        self.reply_to = conn.extra_str("reply_to")
        self._smtp: smtplib.SMTP | None = None

    # -- connection -----------------------------------------------------------------

    def _tls_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.ca_file)

    def open(self) -> None:
        """Connect (TLS or STARTTLS as configured), say EHLO and log in; no-op when connected."""
        if self._smtp is not None:
            return
        where = f"SMTP {self.host}:{self.port} (connection {self.conn.conn_id!r})"
        smtp: smtplib.SMTP | None = None
        try:
            if self.use_ssl:
                smtp = smtplib.SMTP_SSL(
                    self.host, self.port, timeout=self.timeout, context=self._tls_context()
                )
            else:
                smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
            smtp.ehlo_or_helo_if_needed()
            if self.starttls:
                smtp.starttls(context=self._tls_context())
                smtp.ehlo()
            if self.conn.login:
                smtp.login(self.conn.login, self.conn.password or "")
        except smtplib.SMTPAuthenticationError as exc:
            self._discard(smtp)
            raise ChannelTransientError(
                f"{where}: authentication failed ({exc.smtp_code} {_text(exc.smtp_error)}): "
                "check the login and password of the connection",
                connection_failed=True,
            ) from exc
        except smtplib.SMTPNotSupportedError as exc:
            self._discard(smtp)
            raise ChannelTransientError(
                f"{where}: {exc}: check extra starttls/ssl and the login", connection_failed=True
            ) from exc
        except (smtplib.SMTPException, OSError) as exc:
            self._discard(smtp)
            raise ChannelTransientError(
                f"{where}: cannot connect: {_describe(exc)}", connection_failed=True
            ) from exc
        self._smtp = smtp

    def close(self) -> None:
        """Say QUIT and drop the connection."""
        smtp, self._smtp = self._smtp, None
        if smtp is not None:
            try:
                smtp.quit()
            except (smtplib.SMTPException, OSError):
                smtp.close()

    @staticmethod
    def _discard(smtp: smtplib.SMTP | None) -> None:
        if smtp is not None:
            try:
                smtp.close()
            except OSError:
                pass

    def _reset(self) -> None:
        smtp, self._smtp = self._smtp, None
        self._discard(smtp)

    def discard(self) -> None:
        """Drop the connection without QUIT (its SMTP state is unknown); the next send reconnects."""
        self._reset()

    # -- message --------------------------------------------------------------------

    def message_id(self, message_id: int) -> str:
        """The Message-ID header of a message: ``<baton-{message_id}@{domain}>``."""
        return f"<baton-{message_id}@{self.domain}>"

    def build(self, msg: OutboundMessage, rcpt: str | None = None) -> bytes:
        """The MIME message of *msg* as SMTP bytes (CRLF): multipart/alternative, text then HTML.

        Composed directly (not with ``email.message.EmailMessage``, which costs
        milliseconds a message): ASCII parts go as 7bit, others as quoted-printable;
        non-ASCII headers as RFC 2047 encoded words.
        """
        subject = " ".join(msg.content.get("subject", "").split())
        html = msg.content.get("html")
        if not subject or not html:
            raise TerminalDeliveryError(f"message {msg.message_id}: email content needs a subject and html")
        text = msg.content.get("text") or html_to_text(html)
        test = bool(msg.content.get("test"))  # a test send of a preview (baton.web.preview)
        to = rcpt or (msg.recipient.email or "").strip()
        name = " ".join(msg.recipient.full_name.split())
        headers = [
            ("From", self.from_header),
            ("To", formataddr((name, to), charset="utf-8") if name else to),
            ("Subject", _unstructured(subject)),
            ("Date", format_datetime(datetime.now(UTC), usegmt=True)),
            (
                "Message-ID",
                f"<baton-test-{abs(msg.message_id)}@{self.domain}>"
                if test
                else self.message_id(msg.message_id),
            ),
            ("MIME-Version", "1.0"),
        ]
        if self.reply_to:
            headers.append(("Reply-To", self.reply_to))
        headers += [
            ("X-Baton-Test", "1") if test else ("X-Baton-Message-Id", str(msg.message_id)),
            ("X-Baton-Campaign", _unstructured(msg.campaign_id)),
        ]
        url = (msg.content.get("unsubscribe_url") or "").strip()
        if url:
            if any(c.isspace() or c in "<>" for c in url) or not url.isascii():
                raise TerminalDeliveryError(
                    f"message {msg.message_id}: unsubscribe_url {url!r} is not a valid URL"
                )
            headers += [
                ("List-Unsubscribe", f"<{url}>"),
                ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
            ]
        boundary = f"=_baton_{msg.message_id}_{uuid.uuid4().hex[:16]}"
        headers.append(("Content-Type", f'multipart/alternative; boundary="{boundary}"'))
        head = "".join(f"{k}: {v}\r\n" for k, v in headers).encode("utf-8")
        b = boundary.encode("ascii")
        return b"".join(
            (
                head,
                b"\r\n--",
                b,
                b"\r\n",
                _part("text/plain", text),
                b"\r\n--",
                b,
                b"\r\n",
                _part("text/html", html),
                b"\r\n--",
                b,
                b"--\r\n",
            )
        )

    def send(self, msg: OutboundMessage) -> SendResult:
        """Send one email; reconnects once when the server closed the connection before the message went out."""
        parts = split_address(msg.recipient.email)
        if parts is None:
            raise RecipientRejectedError(
                f"invalid email address {msg.recipient.email!r}", address=msg.recipient.email
            )
        local, domain = parts
        rcpt = f"{local}@{domain}"
        data = self.build(msg, rcpt)
        for attempt in (1, 2):
            self.open()
            assert self._smtp is not None
            try:
                return self._transaction(self._smtp, msg, rcpt, data, local)
            except _Reconnect as exc:
                self._reset()
                if attempt == 2:
                    raise ChannelTransientError(
                        f"SMTP server closed the connection: {exc}", connection_failed=True
                    ) from None
                log.info("SMTP connection lost before message %s (%s); reconnecting", msg.message_id, exc)
        raise AssertionError("unreachable")

    def _transaction(
        self, smtp: smtplib.SMTP, msg: OutboundMessage, rcpt: str, data: bytes, local: str
    ) -> SendResult:
        """MAIL, RCPT, DATA (pipelined in one write when the server offers PIPELINING), then the content."""
        self._envelope(smtp, msg, rcpt, _mail_options(smtp, rcpt, local))
        return self._content(smtp, msg, data)

    def _envelope(self, smtp: smtplib.SMTP, msg: OutboundMessage, rcpt: str, opts: str) -> None:
        """MAIL FROM, RCPT TO and DATA, up to the server's go-ahead (354) for the content."""
        steps = (f"MAIL FROM:<{self.envelope_from}>", f"RCPT TO:<{rcpt}>", "DATA")
        try:
            replies = _envelope_replies(smtp, steps, opts)
            for code, reply in replies:
                if code == 421:
                    raise _Reconnect(f"{code} {_text(reply)}")
            for step, (code, reply), ok in zip(steps, replies, ((250,), (250, 251), (354,)), strict=False):
                if code not in ok:
                    self._abort(smtp, replies)
                    address = msg.recipient.email if step is steps[1] else None
                    raise _by_code(code, reply, step, address)
        except smtplib.SMTPServerDisconnected as exc:
            if _timed_out(exc):  # a wedged server, not one that hung up: reconnecting costs another timeout
                self._reset()
                raise ChannelTransientError(
                    f"SMTP server did not answer within {self.timeout:g}s: {exc}", connection_failed=True
                ) from exc
            raise _Reconnect(str(exc)) from exc
        except (OSError, smtplib.SMTPException) as exc:
            self._reset()
            raise ChannelTransientError(
                f"SMTP error before DATA: {_describe(exc)}", connection_failed=True
            ) from exc

    def _content(self, smtp: smtplib.SMTP, msg: OutboundMessage, data: bytes) -> SendResult:
        """The message content (dot-stuffed) and the server's verdict on it."""
        try:
            smtp.send(_DOT_LINE.sub(b"..", data) + b".\r\n")
            code, reply = smtp.getreply()
        except (OSError, smtplib.SMTPException) as exc:
            self._reset()
            raise ChannelTransientError(
                f"SMTP connection failed during DATA, the server may have the message: {_describe(exc)}",
                maybe_sent=True,
                connection_failed=True,
            ) from exc
        if code != 250:
            if code == 421:
                self._reset()
                raise ChannelTransientError(
                    f"SMTP {code} {_text(reply)} (after end of DATA): the server is closing the connection",
                    connection_failed=True,
                )
            self._rset(smtp)
            raise _by_code(code, reply, "end of DATA", None)
        return SendResult(message_id=msg.message_id, provider_id=self.message_id(msg.message_id))

    def _abort(self, smtp: smtplib.SMTP, replies: list[tuple[int, bytes]]) -> None:
        """End a failed transaction: close a DATA the server opened anyway (empty, no recipients), then RSET."""
        if len(replies) == 3 and replies[2][0] == 354:
            try:
                smtp.send(b".\r\n")
                smtp.getreply()
            except (smtplib.SMTPException, OSError):
                self._reset()
                return
        self._rset(smtp)

    @staticmethod
    def _rset(smtp: smtplib.SMTP) -> None:
        try:
            smtp.rset()
        except (smtplib.SMTPException, OSError):
            pass


def _mail_options(smtp: smtplib.SMTP, rcpt: str, local: str) -> str:
    """The MAIL FROM parameters: SMTPUTF8 for a non-ASCII local part (terminal when the server lacks
    it), BODY=8BITMIME when offered."""
    options: list[str] = []
    if not local.isascii():
        if not smtp.has_extn("smtputf8"):
            raise TerminalDeliveryError(f"address {rcpt!r} needs SMTPUTF8, which the server does not support")
        options.append("SMTPUTF8")
        smtp.command_encoding = "utf-8"
    if smtp.has_extn("8bitmime"):
        options.append("BODY=8BITMIME")
    return "".join(f" {o}" for o in options)


def _envelope_replies(smtp: smtplib.SMTP, steps: tuple[str, str, str], opts: str) -> list[tuple[int, bytes]]:
    """The replies to MAIL, RCPT and DATA: all three in one write with PIPELINING, otherwise one at a
    time, stopping at the first refusal."""
    if smtp.has_extn("pipelining"):
        smtp.send(f"{steps[0]}{opts}\r\n{steps[1]}\r\n{steps[2]}\r\n")
        return [smtp.getreply() for _ in steps]
    replies = [smtp.docmd(f"{steps[0]}{opts}")]
    if replies[-1][0] == 250:
        replies.append(smtp.docmd(steps[1]))
        if replies[-1][0] in (250, 251):
            replies.append(smtp.docmd(steps[2]))
    return replies


def _unstructured(value: str) -> str:
    """An unstructured header value: one line, RFC 2047 encoded (and folded) when not short ASCII."""
    value = " ".join(value.split())
    if value.isascii() and len(value) <= 900:
        return value
    return Header(value, "utf-8", maxlinelen=76).encode(linesep="\r\n")


def _part(content_type: str, body: str) -> bytes:
    """One MIME part (headers and body, CRLF line ends): 7bit when ASCII with short lines, else quoted-printable."""
    raw = body.replace("\r\n", "\n").replace("\r", "\n").encode("utf-8")
    if raw.isascii() and all(len(line) <= 990 for line in raw.split(b"\n")):
        cte, data = b"7bit", raw
    else:
        cte, data = b"quoted-printable", binascii.b2a_qp(raw, istext=True)
    data = data.replace(b"\n", b"\r\n")
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    return (
        b"Content-Type: " + content_type.encode("ascii") + b"; charset=utf-8\r\n"
        b"Content-Transfer-Encoding: " + cte + b"\r\n\r\n" + data
    )


class _Reconnect(Exception):
    """The server closed the session before the message was handed over: safe to reconnect and retry."""


def _text(reply: bytes | str) -> str:
    return (reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)).replace("\n", " ")


def _timed_out(exc: BaseException) -> bool:
    """Whether *exc* (smtplib turns a read timeout into SMTPServerDisconnected) comes from a timeout."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, socket.timeout | TimeoutError):
            return True
        cause = cause.__cause__ or cause.__context__
    return False


def _describe(exc: BaseException) -> str:
    if isinstance(exc, socket.timeout | TimeoutError):
        return f"timed out ({exc})" if str(exc) else "timed out"
    if _timed_out(exc):
        return f"timed out ({type(exc).__name__}: {exc})"
    return f"{type(exc).__name__}: {exc}"


def _by_code(
    code: int, reply: bytes | str, step: str, address: str | None
) -> ChannelTransientError | TerminalDeliveryError:
    reason = f"SMTP {code} {_text(reply)} (after {step})"
    if 400 <= code < 500:
        return ChannelTransientError(reason)
    if address is not None and code in _RECIPIENT_REJECTED:
        return RecipientRejectedError(reason, address=address)
    return TerminalDeliveryError(reason)


__all__ = ["EmailAdapter", "split_address"]
