"""Every route of the Baton web app needs an authenticated Airflow user allowed to see the Marketing
view, except the public ones a recipient reaches from a message — checked on the app's route table,
so that a route added later cannot slip through.  With Airflow's real authentication
(``baton.airflow.web``): Airflow's JWTs, its simple auth manager's roles."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from starlette.routing import BaseRoute, Mount, Route

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
JWT_SECRET = uuid.uuid4().hex * 2  # one per test session: Airflow caches its signer
SAMPLE = {"token": "not-a-token", "cycle": "2026-03-02T15:00:00Z", "campaign_id": "weekly_newsletter"}


def _routes(routes: list[BaseRoute], prefix: str = "") -> Iterator[tuple[str, str, Any]]:
    """(method, path, route) of every route, mounted sub-apps included (a mount without a route table is
    probed at its own path)."""
    for route in routes:
        if isinstance(route, Mount):
            inner = getattr(route.app, "routes", None)
            if inner is not None:
                yield from _routes(list(inner), prefix + route.path)
            else:
                yield "GET", prefix + route.path + "/", route
        elif isinstance(route, Route):
            for method in sorted(route.methods or {"GET"}):
                if method != "HEAD":
                    yield method, prefix + route.path, route


def _url(path: str) -> str:
    return re.sub(r"\{(\w+)(:\w+)?\}", lambda m: SAMPLE.get(m.group(1), "x"), path)


@pytest.fixture()
def airflow_app(fresh_store: Engine, airflow_db: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    monkeypatch.setenv("BATON_DATABASE_URL", fresh_store.url.render_as_string(hide_password=False))
    monkeypatch.setenv("AIRFLOW__API_AUTH__JWT_SECRET", JWT_SECRET)
    monkeypatch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE", str(tmp_path / "passwords.json"))
    from airflow.api_fastapi import app as af_app

    monkeypatch.setattr(af_app._AuthManagerState, "instance", None)
    af_app.create_auth_manager().init()
    from baton.airflow.web import create_app

    return create_app()


def _token(role: str | None) -> str:
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    return get_auth_manager().generate_jwt(SimpleAuthManagerUser(username="ann", role=role))


def test_every_route_but_the_public_ones_refuses_anonymous_requests(airflow_app: Any) -> None:
    from baton.web.app import PUBLIC_PATHS

    client = TestClient(airflow_app)
    table = list(_routes(list(airflow_app.routes)))
    assert len(table) >= 12  # pages, their JSON, the test send, unsubscribe
    public = set()
    for method, path, _route in table:
        for headers in ({}, {"Authorization": "Bearer not-a-jwt"}, {"Cookie": "_token=forged"}):
            resp = client.request(
                method, _url(path), headers={"accept": "text/html", **headers}, follow_redirects=False
            )
            if (method, path) in PUBLIC_PATHS:
                assert resp.status_code not in (401, 403), (method, path, resp.status_code)
                public.add((method, path))
            else:
                assert resp.status_code in (401, 403), (
                    method,
                    path,
                    headers,
                    resp.status_code,
                    resp.text[:200],
                )
    assert public == PUBLIC_PATHS == {("GET", "/unsubscribe/{token}"), ("POST", "/unsubscribe/{token}")}


def test_a_route_added_later_is_protected_too(airflow_app: Any) -> None:
    @airflow_app.get("/marketing/api/something-new")
    def something_new() -> dict[str, str]:
        return {"secret": "data"}

    client = TestClient(airflow_app)
    assert client.get("/marketing/api/something-new").status_code == 401
    ok = client.get("/marketing/api/something-new", headers={"Authorization": f"Bearer {_token('viewer')}"})
    assert ok.status_code == 200 and ok.json() == {"secret": "data"}


def test_a_viewer_sees_the_view_a_user_without_role_does_not(airflow_app: Any) -> None:
    client = TestClient(airflow_app)
    viewer = client.get(
        "/marketing/", headers={"Authorization": f"Bearer {_token('viewer')}", "accept": "text/html"}
    )
    assert viewer.status_code == 200 and "Calendar" in viewer.text
    # the Airflow UI's cookie works as well as the header
    client.cookies.set("_token", _token("viewer"))
    assert client.get("/marketing/api/calendar").status_code == 200
    client.cookies.clear()
    nobody = client.get("/marketing/", headers={"Authorization": f"Bearer {_token(None)}"})
    assert nobody.status_code == 403 and "may not use the Marketing view" in nobody.text


def test_changes_from_another_origin_are_refused(airflow_app: Any) -> None:
    client = TestClient(airflow_app)
    auth = {"Authorization": f"Bearer {_token('admin')}"}
    resp = client.post(
        "/marketing/campaigns/weekly_newsletter/test-send",
        data={"channel": "email", "addresses": "qa@example.com"},
        headers={**auth, "Origin": "https://evil.example"},
    )
    assert resp.status_code == 403 and "cross-origin" in resp.text
    resp = client.post(
        "/marketing/campaigns/weekly_newsletter/test-send", data={"channel": "email"}, headers=auth
    )
    assert resp.status_code == 403  # no Origin or Referer at all


def test_a_test_send_needs_the_permission_to_run_the_campaign_dag(
    airflow_app: Any, fresh_store: Engine
) -> None:
    """Seeing the Marketing view is not enough to send anything: a Viewer (who may not trigger the
    campaign's DAG) is refused before anything is rendered, stored or sent; a User gets past it."""
    client = TestClient(airflow_app)
    form = {"channel": "email", "addresses": "qa@example.com"}
    seen = {}
    for role in ("viewer", "user", "admin"):
        resp = client.post(
            "/marketing/campaigns/weekly_newsletter/test-send",
            data=form,
            headers={
                "Authorization": f"Bearer {_token(role)}",
                "Origin": "http://testserver",
                "accept": "text/html",
            },
            follow_redirects=False,
        )
        seen[role] = resp.status_code
        if role == "viewer":
            assert "may see the Marketing view but not run the DAG of campaign" in resp.text
            with fresh_store.connect() as conn:
                assert conn.exec_driver_sql("select count(*) from test_sends").scalar() == 0
    assert seen["viewer"] == 403
    assert seen["user"] != 403 and seen["admin"] != 403, seen


def test_the_plugin_adds_the_marketing_nav_entry_and_mounts_the_app() -> None:
    import importlib.util

    from airflow.api_fastapi.core_api.datamodels.plugins import ExternalViewResponse

    spec = importlib.util.spec_from_file_location(
        "baton_plugin_under_test", ROOT / "plugins" / "baton_plugin.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    plugin = module.BatonPlugin
    [view] = plugin.external_views
    parsed = ExternalViewResponse.model_validate(view)
    assert (parsed.name, parsed.href, parsed.destination, parsed.url_route) == (
        "Marketing",
        "baton/marketing/",
        "nav",
        "marketing",
    )
    assert not parsed.href.startswith("/") and parsed.icon and parsed.icon.startswith("data:image/svg+xml")
    [app] = plugin.fastapi_apps
    assert app["url_prefix"] == "/baton"
    paths = {getattr(r, "path", None) for r in app["app"].routes}
    assert {"/marketing/", "/unsubscribe/{token}"} <= paths


def test_the_airflow_metadata_queries_run(airflow_db: str) -> None:
    """The runs and task instances the funnel and the campaign page show come from Airflow's own tables."""
    from baton.airflow.web import AirflowMetadata

    meta = AirflowMetadata()
    assert meta.task_instances("baton_arbitration", "no-such-run") == []
    assert meta.dag_runs("campaign__no_such_campaign", 5) == []
