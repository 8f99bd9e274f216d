"""The decision engine of SPEC §3, set-based in PostgreSQL.

One call of :meth:`CycleEngine.decide_shard` decides every alternative of the people in
one shard (a stable hash of ``customer_id``) for decision time ``T``:

1. ``_rows``  — one candidate per (campaign, person): the highest score, ties first returned;
2. ``_alt``   — one alternative per channel, joined with the person (address, timezone);
3. ``_chk``   — checks 1–8 as one CASE over hash joins (suppressions, consents, quiet hours,
   control-group buckets computed in SQL with the SPEC's SHA-256 bucket function);
4. ``_surv``  — the survivors (first surviving channel per campaign), ranked per person;
5. the cap walk — rank by rank (a handful of set-based statements per rank, never per
   person): each rank's candidates are checked against the person's running counters,
   which start from the history counts;
6. ``_out``   — every alternative with its outcome, reason and ``send_at``.

The engine reads the relations ``_cand`` (the candidate rows), ``customers``,
``consents``, ``suppressions`` and ``messages`` (the history).  The DAG path points
them at the store; ``baton simulate`` shadows them with temporary tables of the same
names, so both run exactly this SQL.  Nothing leaves the database but counts.

Interpretations the SPEC leaves open are written in the README ("Arbitration rules").
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from psycopg import sql as pgsql
from sqlalchemy.engine import Connection

from baton.spec import Campaign, Category, Channel, ConsentMode, Policy

log = logging.getLogger(__name__)

OUTCOMES = (
    "unknown_customer",
    "expired",
    "unreachable",
    "suppressed",
    "no_consent",
    "quiet_hours",
    "holdout_global",
    "holdout_campaign",
    "channel_alternative",
    "capped",
    "selected",
)
NOT_COUNTING = "('cancelled', 'expired', 'failed')"
WS = r"E' \t\n\r\f\v'"  # what counts as blank around an address


def _interval(td: timedelta) -> str:
    return f"interval '{int(td.total_seconds())} seconds'"


@dataclass
class ShardStats:
    shard: int
    alternatives: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)


class CycleEngine:
    """Decides one cycle ``at`` under ``policy`` for ``campaigns`` on connection ``conn``.

    ``live`` is the DAG path: history excludes the cycle's own time and also counts
    messages of *later* cycles that fall in the same window or period (only possible
    when cycles are decided out of order, e.g. a backfill beside the live schedule), so
    that out-of-order decisions never let a person exceed a cap.  ``baton simulate``
    uses ``live=False``: history is exactly what the files say.
    """

    def __init__(
        self,
        conn: Connection,
        at: datetime,
        policy: Policy,
        campaigns: Iterable[Campaign],
        *,
        live: bool = True,
    ) -> None:
        self.conn = conn
        self.at = at
        self.policy = policy
        self.campaigns = {c.id: c for c in campaigns}
        self.live = live
        self._raw: Any = conn.connection.driver_connection
        self._config_loaded = False

    # -- helpers ---------------------------------------------------------------------------
    def lit(self, value: Any) -> str:
        return str(pgsql.Literal(value).as_string(self._raw))

    def run(self, statement: str) -> int:
        started = time.perf_counter()
        cur = self._raw.execute(statement)
        took = time.perf_counter() - started
        if took > 0.5:
            log.debug("%.2fs: %s", took, statement[:160])
        return int(cur.rowcount or 0)

    def scalar(self, statement: str) -> Any:
        row = self._raw.execute(statement).fetchone()
        return None if row is None else row[0]

    @property
    def T(self) -> str:  # noqa: N802 - the SPEC's name for the decision time
        return f"{self.lit(self.at)}::timestamptz"

    # -- configuration as temporary tables -----------------------------------------------------
    def load_config(self) -> None:
        if self._config_loaded:
            return
        r = self.run
        r("drop table if exists _campaigns, _caps, _quiet, _chan")
        r(
            "create temp table _campaigns (campaign_id text primary key, priority int not null,"
            " transactional bool not null, topic text not null, tags text[] not null, channels text[] not null,"
            " holdout_bp numeric not null, counts bool not null, freq_limit int, freq_window interval,"
            " freq_period text)"
        )
        rows = []
        for c in self.campaigns.values():
            f = c.frequency
            rows.append(
                "("
                + ", ".join(
                    [
                        self.lit(c.id),
                        str(int(c.priority)),
                        "true" if c.category == Category.transactional else "false",
                        self.lit(c.topic),
                        self.lit(list(c.tags)) + "::text[]",
                        self.lit([ch.value for ch in c.channels]) + "::text[]",
                        repr(float(c.holdout_percent) * 100),
                        "true" if c.counts_toward_caps else "false",
                        str(f.limit) if f else "null",
                        _interval(f.window) if f and f.window else "null",
                        self.lit(f.period.value) if f and f.period else "null",
                    ]
                )
                + ")"
            )
        if rows:
            r("insert into _campaigns values " + ", ".join(rows))
        r(
            "create temp table _caps (idx int primary key, name text, lim int, win interval, period text,"
            " channel text, tag text)"
        )
        caps = []
        for i, cap in enumerate(self.policy.caps, start=1):
            caps.append(
                f"({i}, {self.lit(cap.name)}, {cap.limit}, "
                f"{_interval(cap.window) if cap.window else 'null'}, "
                f"{self.lit(cap.period.value) if cap.period else 'null'}, "
                f"{self.lit(cap.channel.value) if cap.channel else 'null'}, "
                f"{self.lit(cap.tag) if cap.tag else 'null'})"
            )
        if caps:
            r("insert into _caps values " + ", ".join(caps))
        r("create temp table _quiet (channel text primary key, qs time not null, qe time not null)")
        quiet = [
            f"({self.lit(ch.value)}, {self.lit(q.start.isoformat())}::time, {self.lit(q.end.isoformat())}::time)"
            for ch, q in self.policy.quiet_hours.items()
        ]
        if quiet:
            r("insert into _quiet values " + ", ".join(quiet))
        r("create temp table _chan (channel text primary key, opt_in bool not null)")
        r(
            "insert into _chan values "
            + ", ".join(
                f"({self.lit(ch.value)}, {'true' if self.policy.channel(ch).consent == ConsentMode.opt_in else 'false'})"
                for ch in Channel
            )
        )
        if not self.scalar("select to_regclass('pg_temp._tz') is not null"):
            r("create temp table _tz as select distinct name from pg_timezone_names")
            r("create unique index on _tz (name)")
        r("drop table if exists _sup")
        # suppressions in both forms: exact (trimmed) and lower-cased for email addresses
        r(
            f"create temp table _sup as select channel, false as lowered, btrim(address, {WS}) as addr"
            f" from suppressions union select channel, true, lower(btrim(address, {WS})) from suppressions"
        )
        r("analyze _campaigns; analyze _sup")
        self._config_loaded = True

    # -- the decision ---------------------------------------------------------------------------
    def decide_shard(self, shard: int = 0, shards: int = 1) -> ShardStats:
        """Decide the people of ``shard`` (of ``shards``); leaves the result in ``_out``."""
        self.load_config()
        stats = ShardStats(shard)
        r = self.run
        T = self.T
        clock = time.perf_counter()

        def lap(name: str) -> None:
            nonlocal clock
            now = time.perf_counter()
            stats.timings[name] = stats.timings.get(name, 0.0) + now - clock
            clock = now

        r("drop table if exists _rows, _alt, _chk, _first, _surv, _st, _fh, _walk, _out")
        shard_filter = "true" if shards <= 1 else f"baton_shard(customer_id, {int(shards)}) = {int(shard)}"
        r(
            "create temp table _rows as select distinct on (campaign_id, customer_id) campaign_id, customer_id,"
            " coalesce(score, 0) as score, channel, expires_at, batch_id, seq from _cand"
            f" where {shard_filter} and campaign_id in (select campaign_id from _campaigns)"
            " order by campaign_id, customer_id, score desc nulls last, batch_id, seq"
        )
        lap("dedupe")
        default_tz = self.lit(self.policy.default_timezone)
        addr = (
            "case ch.channel"
            f" when 'email' then nullif(btrim(cu.email, {WS}), '')"
            f" when 'sms' then nullif(btrim(cu.phone, {WS}), '')"
            f" when 'push' then nullif(btrim(cu.push_token, {WS}), '')"
            f" when 'direct_mail' then nullif(btrim(cu.postal_address, {WS}), '')"
            f" when 'audience' then coalesce(nullif(btrim(cu.email, {WS}), ''), nullif(btrim(cu.phone, {WS}), ''))"
            " end"
        )
        r(
            "create temp table _alt as select r.customer_id, r.campaign_id, ch.channel, ch.ord::int as ch_ord,"
            " r.score, r.expires_at, r.batch_id, r.seq, k.priority, k.transactional, k.topic, k.holdout_bp,"
            " cu.customer_id is not null as known,"
            f" coalesce(tz.name, {default_tz}) as tz, {addr} as address,"
            f" (ch.channel = 'email' or (ch.channel = 'audience' and nullif(btrim(cu.email, {WS}), '') is not null))"
            " as email_addr"
            " from _rows r join _campaigns k on k.campaign_id = r.campaign_id"
            " cross join lateral unnest(k.channels) with ordinality as ch(channel, ord)"
            " left join customers cu on cu.customer_id = r.customer_id"
            " left join _tz tz on tz.name = cu.timezone"
            " where r.channel is null or r.channel = ch.channel"
        )
        stats.alternatives = int(self.scalar("select count(*) from _alt"))
        lap("alternatives")
        gbp = float(self.policy.global_control_percent) * 100
        salt = self.lit(self.policy.holdout_salt + ":")
        global_check = (
            f"when not a.transactional and baton_bucket({salt} || a.customer_id) < {gbp!r} then 'holdout_global'"
            if gbp > 0
            else ""
        )
        r(
            "create temp table _chk as select a.*, q.quiet, q.quiet_end,"
            " case"
            " when not a.known then 'unknown_customer'"
            f" when a.expires_at is not null and a.expires_at <= {T} then 'expired'"
            " when a.address is null then 'unreachable'"
            " when (a.channel, a.email_addr, case when a.email_addr then lower(a.address) else a.address end)"
            " in (select channel, lowered, addr from _sup) then 'suppressed'"
            " when not a.transactional and (c0.status = 'opt_out' or c1.status = 'opt_out'"
            " or (ch.opt_in and c0.status is distinct from 'opt_in' and c1.status is distinct from 'opt_in'))"
            " then 'no_consent'"
            " when not a.transactional and q.quiet and a.expires_at is not null and q.quiet_end > a.expires_at"
            " then 'quiet_hours'"
            f" {global_check}"
            " when not a.transactional and a.holdout_bp > 0"
            " and baton_bucket(a.campaign_id || ':' || a.customer_id) < a.holdout_bp then 'holdout_campaign'"
            " end as pre,"
            " case when not a.transactional and (c0.status = 'opt_out' or c1.status = 'opt_out')"
            " then 'opt_out ' || case when c0.status = 'opt_out' then a.channel else a.channel || '/' || a.topic end"
            " when not a.transactional and ch.opt_in then 'no opt_in for ' || a.channel end as consent_reason"
            " from _alt a"
            " join _chan ch on ch.channel = a.channel"
            " left join consents c0 on c0.customer_id = a.customer_id and c0.channel = a.channel and c0.topic = ''"
            " left join consents c1 on c1.customer_id = a.customer_id and c1.channel = a.channel"
            " and c1.topic = a.topic"
            " left join lateral (select qq.channel is not null and case when qq.qs <= qq.qe"
            " then lt::time >= qq.qs and lt::time < qq.qe else lt::time >= qq.qs or lt::time < qq.qe end as quiet,"
            " ((lt::date + case when qq.qs > qq.qe and lt::time >= qq.qs then 1 else 0 end) + qq.qe)"
            " at time zone a.tz as quiet_end"
            f" from (select ({T} at time zone a.tz) as lt) l left join _quiet qq on qq.channel = a.channel) q on true"
        )
        lap("checks")
        r(
            "create temp table _first as select customer_id, campaign_id, min(ch_ord) as ord from _chk"
            " where pre is null group by customer_id, campaign_id"
        )
        caps = list(self.policy.caps)
        applies = ", ".join(
            f"({'true' if cap.channel is None else 'c.channel = ' + self.lit(cap.channel.value)}"
            f" and {'true' if cap.tag is None else self.lit(cap.tag) + ' = any(k.tags)'}) as a{i}"
            for i, cap in enumerate(caps, start=1)
        )
        r(
            "create temp table _surv as select c.customer_id, c.campaign_id, c.channel, c.tz, c.transactional,"
            " k.counts, k.freq_limit, k.freq_window, k.freq_period,"
            " row_number() over (partition by c.customer_id order by c.priority desc, c.score desc,"
            ' c.campaign_id collate "C") as rnk' + (", " + applies if applies else "")
            + " from _chk c join _first f on f.customer_id = c.customer_id and f.campaign_id = c.campaign_id"
            " and f.ord = c.ch_ord join _campaigns k on k.campaign_id = c.campaign_id where c.pre is null"
        )
        lap("rank")
        has_freq = bool(self.scalar("select exists (select 1 from _surv where freq_limit is not null)"))
        walk_needed = bool(caps) or has_freq
        if walk_needed:
            self._history(caps, has_freq)
            lap("history")
            self._walk(caps, has_freq)
            lap("walk")
        r(
            "create temp table _out as select c.customer_id, c.campaign_id, c.channel, c.batch_id, c.seq,"
            " c.priority, c.score, o.outcome,"
            " case o.outcome when 'capped' then w.block when 'no_consent' then c.consent_reason"
            " when 'channel_alternative' then 'first surviving channel: ' || fc.channel end as reason,"
            f" case when o.outcome = 'selected' then case when not c.transactional and c.quiet then c.quiet_end"
            f" else {T} end end as send_at"
            " from _chk c left join _first f on f.customer_id = c.customer_id and f.campaign_id = c.campaign_id"
            " left join _chk fc on fc.customer_id = c.customer_id and fc.campaign_id = c.campaign_id"
            " and fc.ch_ord = f.ord and c.pre is null and c.ch_ord > f.ord"
            + (
                " left join _walk w on w.customer_id = c.customer_id and w.campaign_id = c.campaign_id"
                if walk_needed
                else " left join (select null::text as block) w on false"
            )
            + " cross join lateral (select coalesce(c.pre, case when c.ch_ord > f.ord then 'channel_alternative'"
            " when w.block is not null then 'capped' else 'selected' end) as outcome) o"
        )
        for outcome, n in self._raw.execute("select outcome, count(*) from _out group by outcome").fetchall():
            stats.outcomes[outcome] = int(n)
        lap("output")
        log.info(
            "cycle %s shard %s/%s: %d alternatives -> %s (%s)",
            self.at.isoformat(), shard, shards, stats.alternatives,
            ", ".join(f"{k}={v}" for k, v in sorted(stats.outcomes.items())),
            ", ".join(f"{k} {v:.2f}s" for k, v in stats.timings.items()),
        )
        return stats

    # -- caps -----------------------------------------------------------------------------------
    def _range(self, window: str | None, period: str | None, tz: str, ts: str) -> str:
        """SQL condition: message time ``ts`` lies in the cap's range for decision time T."""
        T = self.T
        if window is not None:
            lower = f"{ts} > {T} - {window}"
            upper = f"{ts} < {T} + {window}" if self.live else f"{ts} <= {T}"
        else:
            assert period is not None
            local = f"date_trunc({period}, {T} at time zone {tz})"
            lower = f"{ts} >= ({local} at time zone {tz})"
            upper = (
                f"{ts} < (({local} + ('1 ' || {period})::interval) at time zone {tz})" if self.live
                else f"{ts} <= {T}"
            )
        own = f" and {ts} <> {T}" if self.live else ""
        return f"({lower} and {upper}{own})"

    def _history(self, caps: list[Any], has_freq: bool) -> None:
        r = self.run
        T = self.T
        # how far back (and, live, forward) any cap can look
        spans = [c.window for c in caps if c.window is not None]
        if any(c.period is not None for c in caps) or has_freq:
            spans.append(timedelta(days=32))
        if has_freq:
            spans.extend(c.frequency.window for c in self.campaigns.values() if c.frequency and c.frequency.window)
        span = _interval(max(spans)) if spans else "interval '0 seconds'"
        upper = f"h.cycle_at < {T} + {span}" if self.live else f"h.cycle_at <= {T}"
        cols = []
        for i, cap in enumerate(caps, start=1):
            cond = [
                "h.counts_toward_caps",
                self._range(
                    _interval(cap.window) if cap.window else None,
                    self.lit(cap.period.value) if cap.period else None,
                    "p.tz",
                    "h.cycle_at",
                ),
            ]
            if cap.channel is not None:
                cond.append(f"h.channel = {self.lit(cap.channel.value)}")
            if cap.tag is not None:
                cond.append(f"{self.lit(cap.tag)} = any(h.tags)")
            cols.append(f"count(h.customer_id) filter (where {' and '.join(cond)})::int as u{i}")
        r(
            "create temp table _st as select p.customer_id"
            + "".join(", " + c for c in cols)
            + " from (select distinct customer_id, tz from _surv) p"
            " left join messages h on h.customer_id = p.customer_id"
            f" and h.cycle_at > {T} - {span} and {upper} and h.status not in {NOT_COUNTING}"
            " group by p.customer_id"
        )
        r("create unique index on _st (customer_id)")
        if has_freq:
            rng = (
                "case when s.freq_window is not null then "
                + self._range("s.freq_window", None, "s.tz", "h.cycle_at")
                + " else "
                + self._range(None, "s.freq_period", "s.tz", "h.cycle_at")
                + " end"
            )
            r(
                "create temp table _fh as select s.customer_id, s.campaign_id, count(*)::int as n"
                " from _surv s join messages h on h.customer_id = s.customer_id and h.campaign_id = s.campaign_id"
                f" and h.status not in {NOT_COUNTING} and h.cycle_at > {T} - {span} and {upper}"
                f" where s.freq_limit is not null and {rng}"
                " group by s.customer_id, s.campaign_id"
            )
        r("analyze _st")

    def _walk(self, caps: list[Any], has_freq: bool) -> None:
        """Walk every person's ranking, one rank at a time, all people at once."""
        r = self.run
        r("create index on _surv (rnk)")
        r("analyze _surv")
        blocks = " ".join(
            f"when s.a{i} and st.u{i} >= {cap.limit} then {self.lit(cap.name)}" for i, cap in enumerate(caps, 1)
        )
        if has_freq:
            blocks += " when s.freq_limit is not null and coalesce(fh.n, 0) >= s.freq_limit then 'campaign_frequency'"
        fh_join = (
            " left join _fh fh on fh.customer_id = s.customer_id and fh.campaign_id = s.campaign_id" if has_freq else ""
        )
        r("create temp table _walk (customer_id text, campaign_id text, rnk int, block text)")
        max_rank = int(self.scalar("select coalesce(max(rnk), 0) from _surv"))
        for k in range(1, max_rank + 1):
            r(
                "insert into _walk select s.customer_id, s.campaign_id, s.rnk,"
                f" case when s.transactional then null {blocks} end"
                f" from _surv s join _st st on st.customer_id = s.customer_id{fh_join} where s.rnk = {k}"
            )
            if caps:
                sets = ", ".join(f"u{i} = st.u{i} + s.a{i}::int" for i in range(1, len(caps) + 1))
                r(
                    f"update _st st set {sets} from _walk w join _surv s on s.customer_id = w.customer_id"
                    f" and s.campaign_id = w.campaign_id where w.rnk = {k} and w.block is null and s.counts"
                    " and st.customer_id = w.customer_id"
                )
        r("create index on _walk (customer_id, campaign_id)")
