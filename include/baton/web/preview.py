"""A campaign's messages as one person would get them, and test sends of them to internal addresses.

:func:`preview` renders every channel's block of a campaign in the delivery sandbox
(``baton.delivery.render``) for a chosen customer: with the row the campaign's audience query
returns for that customer *now* (its latest data interval; a dry run in a read-only transaction with
a statement timeout) when it returns one, else with the customer's latest candidate row of the
campaign that a cycle decided, else with the customer's own attributes and an empty payload — and it
says which.  The unsubscribe link of a preview is a placeholder that unsubscribes
no one.

:func:`send_test` sends a preview through the channel's adapter (the connection the policy names,
from Airflow Connections) to internal addresses only: at most :data:`MAX_ADDRESSES`, each on the
allow-list of its channel — ``BATON_TEST_SEND_DOMAINS`` (email domains, e.g. ``example.com``),
``BATON_TEST_SEND_NUMBERS`` (phone numbers), ``BATON_TEST_SEND_TOKENS`` (push tokens).  A test is
marked as one (subject, SMS text and push title prefixed ``[TEST]``; email header ``X-Baton-Test:
1``), carries a negative message id that no real message has, is recorded in ``test_sends`` — never
in ``messages``, so it never counts toward caps — and never goes to the customer's address.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Engine

from baton.delivery.base import ConnectionInfo, OutboundMessage, Recipient, SendResult, normalize_phone
from baton.delivery.render import message_context, render_message
from baton.errors import AudienceError, BatonError, ConfigError, InputError, TerminalDeliveryError
from baton.identity import admin
from baton.spec import Channel
from baton.store.tx import transaction
from baton.web.deployment import Deployment

log = logging.getLogger(__name__)

__all__ = [
    "ALLOW_ENV",
    "MAX_ADDRESSES",
    "SENDABLE",
    "ChannelPreview",
    "Preview",
    "SendTestResult",
    "allow_list",
    "allowed",
    "preview",
    "send_test",
]

MAX_ADDRESSES = 20
"""The most addresses one test send may go to."""

SENDABLE = ("email", "sms", "push")
"""Channels a test can be sent on (audience and direct_mail write files for other systems)."""

ALLOW_ENV = {
    "email": "BATON_TEST_SEND_DOMAINS",
    "sms": "BATON_TEST_SEND_NUMBERS",
    "push": "BATON_TEST_SEND_TOKENS",
}
"""The environment variable holding each channel's allow-list (comma-separated)."""

PREVIEW_UNSUBSCRIBE = "https://unsubscribe.invalid/preview"
"""The unsubscribe link of a preview: it unsubscribes no one."""

RESERVED = ("customer_id", "score", "channel")
_EMAIL = re.compile(r"^[^\s@<>()\[\],;:\"]+@([A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+)$")


@dataclass
class ChannelPreview:
    """One channel's rendered message (or why it does not render)."""

    channel: str
    content: dict[str, str] | None = None
    error: str | None = None

    @property
    def sendable(self) -> bool:
        """Whether a test of it can be sent (a channel that delivers to an address, rendered)."""
        return self.channel in SENDABLE and self.content is not None


@dataclass
class Preview:
    """A campaign rendered for one customer."""

    campaign_id: str
    customer_id: str
    source: str  # "audience": the query's row now; "candidate": their latest candidate; "attributes": none
    note: str
    payload: dict[str, Any] = field(default_factory=dict)
    channels: list[ChannelPreview] = field(default_factory=list)

    def channel(self, name: str) -> ChannelPreview | None:
        """The preview of channel *name*."""
        return next((c for c in self.channels if c.channel == name), None)

    def as_json(self) -> dict[str, Any]:
        """JSON-friendly data."""
        return {
            "campaign_id": self.campaign_id,
            "customer_id": self.customer_id,
            "source": self.source,
            "note": self.note,
            "payload": self.payload,
            "channels": [
                {"channel": c.channel, "content": c.content, "error": c.error, "sendable": c.sendable}
                for c in self.channels
            ],
        }


def _campaign(dep: Deployment, campaign_id: str) -> Any:
    spec = dep.campaigns.get(campaign_id)
    if spec is None:
        known = ", ".join(sorted(dep.campaigns)) or "none"
        raise InputError(f"unknown campaign {campaign_id!r}: the campaigns of {dep.folder} are {known}")
    return spec


def _default_customer(engine: Engine, campaign_id: str) -> str | None:
    """Someone the campaign proposed lately (the first row of its latest batch), else the first customer."""
    with transaction(engine) as tx:
        tx.execute("set transaction read only")
        row = tx.execute(
            "select c.customer_id from (select batch_id from candidate_batches where campaign_id = %(c)s"
            " and row_count > 0 order by cycle_at desc limit 1) b join lateral (select customer_id from candidates"
            " k where k.batch_id = b.batch_id order by seq limit 1) c on true"
            " where exists (select 1 from customers u where u.customer_id = c.customer_id)",
            {"c": campaign_id},
        ).fetchone()
        if row is None:
            row = tx.execute("select customer_id from customers order by customer_id limit 1").fetchone()
    return str(row[0]) if row else None


def _customer(engine: Engine, query: str) -> dict[str, Any]:
    with transaction(engine) as tx:
        tx.execute("set transaction read only")
        rows = admin.dict_rows(tx, "select * from customers where customer_id = %(c)s", {"c": query})
        if not rows:
            found = admin.find_profiles(tx, query)
            if found:
                rows = admin.dict_rows(
                    tx, "select * from customers where customer_id = %(c)s", {"c": found[0]}
                )
    if not rows:
        raise InputError(f"no customer has the id or identifier {query!r}")
    return rows[0]


def _audience_row(
    engine: Engine, dep: Deployment, spec: Any, customer_id: str, timeout_s: float, now: datetime | None
) -> tuple[dict[str, Any] | None, str]:
    from baton.audience.check import sample_interval
    from baton.audience.load import audience_context
    from baton.audience.render import render_audience_sql

    start, end, cycle_at = sample_interval(spec, dep.policy, now)
    interval = f"{start:%Y-%m-%d %H:%M}–{end:%Y-%m-%d %H:%M} UTC"
    try:
        rendered = render_audience_sql(spec.audience.sql, audience_context(spec, start, end, cycle_at))
        with transaction(engine) as tx:
            tx.execute("set transaction read only")
            tx.execute(
                "select set_config('statement_timeout', %(t)s, true)", {"t": f"{int(timeout_s * 1000)}ms"}
            )
            rows = admin.dict_rows(
                tx,
                f"select * from ({rendered.sql}) q where q.customer_id = %(baton_preview_customer)s limit 1",
                {**rendered.params, "baton_preview_customer": customer_id},
            )
    except AudienceError as exc:
        return None, f"the audience query cannot be rendered ({exc}); the customer's own data is shown"
    except Exception as exc:  # the campaign author's SQL failed or timed out
        message = str(getattr(getattr(exc, "diag", None), "message_primary", None) or exc).strip()
        if "statement timeout" in message:
            message = f"did not finish within {timeout_s:g} s"
        return None, f"the audience query {message}; the customer's own data is shown, with an empty payload"
    if not rows:
        return None, (
            f"the audience does not include {customer_id} for its latest interval ({interval}): the customer's"
            " own data is shown, with an empty payload"
        )
    return rows[0], f"the audience query's row for {customer_id} in its latest interval ({interval})"


def _latest_candidate(
    engine: Engine, campaign_id: str, customer_id: str
) -> tuple[dict[str, Any] | None, str]:
    """The customer's latest candidate row of the campaign that a cycle decided (its payload), found
    cycle by cycle from the newest (one index probe each, stopping at the first)."""
    with transaction(engine) as tx:
        tx.execute("set transaction read only")
        tx.execute("select set_config('statement_timeout', '5s', true)")
        rows = admin.dict_rows(
            tx,
            "select c.cycle_at, k.payload from cycles c cross join lateral (select d.batch_id, d.seq from"
            " cycle_decisions d where d.cycle_at = c.cycle_at and d.customer_id = %(c)s and d.campaign_id = %(k)s"
            " limit 1) d join candidates k on k.batch_id = d.batch_id and k.seq = d.seq"
            " order by c.cycle_at desc limit 1",
            {"c": customer_id, "k": campaign_id},
        )
    if not rows:
        return None, ""
    at = rows[0]["cycle_at"]
    return dict(rows[0]["payload"] or {}), (
        f"the customer's latest candidate row of the campaign (decided by the cycle of {at:%Y-%m-%d %H:%M} UTC;"
        " the audience does not include them right now)"
    )


def preview(
    engine: Engine,
    dep: Deployment,
    campaign_id: str,
    customer: str | None = None,
    *,
    timeout_s: float = 10.0,
    now: datetime | None = None,
) -> Preview:
    """Every channel of *campaign_id* rendered for *customer* (a customer id or any identifier; default:
    someone the campaign proposed lately).  InputError for an unknown campaign or customer."""
    spec = _campaign(dep, campaign_id)
    query = (customer or "").strip() or _default_customer(engine, campaign_id)
    if not query:
        raise InputError("the store has no customers to preview the campaign for: seed or load some first")
    row = _customer(engine, query)
    cid = str(row["customer_id"])
    audience, note = _audience_row(engine, dep, spec, cid, timeout_s, now)
    source = "audience"
    if audience is None:
        audience, earlier = _latest_candidate(engine, campaign_id, cid)
        if audience is not None:
            note, source = earlier, "candidate"
        else:
            source = "attributes"
    payload = {k: v for k, v in (audience or {}).items() if k not in RESERVED}
    unsub = PREVIEW_UNSUBSCRIBE if spec.category.value == "marketing" else None
    context = message_context(row, payload, unsubscribe_url=unsub)
    out = Preview(campaign_id, cid, source, note, payload)
    for ch in spec.channels:
        block = spec.message.block(ch)
        if block is None:
            out.channels.append(
                ChannelPreview(ch.value, error=f"the campaign has no message.{ch.value} block")
            )
            continue
        try:
            content = render_message(ch.value, block, context, dep.folder / "templates")
        except TerminalDeliveryError as exc:
            out.channels.append(ChannelPreview(ch.value, error=str(exc)))
            continue
        out.channels.append(ChannelPreview(ch.value, content=content))
    return out


# ------------------------------------------------------------------------------------------ test sends


@dataclass
class SendTestResult:
    """What a test send did."""

    test_send_id: int
    channel: str
    sent: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)

    @property
    def result(self) -> str:
        """``sent``, ``failed`` or ``partly sent``."""
        if not self.failed:
            return "sent"
        return "partly sent" if self.sent else "failed"


def allow_list(channel: str, environ: dict[str, str] | None = None) -> list[str]:
    """The allow-list of *channel*'s test sends (from its environment variable, comma-separated)."""
    env = os.environ if environ is None else environ
    return [v.strip() for v in env.get(ALLOW_ENV[channel], "").split(",") if v.strip()]


def allowed(channel: str, address: str, allow: list[str]) -> bool:
    """Whether *address* is on the allow-list *allow* of *channel* (email: its domain or a subdomain of one
    listed; sms: the same phone number, punctuation aside; push: the same token)."""
    if channel == "email":
        m = _EMAIL.match(address)
        if m is None:
            return False
        domain = m.group(1).lower()
        return any(
            domain == d.lower().lstrip("@") or domain.endswith("." + d.lower().lstrip("@")) for d in allow
        )
    if channel == "sms":
        phone = normalize_phone(address)
        return phone is not None and phone in {normalize_phone(a) for a in allow}
    return address in allow


def _check_addresses(channel: str, addresses: list[str]) -> list[str]:
    cleaned = []
    for a in addresses:
        for part in (p.strip() for p in re.split(r"[,;\n]+", a or "")):
            if part and part not in cleaned:
                cleaned.append(part)
    if channel not in {c.value for c in Channel}:
        raise InputError(f"unknown channel {channel!r}: test sends go to email, sms or push")
    if channel not in SENDABLE:
        raise InputError(
            f"test sends go to email, sms or push only: {channel} writes files for another system (see the preview)"
        )
    if not cleaned:
        raise InputError("give at least one address to send the test to")
    if len(cleaned) > MAX_ADDRESSES:
        raise InputError(f"a test send goes to at most {MAX_ADDRESSES} addresses ({len(cleaned)} given)")
    allow = allow_list(channel)
    if not allow:
        raise InputError(
            f"test sends on {channel} are off: set {ALLOW_ENV[channel]} to the internal "
            + {"email": "email domains (e.g. example.com)", "sms": "phone numbers", "push": "push tokens"}[
                channel
            ]
            + " that may receive tests"
        )
    refused = [a for a in cleaned if not allowed(channel, a, allow)]
    if refused:
        raise InputError(
            f"not on the test-send allow-list ({ALLOW_ENV[channel]}={','.join(allow)}): {', '.join(refused)}"
        )
    return cleaned


def _record(
    engine: Engine, who: str, campaign_id: str, channel: str, addresses: list[str], result: str, detail: str
) -> int:
    with transaction(engine) as tx:
        row = tx.execute(
            "insert into test_sends (requested_by, campaign_id, channel, addresses, result, detail)"
            " values (%(w)s, %(c)s, %(ch)s, %(a)s, %(r)s, %(d)s) returning test_send_id",
            {
                "w": who,
                "c": campaign_id,
                "ch": channel,
                "a": addresses[:MAX_ADDRESSES],
                "r": result,
                "d": detail,
            },
        ).fetchone()
    return int(row[0])


def _test_content(channel: str, content: dict[str, str]) -> dict[str, str]:
    out = {k: v for k, v in content.items() if k != "unsubscribe_url"}  # no List-Unsubscribe on a test
    key = {"email": "subject", "sms": "text", "push": "title"}[channel]
    out[key] = "[TEST] " + out.get(key, "")
    out["test"] = "1"
    return out


def send_test(
    engine: Engine,
    dep: Deployment,
    shown: Preview,
    channel: str,
    addresses: list[str],
    *,
    requested_by: str,
    connection: Callable[[str], ConnectionInfo],
) -> SendTestResult:
    """Send *shown*'s *channel* message, marked as a test, to *addresses* (internal only, see the module).

    InputError (recorded as ``refused``) when the channel or an address is not allowed; ConfigError when
    the channel's connection is missing or wrong."""
    from baton.delivery.channels import adapter_class, adapter_for

    channel = str(channel)
    try:
        cleaned = _check_addresses(channel, addresses)
        rendered = shown.channel(channel)
        if rendered is None or rendered.content is None:
            raise InputError(
                f"campaign {shown.campaign_id} has no {channel} message to send"
                + (f": {rendered.error}" if rendered is not None and rendered.error else "")
            )
    except InputError as exc:
        _record(
            engine,
            requested_by,
            shown.campaign_id,
            channel,
            [a for a in addresses if a][:MAX_ADDRESSES],
            "refused",
            str(exc),
        )
        raise
    conn = connection(dep.policy.channel(Channel(channel)).connection)
    if adapter_class(channel, conn).needs_export_path:  # pragma: no cover - SENDABLE channels need none
        raise ConfigError(f"{channel} cannot send tests")
    test_id = _record(engine, requested_by, shown.campaign_id, channel, cleaned, "sending", "")
    content = _test_content(channel, rendered.content)
    field_name = {"email": "email", "sms": "phone", "push": "push_token"}[channel]
    messages = [
        OutboundMessage(
            message_id=-(test_id * 100 + i),  # no real message has a negative id
            channel=channel,
            campaign_id=shown.campaign_id,
            recipient=Recipient(customer_id=f"test-send-{test_id}", **{field_name: address}),
            content=content,
        )
        for i, address in enumerate(cleaned, start=1)
    ]
    result = SendTestResult(test_id, channel)
    by_id = {m.message_id: a for m, a in zip(messages, cleaned, strict=True)}
    try:
        with adapter_for(channel, conn) as adapter:
            for msg, outcome in adapter.send_batch(messages):
                if isinstance(outcome, SendResult):
                    result.sent.append(by_id[msg.message_id])
                else:
                    result.failed[by_id[msg.message_id]] = str(outcome)
    except BatonError as exc:
        for a in cleaned:
            if a not in result.sent:
                result.failed.setdefault(a, str(exc))
    detail = "; ".join([f"sent to {', '.join(result.sent)}"] if result.sent else [])
    if result.failed:
        detail = "; ".join(filter(None, [detail, *(f"{a}: {why}" for a, why in result.failed.items())]))
    with transaction(engine) as tx:
        tx.execute(
            "update test_sends set result = %(r)s, detail = %(d)s where test_send_id = %(id)s",
            {"r": result.result, "d": detail[:2000], "id": test_id},
        )
    log.info("test send %s of %s/%s by %s: %s", test_id, shown.campaign_id, channel, requested_by, detail)
    return result
