"""The cycle DAG's task bodies: take the decision token, decide a shard, commit (SPEC §4)."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from baton.airflow.tasks.context import cycle_time, run_id
from baton.airflow.tasks.errors import fail_fast_on_user_mistakes

log = logging.getLogger(__name__)


def shard_count() -> int:
    """Shards per cycle: ``BATON_ARBITRATION_SHARDS`` (default 2, one per core here)."""
    try:
        return max(1, int(os.environ.get("BATON_ARBITRATION_SHARDS", "2")))
    except ValueError:
        return 2


def begin(dags_folder: Path, waited: dict[str, Any], context: dict[str, Any]) -> list[int]:
    """Take the decision token and fix the cycle's batches; returns the shard ids to decide
    (none when the cycle is already decided)."""
    from baton.airflow.hooks.store import store_engine
    from baton.arbitration.cycle import begin_cycle
    from baton.arbitration.status import stranded_advice, stranded_batches
    from baton.identity.resolve import IdentitySettings
    from baton.spec import load_deployment

    with fail_fast_on_user_mistakes():
        policy, campaigns = load_deployment(dags_folder)
        at = cycle_time(context)
        engine = store_engine()
        start = begin_cycle(
            engine,
            at,
            campaigns,
            shards=shard_count(),
            run_id=run_id(context),
            expected=waited.get("expected", []),
            late=waited.get("late", []),
            identity=IdentitySettings.of(policy),
        )
    stranded = stranded_batches(engine, before=at)
    if stranded:
        log.warning(
            "batches wait for cycles that never ran (this cycle does not take them):\n%s",
            stranded_advice(stranded, policy.cycle.schedule),
        )
    if start.already_decided:
        log.info("cycle %s is already decided; this run changes nothing", at.isoformat())
        return []
    log.info(
        "cycle %s decides %d batch(es) in %d shard(s)", at.isoformat(), len(start.batch_ids), start.shards
    )
    return list(range(start.shards))


def decide(dags_folder: Path, shard: int, context: dict[str, Any]) -> dict[str, Any]:
    """Decide one shard of the cycle; returns its outcome counts."""
    from baton.airflow.hooks.store import store_engine
    from baton.arbitration.cycle import decide_shard
    from baton.spec import load_deployment

    with fail_fast_on_user_mistakes():
        policy, campaigns = load_deployment(dags_folder)
        stats = decide_shard(store_engine(), cycle_time(context), policy, campaigns, shard)
    if stats is None:
        return {"shard": shard, "alternatives": 0}
    return {"shard": shard, "alternatives": stats.alternatives, **stats.outcomes}


def commit(dags_folder: Path, context: dict[str, Any]) -> dict[str, Any]:
    """Publish the cycle: its decisions and outbox become real together; returns the counts."""
    from baton.airflow.hooks.store import store_engine
    from baton.arbitration.cycle import commit_cycle
    from baton.spec import load_deployment

    with fail_fast_on_user_mistakes():
        policy, campaigns = load_deployment(dags_folder)
        at = cycle_time(context)
        result = commit_cycle(store_engine(), at, policy, campaigns)
    return {
        "cycle_at": at.isoformat(),
        "already_decided": result.already_decided,
        "alternatives": result.alternatives,
        "selected": result.selected,
        "messages": result.messages,
    }
