"""The Baton web app: the Marketing view's pages and their JSON, and the public unsubscribe endpoints.

The Baton plugin mounts it at ``/baton`` in the Airflow API server (``baton.airflow.web`` supplies
the Airflow parts: who the user is, the store, connections, the runs' task instances).  This module
imports no Airflow: everything it needs arrives in a :class:`WebServices`.

**Authentication is the default.**  Plugin FastAPI apps are not behind Airflow's auth manager, so
the app carries one app-level dependency, :func:`_guard`, that runs for every route of the app:
unless the route's endpoint was registered with :func:`public`, it asks
``WebServices.authenticate`` for the user (401 when there is none, 403 when the user may not see
the Marketing view) and refuses state-changing requests from another origin.  A route added later
is therefore protected unless someone marks it public on purpose; the only public routes are the
ones a recipient reaches from a message (``/unsubscribe/{token}``, GET and POST).  The route-table
test (``tests/integration/test_web_auth.py``) checks every route, mounted sub-apps included.

Pages (server-rendered, Jinja templates in ``templates/``) and their data (``/marketing/api/…``):

* ``/marketing/`` — the calendar: campaigns × days (``?day=`` zooms to hours), planned and past;
* ``/marketing/cycles/{T}`` — one cycle's funnel;
* ``/marketing/customers?q=`` — search by any identifier; ``/marketing/customers/{id}`` — the timeline;
* ``/marketing/campaigns/{id}`` — a campaign: spec, runs, volumes, audience count, previews, test sends.
"""

from __future__ import annotations

import html
import json
import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote, urlencode, urlsplit

from fastapi import APIRouter, Depends, FastAPI, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy.engine import Engine

from baton.delivery.base import ConnectionInfo
from baton.errors import AudienceError, BatonError, ConfigError, InputError
from baton.web import preview as pv
from baton.web import queries
from baton.web.deployment import Deployment, deployment

log = logging.getLogger(__name__)

__all__ = ["PUBLIC_PATHS", "AirflowInfo", "WebServices", "WebUser", "create_app", "public"]

RESOURCE = "Marketing"
"""The custom view name the auth manager is asked about."""

PUBLIC_PATHS = frozenset({("GET", "/unsubscribe/{token}"), ("POST", "/unsubscribe/{token}")})
"""(method, path) of every route that needs no login: what a recipient reaches from a message."""

TEMPLATES = Path(__file__).parent / "templates"


def _may_not(campaign_id: str) -> bool:
    return False


@dataclass(frozen=True)
class WebUser:
    """Who is looking (for the record of test sends), and whether they may act on a campaign.

    *may_run_campaign*: may this user run the campaign's DAG (then they may test-send its preview)?
    Seeing the Marketing view is not enough to send anything; the default answers no."""

    name: str
    may_run_campaign: Callable[[str], bool] = _may_not


class AirflowInfo(Protocol):
    """What the pages show from Airflow itself (``baton.airflow.web`` implements it)."""

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        """The run's task instances: task_id, map_index, state, start_date, end_date, duration, try_number,
        and ``result`` (the task's return value, e.g. a delivery task's counts)."""

    def dag_runs(self, dag_id: str, limit: int) -> list[dict[str, Any]]:
        """The DAG's latest runs: run_id, state, run_type, data_interval_start/end, start_date, end_date."""


@dataclass
class WebServices:
    """What the app needs from its host: the user, the store, the dags folder, channel connections."""

    authenticate: Callable[[Request], Awaitable[WebUser]]
    engine: Callable[[], Engine]
    dags_folder: Callable[[], Path]
    connection: Callable[[str], ConnectionInfo] | None = None
    airflow: AirflowInfo | None = None


_public_endpoints: set[Callable[..., Any]] = set()


def public(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Mark an endpoint as needing no login (only for what a recipient reaches from a message)."""
    _public_endpoints.add(fn)
    return fn


# ------------------------------------------------------------------------------------------- rendering


def _num(value: Any) -> str:
    if value is None or value == "":
        return ""
    if isinstance(value, float) and not value.is_integer():
        return f"{value:,.1f}"
    return f"{int(value):,}"


def _pct(value: Any) -> str:
    return "" if value is None else f"{100 * float(value):.0f}%"


def _ts(value: Any) -> str:
    if not isinstance(value, datetime):
        return "" if value is None else str(value)
    return f"{value.astimezone(UTC):%Y-%m-%d %H:%M} UTC"


def _hm(value: Any) -> str:
    return f"{value.astimezone(UTC):%H:%M}" if isinstance(value, datetime) else ""


def _iso(value: Any) -> str:
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return str(value)


def _dur(seconds: Any) -> str:
    if seconds is None:
        return ""
    s = float(seconds)
    sign = "-" if s < 0 else ""
    s = abs(s)
    if s < 60:
        return f"{sign}{s:.1f}s"
    m, sec = divmod(int(round(s)), 60)
    if m < 60:
        return f"{sign}{m}m {sec:02d}s"
    h, m = divmod(m, 60)
    return f"{sign}{h}h {m:02d}m"


def _env() -> Environment:
    env = Environment(
        loader=FileSystemLoader(str(TEMPLATES)),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        num=_num, pct=_pct, ts=_ts, hm=_hm, iso=_iso, dur=_dur, q=lambda v: quote(str(v), safe="")
    )
    env.globals.update(outcomes=queries.OUTCOMES, outcome_labels=OUTCOME_LABELS, timedelta=timedelta)
    return env


OUTCOME_LABELS = {
    "unknown_customer": "unknown",
    "expired": "expired",
    "unreachable": "unreachable",
    "suppressed": "suppressed",
    "no_consent": "no consent",
    "quiet_hours": "quiet hours",
    "holdout_global": "global holdout",
    "holdout_campaign": "campaign holdout",
    "channel_alternative": "other channel",
    "capped": "capped",
    "selected": "selected",
}


def _json(value: Any) -> Any:
    from fastapi.encoders import jsonable_encoder

    return jsonable_encoder(value, custom_encoder={datetime: _iso, date: lambda d: d.isoformat()})


# ------------------------------------------------------------------------------------------------ app

router = APIRouter()
_environment: list[Environment] = []


def _templates() -> Environment:
    if not _environment:
        _environment.append(_env())
    return _environment[0]


def _services(request: Request) -> WebServices:
    services: WebServices = request.app.state.baton
    return services


async def _guard(request: Request) -> None:
    """Every route: the user must be authenticated and allowed to see the Marketing view, unless the
    route is public; requests that change something must come from this origin; a NUL character in the
    path or a query parameter is refused (400) before any route reads it."""
    if request.scope.get("endpoint") in _public_endpoints:
        return
    user = await _services(request).authenticate(request)
    request.state.baton_user = user
    if request.method not in ("GET", "HEAD", "OPTIONS"):
        origin = request.headers.get("origin") or request.headers.get("referer") or ""
        if not origin or urlsplit(origin).netloc != request.headers.get("host", ""):
            raise HTTPException(403, "cross-origin request refused: use the Marketing view's own form")
    _no_nul("the URL path", str(request.scope.get("path", "")))
    for name, value in request.query_params.multi_items():
        _no_nul(f"the parameter {name!r}", name + value)


def _no_nul(what: str, value: str) -> None:
    """400 when *value* holds a NUL character: no id, identifier, time or filter has one (and the store
    cannot even compare one)."""
    if "\x00" in value:
        raise HTTPException(
            400, f"{what} contains a NUL character (%00): no customer, campaign or time has one"
        )


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    wants_json = "/api/" in request.url.path or "text/html" not in request.headers.get("accept", "")
    if wants_json:
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)
    if exc.status_code in (401, 403):  # no data, no deployment read: a page saying where to log in
        what = html.escape(str(exc.detail))
        login = html.escape(_airflow_ui(request) + "/")
        return HTMLResponse(
            "<!doctype html><html><body style='font-family:sans-serif;max-width:36em;margin:3em auto'>"
            f"<h1>Baton · Marketing</h1><p>{what}.</p><p>The Marketing view is part of Airflow:"
            f" <a href='{login}' target='_top'>log in to Airflow</a> and open <b>Marketing</b> in its menu.</p>"
            "</body></html>",
            status_code=exc.status_code,
            headers=exc.headers,
        )
    return _problem(request, exc.status_code, str(exc.detail))


def create_app(services: WebServices) -> FastAPI:
    """The FastAPI app (see the module); *services* supplies the host's parts.  Every route, including
    one added to the returned app later, runs :func:`_guard` first."""
    app = FastAPI(
        title="Baton", docs_url=None, redoc_url=None, openapi_url=None, dependencies=[Depends(_guard)]
    )
    app.state.baton = services
    app.include_router(router)
    app.add_exception_handler(HTTPException, _http_error)
    return app


# -------------------------------------------------------------------------------------------- helpers


def _dep(request: Request) -> Deployment:
    return deployment(_services(request).dags_folder())


def _engine(request: Request) -> Engine:
    return _services(request).engine()


def _base(request: Request) -> str:
    return str(request.scope.get("root_path", "")).rstrip("/") + "/marketing"


def _airflow_ui(request: Request) -> str:
    root = str(request.scope.get("root_path", "")).rstrip("/")
    return root[: -len("/baton")] if root.endswith("/baton") else root


def _page(request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
    d = _dep(request)
    text = (
        _templates()
        .get_template(name)
        .render(
            base=_base(request),
            ui=_airflow_ui(request),
            dep=d,
            campaign_ids=sorted(d.campaigns),
            user=getattr(request.state, "baton_user", None),
            request_path=request.url.path,
            **context,
        )
    )
    return HTMLResponse(text, status_code=status)


def _problem(request: Request, status: int, message: str) -> HTMLResponse:
    title = "Not found" if status == 404 else "Error"
    return _page(request, "error.html", status=status, message=message, title=title)


def _when(text: str | None, what: str) -> datetime | None:
    if text is None or not str(text).strip():
        return None
    try:
        return queries.parse_time(text, what)
    except InputError as exc:
        raise HTTPException(400, str(exc)) from None


def _day(text: str | None, what: str) -> date | None:
    t = _when(text, what)
    return t.date() if t else None


def _int(text: str | None, default: int, what: str) -> int:
    try:
        return int(text or default)
    except ValueError:
        raise HTTPException(400, f"{what} {text!r} is not a number") from None


def _calendar_data(request: Request) -> dict[str, Any]:
    q = request.query_params
    start = _day(q.get("start"), "start") or datetime.now(UTC).date() - timedelta(days=7)
    return queries.calendar(
        _engine(request),
        _dep(request),
        start=start,
        days=_int(q.get("days"), 21, "days"),
        day=_day(q.get("day"), "day"),
        channel=q.get("channel") or None,
        tag=q.get("tag") or None,
        owner=q.get("owner") or None,
    )


def _airflow_tasks(request: Request, dag_id: str, run_id: str | None) -> list[dict[str, Any]] | None:
    airflow = _services(request).airflow
    if airflow is None or not run_id:
        return None
    try:
        return airflow.task_instances(dag_id, run_id)
    except Exception as exc:  # Airflow's metadata is a bonus on the page, never its failure
        log.warning("cannot read the task instances of %s/%s: %s", dag_id, run_id, exc)
        return None


def _airflow_runs(request: Request, dag_id: str) -> list[dict[str, Any]] | None:
    airflow = _services(request).airflow
    if airflow is None:
        return None
    try:
        return airflow.dag_runs(dag_id, 10)
    except Exception as exc:
        log.warning("cannot read the runs of %s: %s", dag_id, exc)
        return None


# ---------------------------------------------------------------------------- public: unsubscribe


def _claim(token: str) -> Any:
    from baton.delivery.unsubscribe import secret_from_env, verify_token

    try:
        return verify_token(secret_from_env(), token)
    except ConfigError as exc:
        log.error("unsubscribe is not configured: %s", exc)
        raise HTTPException(503, "unsubscribe is not configured on this server") from None
    except ValueError:
        raise HTTPException(400, "this unsubscribe link is not valid") from None


@router.get("/unsubscribe/{token}", response_class=HTMLResponse)
@public
def unsubscribe_confirm(token: str) -> str:
    """The page behind a message's unsubscribe link: one button."""
    claim = _claim(token)
    what = html.escape(f"{claim.channel} messages about {claim.topic}")
    return (
        "<!doctype html><html><body style='font-family:sans-serif;max-width:32em;margin:3em auto'>"
        f"<h1>Unsubscribe</h1><p>Stop {what}?</p>"
        f"<form method='post'><button type='submit'>Unsubscribe</button></form></body></html>"
    )


@router.post("/unsubscribe/{token}", response_class=HTMLResponse)
@public
def unsubscribe(request: Request, token: str) -> str:
    """The page's button, or a mail client's RFC 8058 one-click POST: records the opt-out."""
    from baton.delivery.feedback import record_unsubscribe

    claim = _claim(token)
    record_unsubscribe(_engine(request), claim)
    return "<!doctype html><html><body><p>You are unsubscribed.</p></body></html>"


# ------------------------------------------------------------------------------------------ calendar


@router.get("/marketing", include_in_schema=False)
def marketing_root(request: Request) -> Response:
    """The view's address without its slash."""
    return RedirectResponse(_base(request) + "/", status_code=307)


@router.get("/marketing/", response_class=HTMLResponse)
def calendar_page(request: Request) -> HTMLResponse:
    """The calendar: what goes out, what went out."""
    data = _calendar_data(request)
    return _page(request, "calendar.html", title="Calendar", cal=data, query=dict(request.query_params))


@router.get("/marketing/api/calendar")
def calendar_api(request: Request) -> JSONResponse:
    """The calendar's data."""
    return JSONResponse(_json(_calendar_data(request)))


# -------------------------------------------------------------------------------------- cycle funnel


def _funnel(request: Request, cycle: str) -> dict[str, Any] | None:
    try:
        at = queries.parse_time(cycle, "cycle")  # a blank one too is no time (not "none given")
    except InputError as exc:
        raise HTTPException(400, str(exc)) from None
    return queries.cycle_funnel(_engine(request), _dep(request), at)


@router.get("/marketing/cycles/{cycle}", response_class=HTMLResponse)
def cycle_page(request: Request, cycle: str) -> HTMLResponse:
    """One cycle's funnel."""
    data = _funnel(request, cycle)
    if data is None:
        return _problem(
            request, 404, f"no cycle was decided at {cycle} (see the calendar for the cycles that ran)"
        )
    tasks = _airflow_tasks(request, "baton_arbitration", data["cycle"].get("run_id"))
    return _page(request, "cycle.html", title=f"Cycle {_ts(data['cycle']['cycle_at'])}", f=data, tasks=tasks)


@router.get("/marketing/api/cycles/{cycle}")
def cycle_api(request: Request, cycle: str) -> JSONResponse:
    """One cycle's funnel data."""
    data = _funnel(request, cycle)
    if data is None:
        raise HTTPException(404, f"no cycle at {cycle}")
    return JSONResponse(_json(data))


# ------------------------------------------------------------------------------------------ customers


def _timeline(request: Request, query: str) -> queries.Timeline | None:
    q = request.query_params
    until, days = _when(q.get("until"), "until"), _int(q.get("days"), 30, "days")
    try:
        return queries.customer_timeline(_engine(request), _dep(request), query, until=until, days=days)
    except InputError as exc:  # a value several persons hold: the search page lists them
        raise HTTPException(409, f"{exc}; search for it to see them: /marketing/customers?q=…") from None


@router.get("/marketing/customers", response_class=HTMLResponse)
def customers_page(request: Request, q: str = "") -> Response:
    """Search a person by any identifier; one person found opens their timeline."""
    found = queries.find_profiles(_engine(request), q) if q.strip() else []
    persons = sorted({f["person_id"] for f in found})
    if len(persons) == 1:
        target = f"{_base(request)}/customers/{quote(persons[0], safe='')}?q={quote(q)}"
        return RedirectResponse(target, status_code=303)
    return _page(request, "search.html", title="Customers", q=q, found=found)


@router.get("/marketing/customers/{customer_id}", response_class=HTMLResponse)
def customer_page(request: Request, customer_id: str) -> HTMLResponse:
    """Why did she get this? One person's timeline, every decision explained."""
    data = _timeline(request, customer_id)
    if data is None:
        return _problem(request, 404, f"no profile has the customer id or identifier {customer_id!r}")
    q = request.query_params.get("q", "")
    return _page(request, "customer.html", title=f"Customer {data.person_id}", t=data, q=q)


@router.get("/marketing/api/customers/{customer_id}")
def customer_api(request: Request, customer_id: str) -> JSONResponse:
    """The timeline's data."""
    data = _timeline(request, customer_id)
    if data is None:
        raise HTTPException(404, f"no profile has the customer id or identifier {customer_id!r}")
    return JSONResponse(_json(data.as_json()))


# ------------------------------------------------------------------------------------------ campaigns


def _campaign(request: Request, campaign_id: str) -> dict[str, Any]:
    data = queries.campaign_page(_engine(request), _dep(request), campaign_id)
    if data is None:
        raise HTTPException(404, f"unknown campaign {campaign_id!r}")
    return data


@router.get("/marketing/campaigns/{campaign_id}", response_class=HTMLResponse)
def campaign_page(request: Request, campaign_id: str, customer: str = "") -> HTMLResponse:
    """A campaign: spec, runs, volumes over time, audience count, previews, test sends."""
    d = _dep(request)
    if campaign_id not in d.campaigns:
        known = ", ".join(sorted(d.campaigns))
        return _problem(request, 404, f"unknown campaign {campaign_id!r}: the campaigns are {known}")
    data = _campaign(request, campaign_id)
    shown: pv.Preview | None = None
    preview_error = None
    try:
        shown = pv.preview(_engine(request), d, campaign_id, customer or None, timeout_s=5)
    except BatonError as exc:
        preview_error = str(exc)
    return _page(
        request,
        "campaign.html",
        title=f"Campaign {campaign_id}",
        c=data,
        chart=_chart(data),
        preview=shown,
        preview_error=preview_error,
        customer=customer,
        runs_af=_airflow_runs(request, f"campaign__{campaign_id}"),
        allow={ch: pv.allow_list(ch) for ch in pv.SENDABLE},
        may_send=request.state.baton_user.may_run_campaign(campaign_id),
        sent=request.query_params.get("sent"),
    )


@router.get("/marketing/api/campaigns/{campaign_id}")
def campaign_api(request: Request, campaign_id: str) -> JSONResponse:
    """The campaign page's data."""
    data = dict(_campaign(request, campaign_id))
    data.pop("spec", None)
    return JSONResponse(_json(data))


@router.get("/marketing/api/campaigns/{campaign_id}/audience-count")
def audience_count_api(request: Request, campaign_id: str) -> JSONResponse:
    """The audience count right now (a dry run of the audience SQL, 10 s at most)."""
    try:
        return JSONResponse(_json(queries.audience_count(_engine(request), _dep(request), campaign_id)))
    except InputError as exc:
        raise HTTPException(404, str(exc)) from None
    except AudienceError as exc:
        return JSONResponse({"error": str(exc)}, status_code=200)


@router.get("/marketing/api/campaigns/{campaign_id}/preview")
def preview_api(request: Request, campaign_id: str, customer: str = "") -> JSONResponse:
    """Every channel's message of the campaign rendered for a customer."""
    try:
        shown = pv.preview(_engine(request), _dep(request), campaign_id, customer or None)
    except InputError as exc:
        raise HTTPException(404, str(exc)) from None
    return JSONResponse(_json(shown.as_json()))


@router.post("/marketing/campaigns/{campaign_id}/test-send", response_class=HTMLResponse)
def test_send(
    request: Request,
    campaign_id: str,
    channel: str = Form(...),
    addresses: str = Form(""),
    customer: str = Form(""),
) -> Response:
    """Send the preview, marked as a test, to internal addresses (never to the customer)."""
    d = _dep(request)
    services = _services(request)
    user: WebUser = request.state.baton_user
    back = f"{_base(request)}/campaigns/{quote(campaign_id, safe='')}"
    if not user.may_run_campaign(campaign_id):
        return _page(
            request,
            "error.html",
            status=403,
            title="Test send refused",
            message=f"{user.name} may see the Marketing view but not run the DAG of campaign {campaign_id!r}: "
            "a test send needs the permission to trigger that DAG (the role User or above with Airflow's "
            "simple auth manager; with FAB, 'can create' on the DAG's runs)",
            back=back,
        )
    for name, value in (("channel", channel), ("addresses", addresses), ("customer", customer)):
        _no_nul(f"the field {name!r}", value)
    try:
        shown = pv.preview(services.engine(), d, campaign_id, customer or None, timeout_s=5)
        if services.connection is None:
            raise ConfigError("test sends need the channel connections of Airflow (run the view in Airflow)")
        result = pv.send_test(
            services.engine(),
            d,
            shown,
            channel,
            [addresses],
            requested_by=user.name,
            connection=services.connection,
        )
    except BatonError as exc:
        return _page(
            request, "error.html", status=400, title="Test send refused", message=str(exc), back=back
        )
    query = urlencode({"customer": shown.customer_id, "sent": f"{result.test_send_id}:{result.result}"})
    return RedirectResponse(f"{back}?{query}#test-sends", status_code=303)


# ------------------------------------------------------------------------------------------------ chart


def _chart(data: dict[str, Any], width: int = 720, height: int = 220) -> dict[str, Any]:
    """A stacked bar chart (inline SVG geometry) of the campaign's outcomes per day."""
    days = data["days"]
    series = data["series"]
    order = [o for o in queries.OUTCOMES if o in series]
    totals = [sum(series[o][i] for o in order) for i in range(len(days))]
    top = max(totals + [1])
    scale = 10 ** max(0, int(math.log10(top)))
    top = math.ceil(top / scale) * scale
    left, bottom, pad = 56, 28, 8
    plot_w, plot_h = width - left - pad, height - bottom - pad
    bar_w = plot_w / max(1, len(days))
    bars = []
    for i, day in enumerate(days):
        y = pad + plot_h
        for o in order:
            n = series[o][i]
            if not n:
                continue
            h = plot_h * n / top
            y -= h
            bars.append(
                {
                    "x": round(left + i * bar_w + 2, 1),
                    "y": round(y, 1),
                    "w": round(max(1.0, bar_w - 4), 1),
                    "h": round(h, 1),
                    "outcome": o,
                    "n": n,
                    "day": day.isoformat(),
                }
            )
    ticks = [{"y": round(pad + plot_h - plot_h * k / 4, 1), "label": _num(top * k / 4)} for k in range(5)]
    labels = [
        {"x": round(left + i * bar_w + bar_w / 2, 1), "label": f"{day:%m-%d}"}
        for i, day in enumerate(days)
        if len(days) <= 16 or i % 2 == 0
    ]
    return {
        "width": width,
        "height": height,
        "bars": bars,
        "ticks": ticks,
        "labels": labels,
        "order": order,
        "totals": totals,
        "left": left,
        "pad": pad,
        "plot_h": plot_h,
        "json": json.dumps({"days": [d.isoformat() for d in days], "series": series}),
    }
