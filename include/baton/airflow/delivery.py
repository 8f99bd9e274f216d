"""Delivery tasks of the cycle DAG: one mapped task per channel (its own pool
``baton_<channel>``), mapped over delivery shards.  Credentials come only from the
Airflow Connection named in ``policy.channels.<ch>.connection`` (default ``baton_<ch>``).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from baton.delivery.base import ConnectionInfo
from baton.errors import ConfigError

log = logging.getLogger(__name__)


def delivery_shards() -> int:
    """Shards per channel: ``BATON_DELIVERY_SHARDS`` (default 2)."""
    try:
        return max(1, int(os.environ.get("BATON_DELIVERY_SHARDS", "2")))
    except ValueError:
        return 2


def connection_info(conn_id: str) -> ConnectionInfo:
    from airflow.sdk import BaseHook

    try:
        conn = BaseHook.get_connection(conn_id)
    except Exception as exc:
        raise ConfigError(
            f"Airflow connection {conn_id!r} is not defined: add it in Admin → Connections, or set "
            f"AIRFLOW_CONN_{conn_id.upper()} (see README, 'Channels')"
        ) from exc
    extra = conn.extra_dejson if hasattr(conn, "extra_dejson") else json.loads(conn.extra or "{}")
    return ConnectionInfo(
        conn_id=conn_id, conn_type=conn.conn_type, host=conn.host, port=conn.port, login=conn.login,
        password=conn.password, schema=conn.schema, extra=dict(extra or {}),
    )


def export_base() -> Any:
    """Where file channels (audience lists, direct-mail batches) write: ``BATON_EXPORT_URL``
    (any ObjectStoragePath URL, e.g. s3://bucket/baton with a connection), default
    ``file://$BATON_HOME/.baton/exports``."""
    from airflow.sdk import ObjectStoragePath

    from baton.store.engine import baton_home

    url = os.environ.get("BATON_EXPORT_URL") or f"file://{baton_home() / '.baton' / 'exports'}"
    return ObjectStoragePath(url, conn_id=os.environ.get("BATON_EXPORT_CONN_ID") or None)


def run_delivery(channel: str, shard: int, dags_folder: Path, context: dict[str, Any]) -> dict[str, Any]:
    from baton.airflow.arbitration import _load
    from baton.airflow.store import store_engine
    from baton.delivery.channels import adapter_for
    from baton.delivery.outbox import DeliverySettings, deliver_shard
    from baton.delivery.unsubscribe import secret_from_env
    from baton.spec import Channel

    policy, campaigns = _load(dags_folder)
    ch = Channel(channel)
    settings_ch = policy.channel(ch)
    params = context.get("params") or {}
    dag_run = context.get("dag_run")
    conf = getattr(dag_run, "conf", None) or {}
    allow_late = bool(conf.get("allow_late_send", params.get("allow_late_send", False)))
    conn = connection_info(settings_ch.connection)
    kwargs: dict[str, Any] = {}
    if channel in ("audience", "direct_mail"):
        kwargs["base_path"] = export_base()
    adapter = adapter_for(channel, conn, **kwargs)
    secret = None
    if channel == "email":
        secret = secret_from_env()
    settings = DeliverySettings(
        max_send_delay=policy.cycle.max_send_delay,
        allow_late_send=allow_late,
        rate_per_second=settings_ch.rate_per_second,
        unsubscribe_base=os.environ.get("BATON_UNSUBSCRIBE_URL", "http://localhost:8080/baton/unsubscribe"),
        unsubscribe_secret=secret,
    )

    def progress(stats: Any) -> None:
        log.info("%s shard %s: %d claimed, %d sent, %d failed, %d to retry", channel, shard, stats.claimed,
                 stats.sent, stats.failed, stats.retried)

    stats = deliver_shard(
        store_engine(), channel=channel, shard=shard, shards=delivery_shards(),
        campaigns={c.id: c for c in campaigns}, adapter=adapter, templates_dir=dags_folder / "templates",
        settings=settings, progress=progress,
    )
    return stats.as_dict()
