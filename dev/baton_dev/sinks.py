"""Real protocol servers on loopback, for tests, the demo and the benchmark.

* :class:`SmtpSink` — an aiosmtpd SMTP server that files every message it accepts into
  a ``mailbox.Maildir`` and counts messages per ``Message-ID`` and SMTP sessions (TCP
  connections).  Knobs (attributes, changeable while it runs): ``reject`` (addresses
  answered ``550``), ``tempfail`` (answered ``451``), ``close_after`` (messages per
  session before it answers ``421`` and hangs up), ``hang_after`` (messages accepted
  before the server stops answering: it keeps the connection open and never replies to
  the next ``MAIL``, like a server that has wedged; ``stalled`` counts those commands),
  optional ``auth`` (login, password) and ``tls_context`` (offers STARTTLS).
* :class:`ProviderEmulator` — a threaded HTTP server speaking the request shapes of
  Twilio's Messages API (SMS) and FCM HTTP v1 (push): it checks credentials and
  fields, answers like the providers, records accepted messages once per idempotency
  key (``I-Twilio-Idempotency-Token``; ``data.baton_message_id`` for FCM) and counts
  duplicates apart, so a test can assert "exactly once".  Knobs:
  ``fail_rate_transient`` (answers 429 with ``Retry-After`` or 500; ``transient_status``
  pins one), ``hang_seconds`` (waits before answering — and then accepts, like a slow
  provider), ``always_terminal`` (400), ``reject`` (numbers or tokens answered as
  invalid/unregistered).

Both start with ``start()`` and stop with ``stop()``, or work as context managers;
port 0 picks a free port (read ``.port`` after start).  ``connection()`` gives the
:class:`~baton.delivery.base.ConnectionInfo` that points an adapter at the server.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import mailbox
import os
import random
import re
import ssl
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterable
from email import message_from_bytes, policy
from email.message import EmailMessage
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

from baton.delivery.base import ConnectionInfo

log = logging.getLogger(__name__)

__all__ = ["ProviderEmulator", "SmtpSink"]

_E164 = re.compile(r"^\+[1-9]\d{6,14}$")
_MESSAGE_ID = re.compile(rb"^Message-ID:[ \t]*(.*?)[ \t]*$", re.I | re.M)


class _Server:
    """start/stop as a context manager."""

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


# --- SMTP ---------------------------------------------------------------------------


class _SinkSMTP(SMTP):
    """aiosmtpd's SMTP with the sink's session limit (``close_after``)."""

    def __init__(self, handler: Any, sink: SmtpSink, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self.sink = sink
        self.messages_in_session = 0

    async def smtp_MAIL(self, arg: str) -> None:
        if self.sink._stall():
            await asyncio.Event().wait()  # never answers; cancelled when the sink stops
        limit = self.sink.close_after
        if limit and self.messages_in_session >= limit:
            await self.push("421 4.7.0 Too many messages in this session, closing connection")
            if self.transport is not None:
                self.transport.close()
            return
        await super().smtp_MAIL(arg)


class _SinkHandler:
    def __init__(self, sink: SmtpSink) -> None:
        self.sink = sink

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname
        if self.sink.pipelining:  # aiosmtpd reads commands in order from its stream: pipelining just works
            responses = [*responses[:-1], "250-PIPELINING", responses[-1]]
        return responses

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        key = address.strip().lower()
        if key in {a.lower() for a in self.sink.reject}:
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
        if key in {a.lower() for a in self.sink.tempfail}:
            return f"451 4.3.0 <{address}>: Temporary failure, try again later"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        content = envelope.original_content or envelope.content
        data = content if isinstance(content, bytes) else str(content).encode("utf-8")
        self.sink._deliver(data, envelope.mail_from, list(envelope.rcpt_tos))
        if isinstance(server, _SinkSMTP):
            server.messages_in_session += 1
        return "250 2.0.0 OK: queued"


class _SinkController(Controller):
    def __init__(self, sink: SmtpSink, **kwargs: Any) -> None:
        super().__init__(_SinkHandler(sink), **kwargs)
        self.sink = sink

    def factory(self) -> SMTP:
        self.sink._count_session()
        return _SinkSMTP(self.handler, self.sink, **self.SMTP_kwargs)

    def _trigger_server(self) -> None:
        sockets = getattr(self.server, "sockets", None)
        if self.port == 0 and sockets:
            self.port = sockets[0].getsockname()[1]
        super()._trigger_server()  # type: ignore[no-untyped-call]


class SmtpSink(_Server):
    """A local SMTP server that delivers into a Maildir and counts by Message-ID.

    ``sessions`` counts SMTP connections since ``start()``; ``received`` the messages
    accepted; ``counts[message_id]`` the copies of each Message-ID; ``duplicates`` the
    copies beyond the first.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        maildir: Path | str = ".baton/maildir",
        *,
        reject: Iterable[str] = (),
        tempfail: Iterable[str] = (),
        close_after: int | None = None,
        hang_after: int | None = None,
        auth: tuple[str, str] | None = None,
        tls_context: ssl.SSLContext | None = None,
        pipelining: bool = True,
    ) -> None:
        self.host = host
        self.pipelining = pipelining
        self.port = port
        self.maildir_path = Path(maildir)
        self.reject: set[str] = set(reject)
        self.tempfail: set[str] = set(tempfail)
        self.close_after = close_after
        self.hang_after = hang_after
        self.stalled = 0
        self.auth = auth
        self.tls_context = tls_context
        self.counts: Counter[str] = Counter()
        self.sessions = 0
        self.received = 0
        self._lock = threading.Lock()
        self._seq = 0
        self._controller: _SinkController | None = None

    # called from the server's event loop thread
    def _stall(self) -> bool:
        """Whether the next command goes unanswered (``hang_after`` messages were accepted); counts it."""
        with self._lock:
            if self.hang_after is None or self.received < self.hang_after:
                return False
            self.stalled += 1
            return True

    def _count_session(self) -> None:
        with self._lock:
            self.sessions += 1

    def _deliver(self, data: bytes, mail_from: str, rcpt_tos: list[str]) -> None:
        head = data.split(b"\r\n\r\n", 1)[0]
        found = _MESSAGE_ID.search(head)
        message_id = found.group(1).decode("ascii", "replace").strip() if found else ""
        prefix = f"Return-Path: <{mail_from}>\r\n".encode() + b"".join(
            f"Delivered-To: {r}\r\n".encode() for r in rcpt_tos
        )
        with self._lock:
            self._seq += 1
            name = f"{time.time():.6f}.P{os.getpid()}Q{self._seq}.baton-sink"
        # Maildir delivery (tmp/ then rename into new/), without fsync: a test sink, not a mail store
        tmp = self.maildir_path / "tmp" / name
        with open(tmp, "wb") as fh:
            fh.write((prefix + data).replace(b"\r\n", b"\n"))
        os.rename(tmp, self.maildir_path / "new" / name)
        with self._lock:
            self.counts[message_id] += 1
            self.received += 1

    def _authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        ok = (
            self.auth is not None
            and isinstance(auth_data, LoginPassword)
            and auth_data.login.decode() == self.auth[0]
            and auth_data.password.decode() == self.auth[1]
        )
        return AuthResult(success=ok, handled=False)

    def start(self) -> None:
        """Start the server (in a thread); ``port`` is the real port afterwards."""
        if self._controller is not None:
            return
        for sub in ("tmp", "new", "cur"):
            (self.maildir_path / sub).mkdir(parents=True, exist_ok=True)
        # aiosmtpd logs every SMTP command at INFO on "mail.log"; once Airflow has configured logging
        # that reaches the console (thousands of lines in the demo): its warnings and errors are enough
        logging.getLogger("mail.log").setLevel(logging.WARNING)
        kwargs: dict[str, Any] = {
            "hostname": self.host,
            "port": self.port,
            "decode_data": False,
            "enable_SMTPUTF8": True,
            "ident": "Baton SMTP sink",
            "tls_context": self.tls_context,
            "require_starttls": False,
        }
        if self.auth is not None:
            kwargs.update(authenticator=self._authenticate, auth_required=True, auth_require_tls=False)
        controller = _SinkController(self, **kwargs)
        controller.start()
        self.port = controller.port
        self._controller = controller
        with self._lock:
            self.sessions = 0  # the controller's own readiness probe is not a session

    def stop(self) -> None:
        """Stop the server (messages stay in the Maildir)."""
        controller, self._controller = self._controller, None
        if controller is not None:
            controller.stop()

    def reset(self) -> None:
        """Forget the counts (the Maildir keeps its files)."""
        with self._lock:
            self.counts.clear()
            self.sessions = 0
            self.received = 0
            self.stalled = 0

    @property
    def duplicates(self) -> int:
        """Copies received beyond the first of each Message-ID."""
        with self._lock:
            return sum(n - 1 for n in self.counts.values() if n > 1)

    def count(self, message_id: str) -> int:
        """Copies received of *message_id* (with or without the angle brackets)."""
        key = message_id if message_id.startswith("<") else f"<{message_id}>"
        with self._lock:
            return self.counts.get(key, 0)

    def messages(self) -> list[EmailMessage]:
        """Every message in the Maildir, parsed (``email.policy.default``)."""
        box = mailbox.Maildir(self.maildir_path, create=True)
        out: list[EmailMessage] = []
        for key in sorted(box.keys()):
            with box.get_file(key) as fh:
                parsed = message_from_bytes(fh.read(), policy=policy.default)
            assert isinstance(parsed, EmailMessage)
            out.append(parsed)
        return out

    def connection(self, conn_id: str = "baton_email", **extra: Any) -> ConnectionInfo:
        """A ConnectionInfo pointing the email adapter at this sink (plain SMTP unless *extra* says otherwise)."""
        login, password = self.auth if self.auth else (None, None)
        return ConnectionInfo(
            conn_id=conn_id,
            conn_type="smtp",
            host=self.host,
            port=self.port,
            login=login,
            password=password,
            extra={"from": "Northwind & Co. <shop@northwind.example>", "timeout": 5, **extra},
        )


# --- HTTP providers -------------------------------------------------------------------


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256
    emulator: ProviderEmulator

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("provider emulator: connection error from %s", client_address, exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms delayed-ACK stalls
    server: _HttpServer
    server_version = "BatonProviderEmulator/1"

    def setup(self) -> None:
        super().setup()
        emulator = self.server.emulator
        with emulator._lock:
            emulator.connections += 1

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("provider emulator: " + format, *args)

    def _reply(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode("utf-8")
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)
        except OSError:  # the client gave up (e.g. after hang_seconds)
            self.close_connection = True

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def do_GET(self) -> None:
        if urlsplit(self.path).path == "/_emulator/stats":
            self._reply(200, self.server.emulator.stats())
        else:
            self._reply(404, {"error": "not found"})

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        body = self._body()
        emulator = self.server.emulator
        m = re.fullmatch(r"/2010-04-01/Accounts/([^/]+)/Messages\.json", path)
        if m:
            status, payload, headers = emulator._twilio(m.group(1), self.headers, body)
            return self._reply(status, payload, headers)
        m = re.fullmatch(r"/v1/projects/([^/]+)/messages:send", path)
        if m:
            status, payload, headers = emulator._fcm(m.group(1), self.headers, body)
            return self._reply(status, payload, headers)
        if path == "/token":
            status, payload, headers = emulator._oauth_token(body)
            return self._reply(status, payload, headers)
        self._reply(404, {"code": 20404, "message": f"no such resource: {path}", "status": 404})


Reply = tuple[int, dict[str, Any], dict[str, str]]


def _form(body: bytes) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body (the first value of each field)."""
    return {k: v[0] for k, v in parse_qs(body.decode("utf-8"), keep_blank_values=True).items()}


def _twilio_error(status: int, code: int, message: str, headers: dict[str, str] | None = None) -> Reply:
    body = {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }
    return status, body, headers or {}


def _fcm_error(
    status: int, grpc: str, message: str, error_code: str | None = None, headers: dict[str, str] | None = None
) -> Reply:
    error: dict[str, Any] = {"code": status, "message": message, "status": grpc}
    if error_code:
        error["details"] = [
            {"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": error_code}
        ]
    return status, {"error": error}, headers or {}


class ProviderEmulator(_Server):
    """A local HTTP server in the shapes of Twilio's Messages API and FCM HTTP v1, with
    Google's OAuth token endpoint (``POST /token``, the JWT-bearer grant of a service
    account: :meth:`service_account` gives a key it trusts; its tokens expire after
    ``oauth_token_seconds`` and :meth:`revoke_tokens` revokes them).

    ``accepted`` lists the accepted messages (``kind`` "sms" or "push", ``key`` the
    idempotency key, ``message_id`` when known, ``to``, the content and the
    ``provider_id``), once per key; ``duplicates`` counts requests for a key already
    accepted (answered with the first answer, as an idempotent provider would);
    ``requests`` counts every POST, ``connections`` the TCP connections; ``injected`` the
    failures the knobs caused.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        store: Path | str | None = None,
        *,
        twilio_sid: str = "ACbaton0000000000000000000000000",
        twilio_token: str = "baton-twilio-token",
        fcm_project: str = "baton-demo",
        fcm_token: str = "baton-fcm-token",
        fail_rate_transient: float = 0.0,
        transient_status: int | None = None,
        retry_after: int = 1,
        hang_seconds: float = 0.0,
        always_terminal: bool = False,
        reject: Iterable[str] = (),
        seed: int | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.store = Path(store) if store is not None else None
        self.twilio_sid = twilio_sid
        self.twilio_token = twilio_token
        self.fcm_project = fcm_project
        self.fcm_token = fcm_token
        self.fail_rate_transient = fail_rate_transient
        self.transient_status = transient_status
        self.retry_after = retry_after
        self.hang_seconds = hang_seconds
        self.always_terminal = always_terminal
        self.reject: set[str] = set(reject)
        self.oauth_token_seconds = 3600
        self.token_requests = 0
        self._issued: dict[str, float] = {}  # access token -> expiry (time.time())
        self._account: dict[str, Any] | None = None
        self.accepted: list[dict[str, Any]] = []
        self.duplicates = 0
        self.duplicate_keys: Counter[str] = Counter()
        self.requests = 0
        self.connections = 0
        self.injected: Counter[str] = Counter()
        self._answers: dict[tuple[str, str], Reply] = {}
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: _HttpServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------------

    def start(self) -> None:
        """Start serving in a background thread; ``port`` is the real port afterwards."""
        if self._server is not None:
            return
        self._stopping.clear()
        server = _HttpServer((self.host, self.port), _Handler)
        server.emulator = self
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="provider-emulator", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop serving; hanging answers are released at once."""
        server, self._server = self._server, None
        self._stopping.set()
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    @property
    def base_url(self) -> str:
        """``http://host:port`` of the running server."""
        return f"http://{self.host}:{self.port}"

    def reset(self) -> None:
        """Forget accepted messages and counters (knobs stay)."""
        with self._lock:
            self.accepted.clear()
            self.token_requests = 0
            self.duplicates = 0
            self.duplicate_keys.clear()
            self.requests = 0
            self.connections = 0
            self.injected.clear()
            self._answers.clear()

    def service_account(self) -> dict[str, Any]:
        """A service account key (Google's JSON key file format) whose JWTs ``/token`` accepts."""
        with self._lock:
            if self._account is None:
                from cryptography.hazmat.primitives import serialization
                from cryptography.hazmat.primitives.asymmetric import rsa

                key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
                pem = key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                ).decode()
                self._account = {
                    "type": "service_account",
                    "project_id": self.fcm_project,
                    "private_key_id": uuid.uuid4().hex,
                    "private_key": pem,
                    "client_email": f"baton-push@{self.fcm_project}.iam.gserviceaccount.com",
                    "client_id": str(uuid.uuid4().int % 10**21),
                    "token_uri": f"{self.base_url}/token",
                    "_public_key": key.public_key(),
                }
            return {k: v for k, v in self._account.items() if not k.startswith("_")}

    def revoke_tokens(self) -> None:
        """Revoke every access token issued so far (FCM answers 401 to them)."""
        with self._lock:
            self._issued.clear()

    def oauth_connection(self, conn_id: str = "baton_push", **extra: Any) -> ConnectionInfo:
        """A ConnectionInfo pointing the push adapter here, authenticating with :meth:`service_account`."""
        return ConnectionInfo(
            conn_id=conn_id,
            conn_type="http",
            host=self.base_url,
            extra={"service_account": self.service_account(), "timeout": 5, **extra},
        )

    def _oauth_token(self, body: bytes) -> Reply:
        import jwt

        form = _form(body)
        with self._lock:
            self.token_requests += 1
            account = self._account
        if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer":
            return 400, {"error": "unsupported_grant_type", "error_description": "Invalid grant_type."}, {}
        if account is None:
            return 400, {"error": "invalid_grant", "error_description": "Invalid JWT Signature."}, {}
        try:
            claims = jwt.decode(
                form.get("assertion", ""),
                account["_public_key"],
                algorithms=["RS256"],
                audience=str(account["token_uri"]),
                options={"require": ["iss", "aud", "iat", "exp"]},
            )
        except jwt.InvalidTokenError as exc:
            reason = (
                "Invalid JWT Signature."
                if isinstance(exc, jwt.InvalidSignatureError)
                else f"Invalid JWT: {exc}"
            )
            return 400, {"error": "invalid_grant", "error_description": reason}, {}
        if claims.get("iss") != account["client_email"]:
            return (
                400,
                {"error": "invalid_grant", "error_description": "Invalid JWT: iss is not the account."},
                {},
            )
        if "https://www.googleapis.com/auth/firebase.messaging" not in str(claims.get("scope", "")).split():
            return 400, {"error": "invalid_scope", "error_description": "Invalid OAuth scope."}, {}
        token = "ya29." + uuid.uuid4().hex
        with self._lock:
            self._issued[token] = time.time() + self.oauth_token_seconds
        return (
            200,
            {"access_token": token, "expires_in": self.oauth_token_seconds, "token_type": "Bearer"},
            {},
        )

    def _fcm_authorized(self, authorization: str) -> bool:
        if authorization == f"Bearer {self.fcm_token}":
            return True
        token = authorization.removeprefix("Bearer ")
        with self._lock:
            expiry = self._issued.get(token)
        return expiry is not None and expiry > time.time()

    def sms_connection(self, conn_id: str = "baton_sms", **extra: Any) -> ConnectionInfo:
        """A ConnectionInfo pointing the sms adapter here."""
        return ConnectionInfo(
            conn_id=conn_id,
            conn_type="http",
            host=self.base_url,
            login=self.twilio_sid,
            password=self.twilio_token,
            extra={"from": "+15005550006", "timeout": 5, **extra},
        )

    def push_connection(self, conn_id: str = "baton_push", **extra: Any) -> ConnectionInfo:
        """A ConnectionInfo pointing the push adapter here."""
        return ConnectionInfo(
            conn_id=conn_id,
            conn_type="http",
            host=self.base_url,
            password=self.fcm_token,
            extra={"project": self.fcm_project, "timeout": 5, **extra},
        )

    # -- views ----------------------------------------------------------------------

    def messages(self, kind: str) -> list[dict[str, Any]]:
        """Accepted messages of *kind* ("sms" or "push")."""
        with self._lock:
            return [dict(m) for m in self.accepted if m["kind"] == kind]

    def count(self, kind: str, key: str) -> int:
        """1 when a message with idempotency key *key* was accepted, plus its duplicates."""
        with self._lock:
            n = sum(1 for m in self.accepted if m["kind"] == kind and m["key"] == key)
            return n + self.duplicate_keys.get(f"{kind}:{key}", 0)

    def stats(self) -> dict[str, Any]:
        """Counters as JSON-ready data (also served at ``GET /_emulator/stats``)."""
        with self._lock:
            kinds = Counter(m["kind"] for m in self.accepted)
            return {
                "accepted": dict(kinds),
                "duplicates": self.duplicates,
                "requests": self.requests,
                "connections": self.connections,
                "injected": dict(self.injected),
                "token_requests": self.token_requests,
            }

    # -- behaviour --------------------------------------------------------------------

    def _faults(self, kind: str) -> Reply | None:
        """Hang, then the injected failures; None when the request goes through."""
        if self.hang_seconds > 0:
            self._stopping.wait(self.hang_seconds)
        with self._lock:
            transient = self.fail_rate_transient > 0 and self._random.random() < self.fail_rate_transient
            status = self.transient_status or (429 if self._random.random() < 0.5 else 500)
            if transient:
                self.injected[str(status)] += 1
            elif self.always_terminal:
                self.injected["400"] += 1
        if transient:
            headers = {"Retry-After": str(self.retry_after)} if status in (429, 503) else {}
            if kind == "sms":
                code = {429: 20429, 503: 20503}.get(status, 20500)
                return _twilio_error(status, code, HTTPStatus(status).phrase, headers)
            grpc = {429: "RESOURCE_EXHAUSTED", 503: "UNAVAILABLE"}.get(status, "INTERNAL")
            detail = {429: "QUOTA_EXCEEDED", 503: "UNAVAILABLE"}.get(status, "INTERNAL")
            return _fcm_error(status, grpc, HTTPStatus(status).phrase, detail, headers)
        if self.always_terminal:
            if kind == "sms":
                return _twilio_error(400, 21606, "emulator: always_terminal is set; the message is refused")
            return _fcm_error(400, "INVALID_ARGUMENT", "emulator: always_terminal is set", "INVALID_ARGUMENT")
        return None

    def _accept(self, kind: str, key: str | None, record: dict[str, Any], answer: Reply) -> Reply:
        with self._lock:
            if key is not None:
                first = self._answers.get((kind, key))
                if first is not None:
                    self.duplicates += 1
                    self.duplicate_keys[f"{kind}:{key}"] += 1
                    self._write_store({**record, "kind": kind, "key": key, "duplicate": True})
                    return first
                self._answers[(kind, key)] = answer
            entry = {**record, "kind": kind, "key": key}
            self.accepted.append(entry)
            self._write_store(entry)
        return answer

    def _write_store(self, entry: dict[str, Any]) -> None:
        if self.store is not None:
            self.store.parent.mkdir(parents=True, exist_ok=True)
            with self.store.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps(entry, sort_keys=True) + "\n")

    def _twilio(self, sid: str, headers: Any, body: bytes) -> Reply:
        with self._lock:
            self.requests += 1
        auth = headers.get("Authorization", "")
        expected = "Basic " + base64.b64encode(f"{self.twilio_sid}:{self.twilio_token}".encode()).decode()
        if auth != expected or sid != self.twilio_sid:
            return _twilio_error(401, 20003, "Authenticate")
        if "application/x-www-form-urlencoded" not in headers.get("Content-Type", ""):
            return _twilio_error(400, 21601, "the request must be form-encoded")
        form = _form(body)
        to, text = form.get("To", ""), form.get("Body", "")
        if not to:
            return _twilio_error(400, 21604, "A 'To' phone number is required.")
        if not _E164.match(to):
            return _twilio_error(400, 21211, f"The 'To' number {to} is not a valid phone number.")
        if not text:
            return _twilio_error(400, 21602, "Message body is required.")
        if not form.get("From") and not form.get("MessagingServiceSid"):
            return _twilio_error(400, 21603, "A 'From' phone number is required.")
        fault = self._faults("sms")
        if fault is not None:
            return fault
        if to in self.reject:
            return _twilio_error(400, 21610, f"Attempt to send to unsubscribed recipient {to}")
        key = headers.get("I-Twilio-Idempotency-Token") or None
        message_sid = "SM" + uuid.uuid4().hex
        answer: Reply = (
            201,
            {
                "sid": message_sid,
                "account_sid": sid,
                "to": to,
                "from": form.get("From"),
                "messaging_service_sid": form.get("MessagingServiceSid"),
                "body": text,
                "status": "queued",
                "uri": f"/2010-04-01/Accounts/{sid}/Messages/{message_sid}.json",
            },
            {},
        )
        message_id = key[len("baton-") :] if key and key.startswith("baton-") else None
        record = {
            "message_id": message_id,
            "to": to,
            "body": text,
            "from": form.get("From"),
            "provider_id": message_sid,
        }
        return self._accept("sms", key, record, answer)

    def _fcm(self, project: str, headers: Any, body: bytes) -> Reply:
        with self._lock:
            self.requests += 1
        if not self._fcm_authorized(headers.get("Authorization", "")):
            return _fcm_error(401, "UNAUTHENTICATED", "Request had invalid authentication credentials.")
        if project != self.fcm_project:
            return _fcm_error(403, "PERMISSION_DENIED", f"Permission denied on project {project}.")
        try:
            data = json.loads(body or b"null")
        except ValueError:
            return _fcm_error(400, "INVALID_ARGUMENT", "Invalid JSON payload received.")
        message = data.get("message") if isinstance(data, dict) else None
        if not isinstance(message, dict):
            return _fcm_error(400, "INVALID_ARGUMENT", "message is required", "INVALID_ARGUMENT")
        token = message.get("token")
        if not isinstance(token, str) or not token:
            return _fcm_error(
                400, "INVALID_ARGUMENT", "Recipient of the message is not set.", "INVALID_ARGUMENT"
            )
        notification = message.get("notification") or {}
        payload = message.get("data") or {}
        if not isinstance(notification, dict) or not isinstance(payload, dict):
            return _fcm_error(
                400, "INVALID_ARGUMENT", "notification and data must be objects", "INVALID_ARGUMENT"
            )
        if any(not isinstance(v, str) for v in payload.values()):
            return _fcm_error(400, "INVALID_ARGUMENT", "data values must be strings", "INVALID_ARGUMENT")
        if not notification and not payload:
            return _fcm_error(
                400, "INVALID_ARGUMENT", "the message has neither notification nor data", "INVALID_ARGUMENT"
            )
        fault = self._faults("push")
        if fault is not None:
            return fault
        if token in self.reject:
            return _fcm_error(404, "NOT_FOUND", "Requested entity was not found.", "UNREGISTERED")
        key = payload.get("baton_message_id") or None
        name = f"projects/{project}/messages/{uuid.uuid4().int % 10**16}"
        answer: Reply = (200, {"name": name}, {})
        record = {
            "message_id": key,
            "to": token,
            "title": notification.get("title"),
            "body": notification.get("body"),
            "data": payload,
            "provider_id": name,
        }
        return self._accept("push", key, record, answer)
