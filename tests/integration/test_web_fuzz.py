"""Fuzzing the web app's endpoints: no request, however odd, gets a 5xx or a traceback, and nothing is
stored or sent on input that is refused.

Over the app's own route table (so that a route added later is fuzzed too):

- every GET route (one test per route), as an authenticated user: path parameters of every class
  (real ids, ISO-ish times with impossible fields and extreme years and offsets, numbers, unicode,
  ``..``, ``%00``, NUL, slashes, very long text) and query strings of the parameters the pages read
  (found in the app's source) and unknown ones, with values of every class.  The answer is never a
  5xx, never a traceback, and a 4xx says why (the HTML problem page, or JSON with a ``detail``);
- the test send (POST): random campaigns, channels, addresses (allow-listed, not, malformed, too
  many), customers, extra fields, origins and users.  A send goes only to allow-listed addresses on
  one of the campaign's channels, and only when the user may run the campaign's DAG; a refusal sends
  nothing and stores at most the one ``refused`` row ``send_test`` records by design (none when the
  request is refused before it: origin, permission, form, NUL, campaign, customer); a request that
  should go out does (unless the channel's message does not render for that customer).  Real servers
  on loopback receive what is sent (an SMTP sink and the SMS/push provider emulator);
- the public unsubscribe routes (GET and POST): random text, tampered genuine tokens (a character
  flipped, cut, extended, parts swapped or mixed, signed with another secret) and tokens signed with
  the secret over malformed claims are refused with a 4xx and change nothing in consents,
  suppressions or message_events; a genuine token (and only a spelling of one: same payload, same
  signature bytes) is accepted and records its opt-out;
- anonymous requests (GET and POST) to random paths under ``/marketing``: 401 where a route matches,
  404/405 (or the router's trailing-slash redirect) where none does — never data, never a 5xx, never
  a test send.

The store is small (150 customers, last Monday's cycles) and the app is the real one with a stand-in
for Airflow's login (as in test_web_pages.py).  Example counts come from a settings profile:
``fuzz-quick`` (the default, derandomized so that ``make test`` is reproducible) or ``fuzz``
(``HYPOTHESIS_PROFILE=fuzz``, ``make fuzz``: about ten times as many random examples).  The tests at
the end are the cases the fuzzing found (each was a 500), kept as plain regression tests.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import inspect
import json
import re
from collections.abc import Iterator
from datetime import timedelta, timezone
from typing import Any
from urllib.parse import quote, unquote, urlencode, urlsplit

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI, HTTPException, Request
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from hypothesis import event, given, settings
from hypothesis import strategies as st
from starlette.routing import Route

from baton.delivery.base import ConnectionInfo
from baton.delivery.unsubscribe import make_token
from baton.web import app as web_app
from baton.web import preview as pv
from baton.web.app import WebServices, WebUser, create_app
from baton.web.deployment import deployment
from baton_dev.sinks import ProviderEmulator, SmtpSink
from conftest import _fresh_database
from fuzz_support import fuzz_settings
from web_data import DAGS, WebStore, build

pytestmark = [pytest.mark.integration, pytest.mark.fuzz]

SECRET = "web-fuzz-unsubscribe-secret-" + "q" * 20
DOMAIN = "example.com"
NUMBER = "+15550100199"
DEVICE = "qa-device-token-1"
ORIGIN = "http://testserver"

# --------------------------------------------------------------------------- profiles

EXAMPLES = {"get": (30, 400), "send": (100, 1000), "unsubscribe": (120, 2000), "anonymous": (100, 1500)}


def _settings(kind: str) -> settings:
    return fuzz_settings(*EXAMPLES[kind])


# --------------------------------------------------------------------------- the app


async def _auth(request: Request) -> WebUser:
    """``x-test-user``: ``ops`` may run every campaign's DAG, ``cart`` only abandoned_cart's, ``viewer``
    none; ``nobody`` may not see the view (403); no header: not logged in (401)."""
    name = request.headers.get("x-test-user")
    if not name:
        raise HTTPException(401, "Not authenticated")
    if name == "nobody":
        raise HTTPException(403, "nobody may not use the Marketing view")
    may = {"ops": lambda c: True, "cart": lambda c: c == "abandoned_cart"}.get(name, lambda c: False)
    return WebUser(name, may_run_campaign=may)


def may_run(user: str, campaign_id: str) -> bool:
    return user == "ops" or (user == "cart" and campaign_id == "abandoned_cart")


class World:
    """The module's store, app and servers, and the real ids the examples draw from."""

    store: WebStore
    app: FastAPI
    client: TestClient
    smtp: SmtpSink
    provider: ProviderEmulator
    campaigns: dict[str, list[str]]  # id -> channels
    customers: list[str]
    emails: list[str]
    tokens: list[str]  # genuine tokens of real messages
    cycles: list[str]
    tags: list[str]
    owners: list[str]

    def __init__(self, **parts: Any) -> None:
        self.__dict__.update(parts)

    def __repr__(self) -> str:  # short in hypothesis's reports
        return "World(...)"


@pytest.fixture(scope="module")
def store() -> Iterator[WebStore]:
    for engine in _fresh_database("baton_webfuzz"):
        yield build(engine, customers=150)


@pytest.fixture(scope="module")
def world(store: WebStore, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("webfuzz")
    with (
        pytest.MonkeyPatch.context() as mp,
        SmtpSink("127.0.0.1", 0, tmp / "maildir") as smtp,
        ProviderEmulator("127.0.0.1", 0, tmp / "provider.jsonl", seed=7) as provider,
    ):
        mp.setenv("BATON_UNSUBSCRIBE_SECRET", SECRET)
        mp.setenv("BATON_TEST_SEND_DOMAINS", DOMAIN)
        mp.setenv("BATON_TEST_SEND_NUMBERS", NUMBER)
        mp.setenv("BATON_TEST_SEND_TOKENS", DEVICE)

        def connection(conn_id: str) -> ConnectionInfo:
            if conn_id == "baton_smtp":
                return ConnectionInfo(
                    conn_id, "smtp", host="127.0.0.1", port=smtp.port, extra={"from": "shop@example.com"}
                )
            if conn_id == "baton_sms":
                return provider.sms_connection()
            return provider.push_connection()

        app = create_app(
            WebServices(
                authenticate=_auth,
                engine=lambda: store.engine,
                dags_folder=lambda: DAGS,
                connection=connection,
            )
        )
        dep = deployment(DAGS)
        with store.engine.connect() as conn:
            customers = [r[0] for r in conn.execute(sa.text("select customer_id from customers order by 1"))]
            emails = [
                r[0]
                for r in conn.execute(sa.text("select email from customers where email is not null limit 20"))
            ]
            sent = conn.execute(
                sa.text(
                    "select message_id, customer_id, channel, campaign_id from messages order by 1 limit 12"
                )
            ).all()
        tokens = [
            make_token(SECRET.encode(), mid, cid, ch, dep.campaigns[camp].topic or "")
            for mid, cid, ch, camp in sent
        ]
        yield World(
            store=store,
            app=app,
            client=TestClient(_decoded_once(app)),
            smtp=smtp,
            provider=provider,
            campaigns={cid: [ch.value for ch in c.channels] for cid, c in dep.campaigns.items()},
            customers=customers[:30],
            emails=emails,
            tokens=tokens,
            cycles=[t.strftime("%Y-%m-%dT%H:%M:%SZ") for t in store.cycles],
            tags=sorted({t for c in dep.campaigns.values() for t in c.tags}),
            owners=sorted({c.owner for c in dep.campaigns.values() if c.owner}),
        )


def _decoded_once(app: FastAPI) -> Any:
    """The app as a real server (uvicorn) hands it requests: the path percent-decoded once.  Starlette's
    TestClient decodes it twice (``%2500`` arrives as a NUL), which would blur what a URL can reach."""

    async def asgi(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            scope = {**scope, "path": unquote(scope["raw_path"].decode("ascii"))}
        await app(scope, receive, send)

    return asgi


def count(store: WebStore, table: str) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(sa.text(f"select count(*) from {table}")).scalar_one())


def _path(resp: httpx.Response) -> str:
    """The path of the request as the server read it (percent-decoded)."""
    return unquote(resp.request.url.raw_path.decode("ascii").split("?")[0])


def _routes(app: FastAPI, method: str) -> list[Route]:
    return [r for r in app.routes if isinstance(r, Route) and method in (r.methods or set())]


def _params(path: str) -> list[str]:
    return re.findall(r"\{(\w+)(?::\w+)?\}", path)


def _message(resp: httpx.Response) -> str:
    """The error message of a 4xx (the problem page's, or the JSON detail)."""
    if resp.headers.get("content-type", "").startswith("application/json"):
        return str(resp.json().get("detail", ""))
    found = re.search(r'id="error">(.*?)</p>', resp.text, re.S)
    return html.unescape(found.group(1)) if found else ""


def assert_answer_is_clean(resp: httpx.Response, what: object) -> None:
    """Never a 5xx, never a traceback; a 4xx says why."""
    assert resp.status_code < 500, (what, resp.status_code, resp.text[:500])
    assert "Traceback" not in resp.text and 'File "' not in resp.text, (what, resp.text[:500])
    if 400 <= resp.status_code < 500:
        if resp.headers.get("content-type", "").startswith("application/json"):
            detail = resp.json().get("detail")
            assert detail, (what, resp.text[:500])
        else:
            assert 'id="error"' in resp.text or "log in to Airflow" in resp.text, (
                what,
                resp.text[:500],
            )


# --------------------------------------------------------------------------- raw material

SPECIAL = [
    "",
    " ",
    ".",
    "..",
    "../..",
    "%00",
    "\x00",
    "a\x00b",
    "%2e%2e",
    "a/b",
    "/",
    "?",
    "#",
    "%",
    "%zz",
    "é€𝄞 ünïcödé",
    "\u202etxt.exe",
    "\u2028",
    "\ufeff",
    "' or 1=1 --",
    '"; drop table customers; --',
    "<script>alert(1)</script>",
    "{{ 7*7 }}",
    "${jndi:ldap://x}",
    "NaN",
    "inf",
    "-inf",
    "1e309",
    "0x10",
    "1_000",
    "٣",
    "9" * 5000,
    "x" * 10_000,
    "%FF",
    "%ED%A0%80",
    "%C0%80",
    "null",
    "true",
    "[]",
    "{}",
]
NUMBERS = st.one_of(
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
    st.sampled_from(["0", "-0", "-1", "1", "62", "63", "2147483648", "9223372036854775808"]),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
)
TEXT = st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=40)
ODD_TEXT = st.text(alphabet="a\x00é𝄞 /.%?#&=+:;,'\"<>\\\t\n", max_size=8)
EXTREME_TIMES = [
    "0001-01-01",
    "0001-01-01T00:00:00Z",
    "0001-01-01T00:00:00+01:00",
    "9999-12-31",
    "9999-12-31T23:59:59Z",
    "9999-12-31T23:59:59-01:00",
    "1969-12-31T23:59:59Z",
    "1970-01-01",
    "8999-12-31",
    "2026-02-29",
    "2024-02-29T24:00:00Z",
    "2026-03-02T15:00:00+25:00",
    "2026-03-02T15:00:00.123456789Z",
    "2026-03-02T15:00:00 01:00",
    "2026-W10-1",
    "20260302T150000Z",
    "2026-03-02T15",
    "2026-03-02T",
    "T15:00:00",
]


@st.composite
def timestamps(draw: st.DrawFn) -> str:
    """ISO-ish times: real ones in any timezone (and spelling), and ones with impossible fields and
    extreme years and offsets."""
    kind = draw(st.sampled_from(["real", "fields", "extreme", "extreme"]))
    if kind == "extreme":
        return draw(st.sampled_from(EXTREME_TIMES))
    if kind == "real":
        offset = draw(st.integers(min_value=-23 * 60 - 59, max_value=23 * 60 + 59))
        t = draw(st.datetimes(timezones=st.just(timezone(timedelta(minutes=offset)))))
        form = draw(st.sampled_from(["iso", "z", "space", "date", "naive"]))
        if form == "date":
            return t.date().isoformat()
        if form == "naive":
            return t.replace(tzinfo=None).isoformat()
        if form == "z":
            return t.replace(tzinfo=None).isoformat() + "Z"
        if form == "space":
            return t.isoformat().replace("+", " ")
        return t.isoformat()
    y = draw(st.sampled_from([0, 1, 2, 1969, 1970, 2026, 8999, 9000, 9998, 9999, 10000]))
    mo, d = draw(st.integers(0, 13)), draw(st.integers(0, 32))
    h, mi, s = draw(st.integers(0, 25)), draw(st.integers(0, 61)), draw(st.integers(0, 61))
    tz = draw(
        st.sampled_from(["", "Z", "+00:00", "+23:59", "-23:59", "+24:00", "+01:00", "-01:00", " 01:00"])
    )
    sep = draw(st.sampled_from(["T", " ", "t", ""]))
    if draw(st.booleans()):
        return f"{y:04d}-{mo:02d}-{d:02d}"
    return f"{y:04d}-{mo:02d}-{d:02d}{sep}{h:02d}:{mi:02d}:{s:02d}{tz}"


def values(world: World, name: str = "") -> st.SearchStrategy[str]:
    """A value of every class: real ids and filters, times, numbers, special text (NUL, dots, slashes,
    percent signs, markup, very long), random unicode — more often the class *name* suggests (a
    parameter's name: ``cycle``, ``days``, ``customer_id``…)."""
    real = st.sampled_from(
        [
            *world.campaigns,
            *world.customers[:10],
            *world.emails[:5],
            *world.cycles,
            *world.tags,
            *world.owners,
        ]
        + ["email", "sms", "push", "audience", "direct_mail"]
    )
    generic = st.one_of(real, timestamps(), NUMBERS, st.sampled_from(SPECIAL), ODD_TEXT, TEXT)
    hinted: list[st.SearchStrategy[str]] = []
    if re.search(r"cycle|start|day$|until|from|to$|sent", name):
        hinted.append(st.one_of(timestamps(), timestamps(), st.sampled_from(world.cycles)))
    if re.search(r"days|page|offset|limit|zoom", name):
        hinted.append(NUMBERS)
    if "campaign" in name:
        hinted.append(st.sampled_from(sorted(world.campaigns)))
    if re.search(r"customer|^q$", name):
        hinted.append(st.sampled_from(world.customers + world.emails))
    if name in ("channel", "tag", "owner"):
        hinted.append(st.sampled_from(["email", "sms", "push", *world.tags, *world.owners]))
    if name == "token":
        hinted.append(st.sampled_from(world.tokens))
    if not hinted:
        return generic
    return st.one_of(*hinted, generic)


def encode(value: str, raw: bool) -> str:
    """A path segment: percent-encoded (slashes too), or raw (``/``, ``%`` and ``.`` left as they are)."""
    return quote(value, safe="/%" if raw else "")


QUERY_PARAMS = sorted(
    set(re.findall(r"""(?:query_params|\bq)\.get\(["'](\w+)["']""", inspect.getsource(web_app)))
    | {"start", "days", "day", "channel", "tag", "owner", "until", "sent"}
)
"""The query parameters the pages read from the request (every ``query_params.get("name")`` in the app's
source, so a new one is fuzzed too; the known ones in case the source changes its style); the
endpoints' own (``q``, ``customer``) come from the route."""
UNKNOWN_PARAMS = ["cycle", "from", "to", "page", "offset", "limit", "zoom", "q[]", "days[0]"]


# --------------------------------------------------------------------------- 1. GET routes, logged in


def _route_table() -> list[Route]:
    """The app's routes (its table does not depend on the services: these are never called)."""

    def unused() -> Any:
        raise AssertionError("the route table's app is never asked for anything")

    return list(create_app(WebServices(authenticate=_auth, engine=unused, dags_folder=unused)).routes)


GET_ROUTES = sorted(
    (r.path for r in _route_table() if isinstance(r, Route) and "GET" in (r.methods or set())),
)


@st.composite
def get_requests(draw: st.DrawFn, world: World, route: APIRoute) -> tuple[str, dict[str, str]]:
    raw = draw(st.booleans())
    path = route.path
    for name in _params(route.path):
        path = path.replace("{" + name + "}", encode(draw(values(world, name)), raw), 1)
    known = sorted({*QUERY_PARAMS, *(p.name for p in route.dependant.query_params)})
    param = st.sampled_from(known).flatmap(lambda k: st.tuples(st.just(k), values(world, k)))
    unknown = st.tuples(st.sampled_from(UNKNOWN_PARAMS) | TEXT, values(world))
    pairs = draw(st.lists(st.one_of(param, param, param, unknown), max_size=4))
    query = urlencode(pairs, quote_via=quote)
    headers = {
        "x-test-user": draw(st.sampled_from(["ops", "viewer"])),
        "accept": draw(st.sampled_from(["text/html", "application/json", "*/*"])),
    }
    return path + ("?" + query if query else ""), headers


def test_every_get_route_is_fuzzed() -> None:
    """The route table the fuzzing runs over holds the pages, their JSON and unsubscribe."""
    assert {
        "/marketing",
        "/marketing/",
        "/marketing/api/calendar",
        "/marketing/cycles/{cycle}",
        "/marketing/customers",
        "/marketing/customers/{customer_id}",
        "/marketing/campaigns/{campaign_id}",
        "/marketing/api/campaigns/{campaign_id}/audience-count",
        "/marketing/api/campaigns/{campaign_id}/preview",
        "/unsubscribe/{token}",
    } <= set(GET_ROUTES)


@pytest.mark.parametrize("path", GET_ROUTES)
@_settings("get")
@given(data=st.data())
def test_get_routes_never_fail_badly(world: World, path: str, data: st.DataObject) -> None:
    [route] = [
        r for r in world.app.routes if isinstance(r, APIRoute) and r.path == path and "GET" in r.methods
    ]
    url, headers = data.draw(get_requests(world, route))
    resp = world.client.get(url, headers=headers, follow_redirects=False)
    event(f"{resp.status_code}")
    assert_answer_is_clean(resp, url)
    if resp.status_code in (303, 307):  # to a page of the view, or the router's trailing-slash redirect
        target = unquote(urlsplit(resp.headers["location"]).path)
        slashes = (_path(resp).rstrip("/"), _path(resp) + "/")
        assert target.startswith("/marketing/") or target in slashes, resp.headers["location"]
    if resp.status_code == 200 and "/api/" in path:
        assert isinstance(resp.json(), dict)


# --------------------------------------------------------------------------- 2. test sends

GOOD = {
    "email": ["qa@example.com", "Lead@QA.example.com", "ops+tag@sub.example.com", "zoë@example.com"],
    "sms": [NUMBER, "+1 (555) 010-0199"],
    "push": [DEVICE],
}
BAD = [
    "someone@gmail.com",
    "qa@example.com.evil.net",
    "qa@badexample.com",
    "qa@example",
    "qa@@example.com",
    "<qa@example.com>",
    "qa@example.com\x00",
    "\x00",
    "+15550100198",
    "not a token",
    "qa@exämple.com",
]


def allowed(channel: str, address: str) -> bool:
    """Independently of the app: is *address* internal for *channel* (see GOOD)?"""
    if channel == "email":  # any mailbox at example.com or a subdomain
        return bool(re.fullmatch(r"[^\s@<>()\[\],;:\"]+@([A-Za-z0-9-]+\.)*example\.com", address, re.I))
    if channel == "sms":
        return re.sub(r"[^\d+]", "", address) == NUMBER
    return address == DEVICE


def _percent(draw: st.DrawFn, n: int) -> bool:
    """True in about *n* percent of the examples."""
    return draw(st.integers(0, 99)) < n


@st.composite
def send_forms(draw: st.DrawFn, world: World) -> dict[str, Any]:
    """A test-send request: most of the time close to a valid one (a campaign, one of its channels,
    allow-listed addresses, a customer or none, a permitted user, this origin), with one thing or
    several wrong in every way the form can be."""
    real = _percent(draw, 85)
    campaign = draw(st.sampled_from(sorted(world.campaigns)) if real else values(world, "campaign_id"))
    channels = world.campaigns.get(campaign, [])
    if channels and _percent(draw, 70):
        channel = draw(st.sampled_from(channels))
    else:
        channel = draw(st.sampled_from(["email", "sms", "push", "audience", "direct_mail"]) | values(world))
    pool = GOOD.get(channel, GOOD["email"])
    kind = draw(st.sampled_from(["good", "good", "good", "mixed", "many", "junk", "none"]))
    if kind == "good":
        addresses = draw(st.lists(st.sampled_from(pool), min_size=1, max_size=3))
    elif kind == "mixed":
        addresses = draw(st.lists(st.sampled_from(pool) | st.sampled_from(BAD), min_size=1, max_size=5))
    elif kind == "many":
        n = draw(st.integers(pv.MAX_ADDRESSES - 1, pv.MAX_ADDRESSES + 5))
        addresses = [f"qa{i}@example.com" if "@" in pool[0] else pool[0] + " " * i for i in range(n)]
    elif kind == "junk":
        addresses = draw(st.lists(values(world) | st.sampled_from(BAD), max_size=4))
    else:
        addresses = []
    sep = draw(st.sampled_from([", ", ";", "\n", ",,", " ; "]))
    form: dict[str, Any] = {}
    if _percent(draw, 95):
        form["channel"] = channel
    if addresses or draw(st.booleans()):
        form["addresses"] = sep.join(addresses)
    customer = draw(
        st.sampled_from(["", "", *world.customers, *world.emails]) if _percent(draw, 80) else values(world)
    )
    if customer or draw(st.booleans()):
        form["customer"] = customer
    if _percent(draw, 10):
        form[draw(st.sampled_from(["extra", "channel[]", "addresses[]"]) | TEXT)] = draw(values(world))
    return {
        "campaign": campaign,
        "raw": draw(st.booleans()),
        "form": form,
        "user": "ops" if _percent(draw, 85) else draw(st.sampled_from(["cart", "viewer"])),
        "origin": ORIGIN if _percent(draw, 90) else draw(st.sampled_from(["https://evil.example", None])),
        "accept": draw(st.sampled_from(["text/html", "application/json"])),
    }


def _drain(world: World) -> list[tuple[str, str]]:
    """(channel, address) of everything the servers received since the last drain (and forget it)."""
    mails = [("email", str(m["To"])) for m in world.smtp.messages()]
    for box in ("new", "cur"):
        for f in (world.smtp.maildir_path / box).glob("*"):
            f.unlink()
    texts = [(kind, str(m["to"])) for kind in ("sms", "push") for m in world.provider.messages(kind)]
    world.provider.reset()
    return sorted(mails + texts)


def _test_sends_count_max(store: WebStore) -> int:
    with store.engine.connect() as conn:
        return int(
            conn.execute(sa.text("select coalesce(max(test_send_id), 0) from test_sends")).scalar_one()
        )


def _test_sends_after(store: WebStore, last: int) -> list[tuple[Any, ...]]:
    with store.engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "select test_send_id, requested_by, campaign_id, channel, addresses, result from test_sends"
                " where test_send_id > :n order by 1"
            ),
            {"n": last},
        ).all()
    return [tuple(r) for r in rows]


def _split(addresses: str) -> list[str]:
    out: list[str] = []
    for part in (p.strip() for p in re.split(r"[,;\n]+", addresses)):
        if part and part not in out:
            out.append(part)
    return out


@_settings("send")
@given(data=st.data())
def test_test_sends_never_fail_badly_and_refusals_send_nothing(world: World, data: st.DataObject) -> None:
    _check_test_send(world, data.draw(send_forms(world)))


def _check_test_send(world: World, case: dict[str, Any]) -> None:
    store = world.store
    last = int(_test_sends_count_max(store))
    _drain(world)
    headers = {"x-test-user": case["user"], "accept": case["accept"]}
    if case["origin"]:
        headers["origin"] = case["origin"]
    url = f"/marketing/campaigns/{encode(case['campaign'], case['raw'])}/test-send"
    resp = world.client.post(url, data=case["form"], headers=headers, follow_redirects=False)
    event(f"{resp.status_code} {_message(resp)[:45]}")
    assert_answer_is_clean(resp, case)
    rows = _test_sends_after(store, last)
    new = _drain(world)
    form = case["form"]
    channel, addresses = str(form.get("channel", "")), _split(str(form.get("addresses", "")))
    if resp.status_code == 303:
        # sent: as the permitted user, on one of the campaign's channels, to internal addresses only
        assert case["origin"] == ORIGIN and may_run(case["user"], case["campaign"]), case
        assert channel in world.campaigns[case["campaign"]] and channel in pv.SENDABLE
        assert 1 <= len(addresses) <= pv.MAX_ADDRESSES and all(allowed(channel, a) for a in addresses), case
        [row] = rows
        assert row[1:5] == (case["user"], case["campaign"], channel, addresses), row
        assert row[5] in ("sent", "failed", "partly sent")
        assert f"sent={row[0]}%3A" in resp.headers["location"]
        if row[5] == "sent":
            assert len(new) == len(addresses), (new, addresses)
        assert {c for c, _ in new} <= {channel} and all(allowed(channel, to) for _, to in new), new
        return
    # refused: nothing sent; at most the one 'refused' row send_test records (405: the URL normalised
    # to no POST route, e.g. the campaign '.')
    assert resp.status_code in (400, 403, 404, 405, 422), (resp.status_code, resp.text[:300])
    assert new == [], new
    assert all(r[5] == "refused" for r in rows) and len(rows) <= 1, rows
    if resp.status_code in (403, 422) or not may_run(case["user"], case["campaign"]):
        assert rows == [], (resp.status_code, rows)
    # a request that should have gone out did
    valid = (
        case["origin"] == ORIGIN
        and may_run(case["user"], case["campaign"])
        and case["campaign"] in world.campaigns
        and channel in world.campaigns[case["campaign"]]
        and channel in pv.SENDABLE
        and 1 <= len(addresses) <= pv.MAX_ADDRESSES
        and all(allowed(channel, a) for a in addresses)
        and str(form.get("customer", "")).strip() in ["", *world.customers]
    )
    if valid:
        shown = pv.preview(store.engine, deployment(DAGS), case["campaign"], form.get("customer") or None)
        rendered = shown.channel(channel)
        assert rendered is None or rendered.content is None, (case, resp.status_code, resp.text[:500])


def test_a_valid_test_send_goes_out(world: World) -> None:
    """The oracle above is not vacuous: a permitted, allow-listed send is sent and recorded."""
    _drain(world)
    resp = world.client.post(
        "/marketing/campaigns/weekly_newsletter/test-send",
        data={"channel": "email", "addresses": "qa@example.com; lead@qa.example.com"},
        headers={"x-test-user": "ops", "origin": ORIGIN, "accept": "text/html"},
        follow_redirects=False,
    )
    assert resp.status_code == 303, resp.text[:500]
    assert _drain(world) == [
        ("email", "lead@qa.example.com"),
        ("email", "qa@example.com"),
    ]


# --------------------------------------------------------------------------- 3. unsubscribe

B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _signed(secret: bytes, body: bytes) -> str:
    """A token over any *body*, signed as the app signs (to reach the checks behind the signature)."""
    payload = _b64(body)
    sig = hmac.new(secret, b"baton-unsubscribe-v1:" + payload.encode("ascii"), hashlib.sha256).digest()
    return f"{payload}.{_b64(sig)}"


def _decode(part: str) -> bytes | None:
    try:
        return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
    except ValueError:
        return None


@st.composite
def tampered(draw: st.DrawFn, world: World) -> str:
    token = draw(st.sampled_from(world.tokens))
    other = draw(st.sampled_from(world.tokens))
    how = draw(st.sampled_from(["flip", "cut", "extend", "swap", "mix", "case", "dots", "insert", "secret"]))
    i = draw(st.integers(0, len(token) - 1))
    if how == "flip":
        return token[:i] + draw(st.sampled_from(B64 + ".=+/%~ \x00é")) + token[i + 1 :]
    if how == "cut":
        return token[:i]
    if how == "extend":
        return token + draw(st.text(alphabet=B64 + ".=", min_size=1, max_size=8))
    if how == "insert":
        return token[:i] + draw(st.text(alphabet=B64, min_size=1, max_size=3)) + token[i:]
    if how == "swap":
        payload, sig = token.split(".")
        return f"{sig}.{payload}"
    if how == "mix":
        return token.split(".")[0] + "." + other.split(".")[1]
    if how == "case":
        return token.swapcase()
    if how == "dots":
        return token.replace(".", draw(st.sampled_from(["", "..", ".x.", "%2E"])))
    claim = json.loads(_decode(token.split(".")[0]) or b"{}")
    return make_token(b"another-secret-of-sufficient-length", claim["m"], claim["c"], claim["ch"], claim["t"])


MALFORMED_CLAIMS = st.one_of(
    st.binary(max_size=60),
    st.sampled_from(
        [
            b"",
            b"null",
            b"[]",
            b"1",
            b'"x"',
            b"{}",
            b'{"v": 2, "m": 1, "c": "c", "ch": "email", "t": ""}',
            b'{"v": 1, "c": "c", "ch": "email", "t": ""}',
            b'{"v": 1, "m": "1", "c": "c", "ch": "email", "t": ""}',
            b'{"v": 1, "m": 1.5, "c": "c", "ch": "email", "t": ""}',
            b'{"v": 1, "m": 1, "c": 7, "ch": "email", "t": ""}',
            b'{"v": 1, "m": 1, "c": "c", "ch": null, "t": ""}',
            b'{"v": 1, "m": 1, "c": "c", "ch": "email", "t": ["x"]}',
            b'{"v": 1, "m": 1, "c": "c", "ch": "email"}',
            b'{"v": true, "m": 1, "c": "c", "ch": "email", "t": ""}',
            b'{"v": 1.0, "m": 1, "c": "c", "ch": "email", "t": ""}',
            b'{"v": 1, "m": true, "c": "c", "ch": "email", "t": ""}',
            b'{"v": 1, "m": 1180591620717411303424, "c": "c", "ch": "email", "t": ""}',
            b'{"v": 1, "m": -9223372036854775809, "c": "c", "ch": "email", "t": ""}',
            b'{"v": 1, "m": 1, "c": "c\\u0000", "ch": "email", "t": ""}',
            b'{"v": 1, "m": 1, "c": "c", "ch": "email", "t": "\\u0000"}',
            b'{"v": 1, "m": 1, "c": "c", "ch": "email", "t": ""',
            b'\xff\xfe{"v": 1}',
        ]
    ),
)


@st.composite
def tokens(draw: st.DrawFn, world: World) -> tuple[str, str]:
    """(kind, token): ``genuine``, ``tampered``, ``random`` or ``malformed`` (signed, not a claim)."""
    kind = draw(st.sampled_from(["genuine", "tampered", "tampered", "tampered", "random", "malformed"]))
    if kind == "genuine":
        return kind, draw(st.sampled_from(world.tokens))
    if kind == "tampered":
        return kind, draw(tampered(world))
    if kind == "malformed":
        return kind, _signed(SECRET.encode(), draw(MALFORMED_CLAIMS))
    return kind, draw(
        st.one_of(
            TEXT,
            st.text(alphabet=B64 + ".", max_size=120),
            st.sampled_from(SPECIAL),
            values(world),
            st.just("A" * 3000 + "." + "B" * 43),
        )
    )


def _genuine(world: World, token: str) -> dict[str, Any] | None:
    """The claim of the genuine token that *token* is a spelling of (same payload, same signature bytes)."""
    if token.count(".") != 1:
        return None
    payload, sig = token.split(".")
    for real in world.tokens:
        real_payload, real_sig = real.split(".")
        if payload == real_payload and _decode(sig) == _decode(real_sig):
            claim: dict[str, Any] = json.loads(_decode(payload) or b"{}")
            return claim
    return None


def _unsubscribe_state(store: WebStore) -> tuple[int, int, int]:
    return count(store, "consents"), count(store, "suppressions"), count(store, "message_events")


@_settings("unsubscribe")
@given(data=st.data())
def test_unsubscribe_refuses_every_token_but_a_genuine_one(world: World, data: st.DataObject) -> None:
    kind, token = data.draw(tokens(world))
    method = data.draw(st.sampled_from(["GET", "POST"]))
    raw = data.draw(st.booleans())
    store = world.store
    before = _unsubscribe_state(store)
    resp = world.client.request(
        method,
        "/unsubscribe/" + encode(token, raw),
        content="List-Unsubscribe=One-Click" if method == "POST" else None,
        headers={"Content-Type": "application/x-www-form-urlencoded", "accept": "text/html"},
    )
    event(f"{kind} {method} {resp.status_code}")
    assert_answer_is_clean(resp, (kind, token))
    after = _unsubscribe_state(store)
    seen = _path(resp).removeprefix("/unsubscribe/")  # the token as the server read it
    genuine = _genuine(world, seen)
    if resp.status_code == 200:
        assert genuine is not None, (kind, token)  # only a genuine token is accepted
        if method == "POST":
            with store.engine.connect() as conn:
                status = conn.execute(
                    sa.text(
                        "select status from consents where customer_id = :c and channel = :ch and topic = :t"
                    ),
                    dict(c=genuine["c"], ch=genuine["ch"], t=genuine["t"]),
                ).scalar_one()
            assert status == "opt_out"
            assert after[1] == before[1] and after[0] - before[0] in (0, 1) and after[2] - before[2] in (0, 1)
            return
    else:
        assert 400 <= resp.status_code < 500, resp.status_code
        assert kind != "genuine", (token, resp.status_code, resp.text[:300])
    assert after == before, (kind, token, resp.status_code)


def test_a_genuine_token_unsubscribes(world: World) -> None:
    """The oracle above is not vacuous: a genuine token, as sent, is accepted and recorded."""
    token = world.tokens[0]
    claim = json.loads(_decode(token.split(".")[0]) or b"{}")
    page = world.client.get(f"/unsubscribe/{token}")
    assert page.status_code == 200 and f"{claim['ch']} messages about {claim['t']}" in page.text
    resp = world.client.post(f"/unsubscribe/{token}", content="List-Unsubscribe=One-Click")
    assert resp.status_code == 200 and "You are unsubscribed" in resp.text


# --------------------------------------------------------------------------- 4. anonymous requests


@st.composite
def anonymous_requests(draw: st.DrawFn, world: World) -> tuple[str, str, dict[str, str]]:
    method = draw(st.sampled_from(["GET", "POST"]))
    if draw(st.booleans()):  # a route of the table, its parameters random
        route = draw(
            st.sampled_from([r for r in _routes(world.app, method) if r.path.startswith("/marketing")])
        )
        path = route.path
        for name in _params(route.path):
            path = path.replace("{" + name + "}", encode(draw(values(world)) or "x", False), 1)
    else:
        segments = draw(st.lists(values(world), max_size=4))
        path = "/marketing/" + "/".join(encode(s, draw(st.booleans())) for s in segments)
    query = urlencode(draw(st.lists(st.tuples(st.sampled_from(QUERY_PARAMS), values(world)), max_size=2)))
    headers = {"accept": draw(st.sampled_from(["text/html", "application/json"]))}
    if draw(st.booleans()):
        headers["origin"] = ORIGIN
    if draw(st.integers(0, 3)) == 0:
        headers["x-test-user"] = draw(st.sampled_from(["", "nobody"]))
    return method, path + ("?" + query if query else ""), headers


@_settings("anonymous")
@given(data=st.data())
def test_anonymous_requests_get_no_data(world: World, data: st.DataObject) -> None:
    method, url, headers = data.draw(anonymous_requests(world))
    before = count(world.store, "test_sends"), world.smtp.received, world.provider.requests
    resp = world.client.request(
        method,
        url,
        headers=headers,
        data={"channel": "email", "addresses": "qa@example.com"} if method == "POST" else None,
        follow_redirects=False,
    )
    event(f"{method} {resp.status_code}")
    assert_answer_is_clean(resp, (method, url))
    path = _path(resp)
    matching = [
        r
        for r in world.app.routes
        if isinstance(r, Route) and r.path_regex.match(path) and r.path.startswith("/marketing")
    ]
    allowed_methods = {m for r in matching for m in (r.methods or set())}
    if resp.status_code in (307, 308):  # the router's trailing-slash redirect, before any route: no data
        target = unquote(urlsplit(resp.headers["location"]).path)
        assert resp.text == "" and target in (path.rstrip("/"), path + "/"), resp.headers["location"]
    elif matching and method in allowed_methods:
        want = 403 if headers.get("x-test-user") == "nobody" else 401
        assert resp.status_code == want, (method, url, resp.status_code, resp.text[:300])
    else:
        assert resp.status_code in (404, 405), (method, url, path, resp.status_code, resp.text[:300])
    assert resp.status_code not in range(200, 300)
    for secret in (*world.customers[:10], *world.emails[:5]):
        assert secret not in resp.text
    assert (count(world.store, "test_sends"), world.smtp.received, world.provider.requests) == before


# --------------------------------------------------------------------------- what the fuzzing found
# Each was a 500 with a traceback in the server's log (or, for the signed claims, a 200 or a 500).

NUL_URLS = [
    "/marketing/customers/a%00b",
    "/marketing/api/customers/%00",
    "/marketing/customers?q=%00",
    "/marketing/?channel=%00",
    "/marketing/api/calendar?owner=x&%00=1",
    "/marketing/campaigns/weekly_newsletter?customer=a%00",
    "/marketing/api/campaigns/weekly_newsletter/preview?customer=%00",
]


@pytest.mark.parametrize("url", NUL_URLS)
def test_a_nul_character_is_refused_with_a_message(world: World, url: str) -> None:
    """PostgreSQL's text cannot hold a NUL: a query with one failed (psycopg DataError, 500)."""
    for accept in ("text/html", "application/json"):
        resp = world.client.get(url, headers={"x-test-user": "ops", "accept": accept})
        assert resp.status_code == 400 and "contains a NUL character" in _message(resp), resp.text[:300]


@pytest.mark.parametrize("field", ["channel", "addresses", "customer"])
def test_a_test_send_with_a_nul_character_is_refused_and_not_recorded(world: World, field: str) -> None:
    """The refusal was recorded with the NUL in it (psycopg DataError, 500)."""
    form = {"channel": "email", "addresses": "qa@example.com", "customer": "", field: "qa\x00@example.com"}
    last = _test_sends_count_max(world.store)
    _drain(world)
    resp = world.client.post(
        "/marketing/campaigns/weekly_newsletter/test-send",
        data=form,
        headers={"x-test-user": "ops", "origin": ORIGIN, "accept": "text/html"},
        follow_redirects=False,
    )
    assert resp.status_code == 400 and f"the field '{field}' contains a NUL character" in _message(resp)
    assert _test_sends_after(world.store, last) == [] and _drain(world) == []


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("/marketing/?start=9999-12-31", "start '9999-12-31' is out of range"),  # its weeks end after 9999
        ("/marketing/api/calendar?day=9999-12-31", "out of range"),
        ("/marketing/?start=0001-01-01", "out of range"),  # the page's "earlier" link is before year 1
        ("/marketing/?day=0001-01-01", "out of range"),
        ("/marketing/cycles/0001-01-01T00:00:00%2B01:00", "out of range"),  # before year 1 in UTC
        ("/marketing/api/cycles/9999-12-31T23:59:59-01:00", "out of range"),
        ("/marketing/api/customers/CUSTOMER?until=0001-01-01", "until '0001-01-01' is out of range"),
        ("/marketing/cycles/%20", "cycle ' ' is not a time"),  # a blank cycle: assert at is not None
        ("/marketing/api/cycles/%20%09", "is not a time"),
    ],
)
def test_times_out_of_range_or_blank_are_refused_with_a_message(world: World, url: str, why: str) -> None:
    resp = world.client.get(url.replace("CUSTOMER", world.customers[0]), headers={"x-test-user": "ops"})
    assert resp.status_code == 400 and why in _message(resp), resp.text[:300]


@pytest.mark.parametrize(
    "claim",
    [
        {"v": True, "m": 1, "c": "c1", "ch": "email", "t": ""},
        {"v": 1.0, "m": 1, "c": "c1", "ch": "email", "t": ""},
        {"v": 1, "m": True, "c": "c1", "ch": "email", "t": ""},
        {"v": 1, "m": 2**70, "c": "c1", "ch": "email", "t": ""},
        {"v": 1, "m": 1, "c": "c\x001", "ch": "email", "t": ""},
    ],
)
def test_a_signed_token_with_a_malformed_claim_changes_nothing(world: World, claim: dict[str, Any]) -> None:
    """``true`` passed for the version 1 and for an int message id, a message id beyond bigint and a NUL
    reached the store (a 200 for the version, a 500 for the others); only we can sign such a token, but
    verify_token is what stands between a token and the store."""
    token = _signed(SECRET.encode(), json.dumps(claim).encode())
    before = _unsubscribe_state(world.store)
    for method in ("GET", "POST"):
        resp = world.client.request(method, f"/unsubscribe/{token}", headers={"accept": "text/html"})
        assert resp.status_code == 400 and "not valid" in _message(resp), resp.text[:300]
    assert _unsubscribe_state(world.store) == before
