"""Baton's Airflow plugin: the Marketing view (a "Marketing" entry in the UI's navigation) and the
unsubscribe endpoints (RFC 8058 one-click), served under ``/baton`` by the Airflow API server.

The FastAPI app (``baton.airflow.web``) authenticates every route with Airflow's own login and asks
the auth manager whether the user may see the ``Marketing`` custom view; only the unsubscribe
endpoints, which a recipient reaches from a message, are public (the signed token is their
authorisation).  The navigation entry is an external view: the UI shows ``baton/marketing/``
(relative to Airflow's base URL) in its content frame at ``/plugin/marketing``.
"""

from __future__ import annotations

import base64

from airflow.plugins_manager import AirflowPlugin

from baton.airflow.web import create_app

# a baton crossing a calendar grid, in the UI's icon size
_ICON_SVG = (
    b'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24" fill="none" stroke="#5f6b7a" '
    b'stroke-width="2" stroke-linecap="round" stroke-linejoin="round"><rect x="3" y="5" width="18" '
    b'height="16" rx="2"/><path d="M3 10h18M8 3v4M16 3v4"/><path d="M7 18l10-6"/></svg>'
)
ICON = "data:image/svg+xml;base64," + base64.b64encode(_ICON_SVG).decode("ascii")


class BatonPlugin(AirflowPlugin):
    name = "baton"
    fastapi_apps = [{"app": create_app(), "url_prefix": "/baton", "name": "Baton"}]
    external_views = [
        {
            "name": "Marketing",
            "href": "baton/marketing/",
            "destination": "nav",
            "url_route": "marketing",
            "icon": ICON,
        }
    ]
