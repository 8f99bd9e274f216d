"""A DagBag filled while every way to reach a database, a connection or a variable raises — as
Airflow's own ``test_example_dags`` does: the DAG files may do none of it at parse time."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from unittest import mock


class ParseTimeAccess(AssertionError):
    """A DAG file reached a database, a connection or a variable while being parsed."""


def _forbid(*_a: object, **_k: object) -> None:
    raise ParseTimeAccess("database or connection used at parse time")


def guarded_dagbag(folder: Path) -> Any:
    """The DagBag of *folder*, parsed with every database, connection and variable access forbidden."""
    import psycopg
    import psycopg2
    import sqlalchemy.engine
    from airflow.dag_processing.dagbag import DagBag

    with (
        mock.patch.object(psycopg, "connect", _forbid),
        mock.patch.object(psycopg2, "connect", _forbid),
        mock.patch.object(sqlalchemy.engine.Engine, "connect", _forbid),
        mock.patch.object(sqlalchemy.engine.Engine, "raw_connection", _forbid),
        mock.patch("airflow.sdk.BaseHook.get_connection", _forbid),
        mock.patch("airflow.sdk.Variable.get", _forbid),
        mock.patch("pgserver.get_server", _forbid),
    ):
        return DagBag(dag_folder=str(folder), safe_mode=False)
