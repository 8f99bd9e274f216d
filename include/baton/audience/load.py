"""Run a campaign's audience query in the store and replace its candidate batch.

One batch per (campaign, cycle) and data interval: a campaign that runs more often than
the arbitration cycle feeds several batches into one cycle (they are deduplicated per
person when the cycle decides).  Loading is one transaction: the batch row is upserted,
its old candidates deleted and the query's rows inserted with ``INSERT … SELECT`` — the
rows never travel through Python.  A rerun therefore replaces the batch, never adds to
it.  A batch that a cycle has already decided is left untouched (its decisions and
messages exist; replacing it could send a second message), and the load says so.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Engine

from baton.audience.render import render_audience_sql
from baton.errors import AudienceError
from baton.spec import Campaign
from baton.store.shards import bucket_sql
from baton.store.tx import transaction

log = logging.getLogger(__name__)

RESERVED = ("customer_id", "score", "channel")


@dataclass(frozen=True)
class BatchResult:
    """What :func:`load_batch` did: the batch written (``row_count`` candidates, ``replaced`` an earlier
    one), or nothing when the (campaign, cycle) batch was already decided (``row_count`` -1)."""

    campaign_id: str
    cycle_at: datetime
    batch_id: int | None
    row_count: int
    replaced: bool
    already_decided: bool = False


def audience_context(
    campaign: Campaign, data_interval_start: datetime, data_interval_end: datetime, cycle_at: datetime
) -> dict[str, Any]:
    """The variables an audience query is rendered with: the run's data interval, the cycle, the campaign's params."""
    return {
        "data_interval_start": data_interval_start,
        "data_interval_end": data_interval_end,
        "cycle_at": cycle_at,
        "params": dict(campaign.params),
    }


def load_batch(
    engine: Engine,
    campaign: Campaign,
    *,
    data_interval_start: datetime,
    data_interval_end: datetime,
    cycle_at: datetime,
    run_id: str | None = None,
    source: str | None = None,
) -> BatchResult:
    """Render and run the audience SQL, replacing the (campaign, cycle) batch atomically."""
    src = source or f"campaign {campaign.id}: audience.sql"
    rendered = render_audience_sql(
        campaign.audience.sql,
        audience_context(campaign, data_interval_start, data_interval_end, cycle_at),
        source=src,
    )
    expires_at = cycle_at + campaign.expires_after
    channels = [c.value for c in campaign.channels]
    with transaction(engine) as tx:
        tx.execute("select pg_advisory_xact_lock(hashtext(%(key)s))", {"key": f"baton:batch:{campaign.id}"})
        existing = tx.execute(
            "select batch_id, decided_cycle_at from candidate_batches"
            " where campaign_id = %(campaign)s and cycle_at = %(cycle)s and data_interval_start = %(start)s"
            " for update",
            {"campaign": campaign.id, "cycle": cycle_at, "start": data_interval_start},
        ).fetchone()
        if existing is not None and existing[1] is not None:
            tx.rollback()
            log.warning(
                "batch %s of campaign %s for cycle %s was already decided in cycle %s; "
                "a rerun does not change decided batches",
                existing[0],
                campaign.id,
                cycle_at.isoformat(),
                existing[1].isoformat(),
            )
            return BatchResult(campaign.id, cycle_at, existing[0], -1, False, already_decided=True)
        # shape check first: a clear error beats a failed insert
        try:
            cur = tx.execute(f"select * from ({rendered.sql}) q limit 0", rendered.params)
        except Exception as exc:
            raise AudienceError(f"{src}: the audience query failed: {_pg_message(exc)}") from exc
        shape = list(cur.description or [])
        columns = [d.name for d in shape]
        if "customer_id" not in columns:
            raise AudienceError(
                f"{src}: the audience query must return a customer_id column (it returned: {', '.join(columns)})"
            )
        row = tx.execute(
            "insert into candidate_batches as b (campaign_id, cycle_at, data_interval_start, data_interval_end,"
            " status, row_count, run_id, loaded_at)"
            " values (%(campaign)s, %(cycle)s, %(start)s, %(end)s, 'ready', 0, %(run)s, now())"
            " on conflict (campaign_id, cycle_at, data_interval_start) do update set"
            " data_interval_end = excluded.data_interval_end, run_id = excluded.run_id, loaded_at = now()"
            " returning batch_id",
            {
                "campaign": campaign.id,
                "cycle": cycle_at,
                "start": data_interval_start,
                "end": data_interval_end,
                "run": run_id,
            },
        ).fetchone()
        assert row is not None
        batch_id = int(row[0])
        deleted = tx.execute(
            "delete from candidates where batch_id = %(batch)s", {"batch": batch_id}
        ).rowcount
        replaced = deleted > 0 or existing is not None
        params = dict(rendered.params)
        params.update({"_batch": batch_id, "_exp": expires_at})
        try:
            count = tx.execute(_insert_sql(rendered.sql, shape), params).rowcount
        except Exception as exc:
            raise AudienceError(f"{src}: loading the audience rows failed: {_pg_message(exc)}") from exc
        nulls, bad_channels = tx.execute(
            "select count(*) filter (where customer_id is null),"
            " array_agg(distinct channel) filter (where channel is not null and channel <> all(%(channels)s))"
            " from candidates where batch_id = %(batch)s",
            {"channels": channels, "batch": batch_id},
        ).fetchone()
        if nulls:
            raise AudienceError(
                f"{src}: {nulls} row(s) have an empty customer_id; filter them out in the query"
            )
        if bad_channels:
            raise AudienceError(
                f"{src}: rows name channel(s) {', '.join(sorted(bad_channels))} that the campaign does not have"
                f" (its channels: {', '.join(channels)})"
            )
        tx.execute(
            "update candidate_batches set row_count = %(count)s where batch_id = %(batch)s",
            {"count": count, "batch": batch_id},
        )
    log.info(
        "campaign %s: batch %s for cycle %s %s with %d candidate rows",
        campaign.id,
        batch_id,
        cycle_at.isoformat(),
        "replaced" if replaced else "created",
        count,
    )
    return BatchResult(campaign.id, cycle_at, batch_id, count, replaced)


_TEXT_TYPES = (25, 1043)  # text, varchar: to_jsonb(v) #>> '{}' is v itself
_EXACT_FLOAT_TYPES = (
    20,
    21,
    23,
    701,
    1700,
)  # int8/2/4, float8, numeric: v::float8 = (to_jsonb(v) #>> '{}')::float8
_MAX_PAYLOAD_COLUMNS = 50  # jsonb_build_object takes at most 100 arguments


def _insert_sql(query: str, description: Any) -> str:
    """``INSERT … SELECT`` of the audience rows into the batch (``%(_batch)s``, ``%(_exp)s``).

    Every value is exactly what ``to_jsonb`` of the row gives: ``customer_id`` and ``channel``
    as the text of their JSON value, ``score`` as that text read as float8, and the payload is
    the row as JSON without those three columns.  When the column names are distinct (and not
    too many) the payload is built with ``jsonb_build_object`` of the other columns and the
    three are read directly — the same values without building and pruning a JSON document of
    the whole row per row.  ``bucket`` is the person's shard hash (``baton_shard``)."""
    names = [d.name for d in description]
    types = {d.name: d.type_code for d in description}
    q = pgsql_ident

    def text(col: str) -> str:  # to_jsonb(q) ->> col
        return f"q.{q(col)}" if types[col] in _TEXT_TYPES else f"(to_jsonb(q.{q(col)}) #>> '{{}}')"

    if len(set(names)) == len(names) and len(names) <= _MAX_PAYLOAD_COLUMNS:
        rest = [c for c in names if c not in RESERVED]
        payload = (
            "jsonb_build_object(" + ", ".join(f"{_lit(c)}, q.{q(c)}" for c in rest) + ")"
            if rest
            else "'{}'::jsonb"
        )
        if "score" not in names:
            score = "0"
        elif types["score"] in _EXACT_FLOAT_TYPES:
            score = "coalesce(q.score::float8, 0)"
        else:
            score = f"coalesce(({text('score')})::float8, 0)"
        channel = f"nullif({text('channel')}, '')" if "channel" in names else "null"
        select = f"{text('customer_id')}, {score}, {channel}, {payload}"
        source = f"({query}) q"
    else:
        drop = " ".join(f"- '{c}'" for c in RESERVED)
        select = f"j->>'customer_id', coalesce((j->>'score')::float8, 0), nullif(j->>'channel', ''), j {drop}"
        source = f"(select to_jsonb(q) as j from ({query}) q) q"
    return (
        "insert into candidates (batch_id, seq, customer_id, score, channel, payload, expires_at, bucket)"
        f" select %(_batch)s, row_number() over (), s.*, %(_exp)s, {bucket_sql('s.customer_id')}"
        f" from (select {select} from {source}) s(customer_id, score, channel, payload)"
    )


def pgsql_ident(name: str) -> str:
    """*name* quoted as a PostgreSQL identifier (``%`` doubled for the driver's parameter syntax)."""
    return '"' + name.replace('"', '""').replace("%", "%%") + '"'


def _lit(value: str) -> str:
    return "'" + value.replace("'", "''").replace("%", "%%") + "'"


def _pg_message(exc: BaseException) -> str:
    diag = getattr(exc, "diag", None)
    primary = getattr(diag, "message_primary", None)
    return str(primary or exc).strip()
