"""The Baton web app as the Airflow API server serves it: :mod:`baton.web.app` with Airflow's parts.

* **Who is asking** — :func:`authenticate` uses Airflow's own ``get_user`` (the JWT of an
  ``Authorization: Bearer`` header, else the ``_token`` cookie the Airflow UI sets; 401 without a
  valid one), then asks the configured auth manager ``is_authorized_custom_view(method,
  resource_name="Marketing", user)`` (403 when refused).  Plugin FastAPI apps are not behind the
  auth manager by default: the app applies this to every route that is not public.  A test send
  also needs the permission to trigger the campaign's DAG (``is_authorized_dag(POST, RUN)``).
* **The store** — ``baton_db`` or ``BATON_DATABASE_URL`` (:func:`baton.airflow.hooks.store.store_engine`),
  read at request time, never at import.
* **The dags folder** — ``[core] dags_folder`` (``AIRFLOW__CORE__DAGS_FOLDER``).
* **Channel connections** for test sends — Airflow Connections.
* **Runs and task instances** — from Airflow's metadata database, for the cycle funnel (timings per
  task, the delivery tasks' counts) and the campaign page (the DAG's recent runs).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Literal

from baton.web.app import RESOURCE, WebServices, WebUser
from baton.web.app import create_app as create_web_app

log = logging.getLogger(__name__)

__all__ = ["AirflowMetadata", "authenticate", "create_app", "dags_folder"]


async def authenticate(request: Any) -> WebUser:
    """The Airflow user of *request*, allowed to see the Marketing view (HTTPException 401/403 otherwise)."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.core_api.security import bearer_scheme, get_user
    from fastapi import HTTPException

    credentials = await bearer_scheme(request)
    user = await get_user(request, None, credentials)
    methods: dict[str, Literal["GET", "POST", "PUT", "DELETE"]] = {
        "POST": "POST",
        "PUT": "PUT",
        "DELETE": "DELETE",
    }
    method = methods.get(request.method, "GET")
    manager = get_auth_manager()
    if not manager.is_authorized_custom_view(method=method, resource_name=RESOURCE, user=user):
        raise HTTPException(403, f"{user.get_name()} may not use the {RESOURCE} view")

    def may_run_campaign(campaign_id: str) -> bool:
        # a test send acts on a campaign: the same permission as triggering the campaign's DAG
        from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity, DagDetails

        from baton.airflow.dags.campaigns import dag_id_for

        return bool(
            manager.is_authorized_dag(
                method="POST",
                access_entity=DagAccessEntity.RUN,
                details=DagDetails(id=dag_id_for(campaign_id)),
                user=user,
            )
        )

    return WebUser(str(user.get_name()), may_run_campaign=may_run_campaign)


def dags_folder() -> Path:
    """Airflow's dags folder."""
    from airflow.configuration import conf

    return Path(os.path.expanduser(conf.get("core", "dags_folder")))


class AirflowMetadata:
    """Runs and task instances from Airflow's metadata database (read-only)."""

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        """The run's task instances with their timings and return values (see ``AirflowInfo``)."""
        from airflow.models.taskinstance import TaskInstance
        from airflow.models.xcom import XComModel
        from airflow.utils.session import create_session
        from sqlalchemy import select

        with create_session() as session:
            rows = session.execute(
                select(
                    TaskInstance.task_id,
                    TaskInstance.map_index,
                    TaskInstance.state,
                    TaskInstance.start_date,
                    TaskInstance.end_date,
                    TaskInstance.duration,
                    TaskInstance.try_number,
                )
                .where(TaskInstance.dag_id == dag_id, TaskInstance.run_id == run_id)
                .order_by(TaskInstance.start_date.is_(None), TaskInstance.start_date, TaskInstance.task_id)
            ).all()
            results: dict[tuple[str, int], Any] = {}
            try:
                for task_id, map_index, value in session.execute(
                    select(XComModel.task_id, XComModel.map_index, XComModel.value).where(
                        XComModel.dag_id == dag_id,
                        XComModel.run_id == run_id,
                        XComModel.key == "return_value",
                    )
                ).all():
                    results[(task_id, map_index)] = XComModel.deserialize_value(_Row(value))
            except Exception as exc:  # return values are a bonus
                log.debug("cannot read return values of %s/%s: %s", dag_id, run_id, exc)
        return [
            {
                "task_id": r.task_id,
                "map_index": r.map_index,
                "state": str(r.state) if r.state else None,
                "start_date": r.start_date,
                "end_date": r.end_date,
                "duration": r.duration,
                "try_number": r.try_number,
                "result": results.get((r.task_id, r.map_index)),
            }
            for r in rows
        ]

    def dag_runs(self, dag_id: str, limit: int) -> list[dict[str, Any]]:
        """The DAG's latest runs."""
        from airflow.models.dagrun import DagRun
        from airflow.utils.session import create_session
        from sqlalchemy import select

        with create_session() as session:
            rows = session.execute(
                select(
                    DagRun.run_id,
                    DagRun.state,
                    DagRun.run_type,
                    DagRun.data_interval_start,
                    DagRun.data_interval_end,
                    DagRun.start_date,
                    DagRun.end_date,
                )
                .where(DagRun.dag_id == dag_id)
                .order_by(DagRun.id.desc())
                .limit(limit)
            ).all()
        return [
            {
                "run_id": r.run_id,
                "state": str(r.state) if r.state else None,
                "run_type": str(r.run_type) if r.run_type else None,
                "data_interval_start": r.data_interval_start,
                "data_interval_end": r.data_interval_end,
                "start_date": r.start_date,
                "end_date": r.end_date,
            }
            for r in rows
        ]


class _Row:
    """What ``XComModel.deserialize_value`` reads: an object with ``value``."""

    def __init__(self, value: Any) -> None:
        self.value = value


def _engine() -> Any:
    from baton.airflow.hooks.store import store_engine

    return store_engine()


def _connection(conn_id: str) -> Any:
    from baton.airflow.hooks.channels import connection_info

    return connection_info(conn_id)


def create_app() -> Any:
    """The Baton FastAPI app with Airflow's authentication, store, dags folder, connections and runs."""
    return create_web_app(
        WebServices(
            authenticate=authenticate,
            engine=_engine,
            dags_folder=dags_folder,
            connection=_connection,
            airflow=AirflowMetadata(),
        )
    )
