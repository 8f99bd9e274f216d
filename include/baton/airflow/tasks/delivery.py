"""The delivery task body: one mapped task per channel (its own pool ``baton_<channel>``),
mapped over delivery shards.  Credentials come only from the Airflow Connection named in
``policy.channels.<ch>.connection`` (default ``baton_<ch>``).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from baton.airflow.tasks.errors import fail_fast_on_user_mistakes

log = logging.getLogger(__name__)


def delivery_shards() -> int:
    """Shards per channel: ``BATON_DELIVERY_SHARDS`` (default 2)."""
    try:
        return max(1, int(os.environ.get("BATON_DELIVERY_SHARDS", "2")))
    except ValueError:
        return 2


def allow_late_send(context: dict[str, Any]) -> bool:
    """Whether the run was started with ``allow_late_send`` (conf, else the DAG param)."""
    params = context.get("params") or {}
    conf = getattr(context.get("dag_run"), "conf", None) or {}
    return bool(conf.get("allow_late_send", params.get("allow_late_send", False)))


def run_delivery(channel: str, shard: int, dags_folder: Path, context: dict[str, Any]) -> dict[str, Any]:
    """Hand every due message of (channel, shard) to the channel; returns the counts.

    What the channel needs is read from its adapter's declared capabilities: an export
    folder (``needs_export_path``), signed unsubscribe links (``needs_unsubscribe_link``).
    A user mistake (a campaign or policy file, a connection's settings) fails the task
    without retries; a channel whose connection failed fails it with a transient error after
    the messages are put back, so that Airflow retries.
    """
    from baton.airflow.hooks.channels import connection_info, export_base
    from baton.airflow.hooks.store import store_engine
    from baton.delivery.channels import adapter_class, adapter_for
    from baton.delivery.outbox import DeliverySettings, deliver_shard
    from baton.delivery.unsubscribe import secret_from_env
    from baton.errors import TransientDeliveryError
    from baton.spec import Channel, load_deployment

    with fail_fast_on_user_mistakes():
        policy, campaigns = load_deployment(dags_folder)
        settings_ch = policy.channel(Channel(channel))
        conn = connection_info(settings_ch.connection)
        kwargs: dict[str, Any] = {}
        if adapter_class(channel, conn).needs_export_path:
            kwargs["base_path"] = export_base()
        adapter = adapter_for(channel, conn, **kwargs)
        secret = secret_from_env() if adapter.needs_unsubscribe_link else None
        settings = DeliverySettings(
            max_send_delay=policy.cycle.max_send_delay,
            allow_late_send=allow_late_send(context),
            rate_per_second=settings_ch.rate_per_second,
            unsubscribe_base=os.environ.get(
                "BATON_UNSUBSCRIBE_URL", "http://localhost:8080/baton/unsubscribe"
            ),
            unsubscribe_secret=secret,
        )

    def progress(stats: Any) -> None:
        log.info(
            "%s shard %s: %d claimed, %d sent, %d failed, %d to retry",
            channel,
            shard,
            stats.claimed,
            stats.sent,
            stats.failed,
            stats.retried,
        )

    stats = deliver_shard(
        store_engine(),
        channel=channel,
        shard=shard,
        shards=delivery_shards(),
        campaigns={c.id: c for c in campaigns},
        adapter=adapter,
        templates_dir=dags_folder / "templates",
        settings=settings,
        progress=progress,
    )
    if stats.connection_failed:
        raise TransientDeliveryError(
            f"{channel} shard {shard}: the connection of {settings_ch.connection!r} failed "
            f"({stats.connection_failed}); {stats.sent} sent, {stats.retried} back to pending with a backoff "
            "and the rest not claimed: the task is retried"
        )
    return stats.as_dict()
