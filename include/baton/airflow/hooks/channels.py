"""Channel connections: an Airflow Connection mapped to the Airflow-free
:class:`~baton.delivery.base.ConnectionInfo` that a channel adapter is built from, and the
object-storage folder that file channels write to.

Credentials come only from Airflow Connections (named by ``policy.channels.<ch>.connection``,
default ``baton_<ch>``).  A connection that is missing or malformed is a user mistake
(:class:`~baton.errors.ConfigError`, not retried); one that cannot be read because the
secrets backend is down is transient (:class:`~baton.errors.ServiceUnavailableError`).
"""

from __future__ import annotations

import json
import os
from typing import Any

from baton.delivery.base import ConnectionInfo
from baton.errors import ConfigError, ServiceUnavailableError


def connection_info(conn_id: str) -> ConnectionInfo:
    """The Airflow Connection *conn_id* as a :class:`ConnectionInfo` (its extra parsed strictly)."""
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        conn = BaseHook.get_connection(conn_id)
    except AirflowNotFoundException as exc:
        raise ConfigError(
            f"Airflow connection {conn_id!r} is not defined: add it in Admin → Connections, or set "
            f"AIRFLOW_CONN_{conn_id.upper()} (README.md, section 'Channels', lists each channel's connection)"
        ) from exc
    except Exception as exc:
        raise ServiceUnavailableError(
            f"cannot read the Airflow connection {conn_id!r} ({type(exc).__name__}: {exc}): check that the "
            "secrets backend and the Airflow API server are reachable; the task is retried"
        ) from exc
    return ConnectionInfo(
        conn_id=conn_id,
        conn_type=conn.conn_type,
        host=conn.host,
        port=conn.port,
        login=conn.login,
        password=conn.password,
        schema=conn.schema,
        extra=parse_extra(conn_id, conn.extra),
    )


def parse_extra(conn_id: str, extra: Any) -> dict[str, Any]:
    """A connection's ``extra`` as a JSON object; ConfigError when it is not one.

    Airflow's own ``extra_dejson`` logs malformed JSON and answers ``{}``: for a channel that
    would silently drop settings such as ``starttls``, so Baton refuses it instead.
    """
    if extra is None or extra == "":
        return {}
    if isinstance(extra, dict):
        return dict(extra)
    try:
        value = json.loads(extra)
    except (TypeError, ValueError) as exc:
        raise ConfigError(
            f"Airflow connection {conn_id!r}: its extra is not valid JSON ({exc}): write a JSON object, "
            'e.g. {"from": "Shop <shop@example.com>", "starttls": true}'
        ) from None
    if not isinstance(value, dict):
        raise ConfigError(
            f"Airflow connection {conn_id!r}: its extra must be a JSON object, not {type(value).__name__}"
        )
    return value


def export_base() -> Any:
    """Where file channels (audience lists, direct-mail batches) write: ``BATON_EXPORT_URL``
    (any ObjectStoragePath URL, e.g. ``s3://bucket/baton`` with ``BATON_EXPORT_CONN_ID``), default
    ``file://$BATON_HOME/.baton/exports``."""
    from airflow.sdk import ObjectStoragePath

    from baton.store.engine import baton_home

    url = os.environ.get("BATON_EXPORT_URL") or f"file://{baton_home() / '.baton' / 'exports'}"
    return ObjectStoragePath(url, conn_id=os.environ.get("BATON_EXPORT_CONN_ID") or None)
