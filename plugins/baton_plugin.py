"""Baton's Airflow plugin: the unsubscribe endpoints (RFC 8058 one-click) under ``/baton``.

Served by the Airflow API server as a FastAPI sub-application.  The page needs no Airflow
login (a recipient clicks it from an email); the signed token is the authorisation.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from baton.airflow.web import create_app


class BatonPlugin(AirflowPlugin):
    name = "baton"
    fastapi_apps = [{"app": create_app(), "url_prefix": "/baton", "name": "Baton"}]
