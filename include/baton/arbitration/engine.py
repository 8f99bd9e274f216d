"""The decision engine of SPEC §3, set-based in PostgreSQL.

One call of :meth:`CycleEngine.decide_shard` decides every alternative of the people in
one shard (a stable hash of ``customer_id``) for decision time ``T``:

1. ``_p``    — per person of the shard, what depends on the person only: reachability and
   suppression per channel, consents, quiet hours and local periods in their timezone, the
   global control group (the SPEC's SHA-256 bucket function, computed in SQL);
2. ``_st``   — ``_p`` and the used room of every cap and campaign frequency cap (history);
3. ``_pc``   — one row per (person, campaign), its best candidate row (highest score, ties
   first returned), ranked in the person's ranking, with checks 1–8 per alternative as one
   CASE over hash joins, and its first surviving channel;
4. the cap walk — rank by rank (a handful of set-based statements per rank, never per
   person): each rank's candidates are checked against the person's running counters,
   which start from the history counts;
5. ``_dec``/``_out`` — every alternative with its outcome, reason and ``send_at``.

The engine reads the relations ``_cand`` (the candidate rows), ``customers``,
``consents``, ``suppressions`` and ``messages`` (the history).  The DAG path points
them at the store; ``baton simulate`` shadows them with temporary tables of the same
names, so both run exactly this SQL.  Nothing leaves the database but counts.

Interpretations the SPEC leaves open are written in the README ("Arbitration rules").
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from psycopg import sql as pgsql
from sqlalchemy.engine import Connection

from baton.identity.resolve import IdentitySettings, persons_as_of
from baton.spec import Campaign, Category, Channel, ConsentMode, Policy
from baton.store.raw import driver_connection
from baton.store.shards import bucket_sql
from baton.store.shards import predicate as shard_predicate
from baton.store.status import MessageStatus, sql_in

log = logging.getLogger(__name__)

NOT_COUNTING = sql_in(MessageStatus.CANCELLED, MessageStatus.EXPIRED, MessageStatus.FAILED)

#: One letter per outcome: how ``cycle_decisions.outcomes`` spells the alternatives' outcomes
#: (one letter each, in the campaign's channel order) — a few bytes per row instead of an
#: array of words, for millions of rows per cycle.  The view ``decisions`` spells them out.
OUTCOME_CODES: dict[str, str] = {
    "k": "unknown_customer",
    "e": "expired",
    "u": "unreachable",
    "p": "suppressed",
    "n": "no_consent",
    "q": "quiet_hours",
    "g": "holdout_global",
    "h": "holdout_campaign",
    "a": "channel_alternative",
    "c": "capped",
    "s": "selected",
}
#: One letter per channel: how ``cycle_decisions.channels`` spells the alternatives' channels.
CHANNEL_CODES: dict[str, str] = {"e": "email", "s": "sms", "p": "push", "a": "audience", "d": "direct_mail"}
_CHANNEL_LETTER = {v: k for k, v in CHANNEL_CODES.items()}
#: Separates the alternatives' reasons in ``cycle_decisions.reasons`` (null when none has one).
REASON_SEP = "\x1f"


def outcome_sql(code: str) -> str:
    """SQL: the outcome named by the one-letter ``code`` expression."""
    return f"case {code} " + " ".join(f"when '{k}' then '{v}'" for k, v in OUTCOME_CODES.items()) + " end"


def channel_sql(code: str) -> str:
    """SQL: the channel named by the one-letter ``code`` expression."""
    return f"case {code} " + " ".join(f"when '{k}' then '{v}'" for k, v in CHANNEL_CODES.items()) + " end"


WS = r"E' \t\n\r\f\x0b'"  # what counts as blank around an address (\v is no escape in SQL: \x0b)


def _interval(td: timedelta) -> str:
    return f"interval '{int(td.total_seconds())} seconds'"


def _bucket_sql(key: str) -> str:
    """SPEC's ``bucket(key)`` inline: the same value as ``baton_bucket(key)`` (first 8 hex digits
    of SHA-256 = its first 4 bytes, as an unsigned integer, modulo 10000) at a fraction of the
    cost of calling that SQL function, which PostgreSQL does not inline."""
    return (
        f"((('x' || encode(substring(sha256(convert_to({key}, 'UTF8')) from 1 for 4), 'hex'))"
        "::bit(32)::bigint % 10000)::int)"
    )


@dataclass
class ShardStats:
    """What deciding one shard produced: alternatives, outcome counts and the time of each step."""

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
        by_creation: bool = True,
        persons_sql: str | None = None,
    ) -> None:
        self.conn = conn
        self.at = at
        self.policy = policy
        self.campaigns = {c.id: c for c in campaigns}
        self.live = live
        self.by_creation = by_creation
        self.persons_sql = persons_sql
        self.identity = IdentitySettings.of(policy)
        self._raw: Any = driver_connection(conn)
        self._config_loaded = False
        self._max_rank = 0
        self._linked = False

    # -- helpers ---------------------------------------------------------------------------
    def lit(self, value: Any) -> str:
        """*value* as a SQL literal for the statements built here."""
        return str(pgsql.Literal(value).as_string(self._raw))

    def run(self, statement: str) -> int:
        """Execute *statement* on the cycle's connection; the number of rows it touched (slow ones logged)."""
        started = time.perf_counter()
        cur = self._raw.execute(statement)
        took = time.perf_counter() - started
        if took > 0.5:
            log.debug("%.2fs: %s", took, statement[:160])
        return int(cur.rowcount or 0)

    def scalar(self, statement: str) -> Any:
        """The first column of the first row of *statement*, or None."""
        row = self._raw.execute(statement).fetchone()
        return None if row is None else row[0]

    @contextmanager
    def setting(self, name: str, value: str) -> Iterator[None]:
        """A planner or memory setting for the statements inside (``set local``, then back to
        the session's value)."""
        self.run(f"set local {name} = {value}")
        yield
        self.run(f"set local {name} to default")

    @property
    def T(self) -> str:  # noqa: N802 - the SPEC's name for the decision time
        """The decision time as a SQL ``timestamptz`` literal."""
        return f"{self.lit(self.at)}::timestamptz"

    # -- configuration as temporary tables -----------------------------------------------------
    def load_config(self) -> None:
        """The policy and campaigns as temporary tables (channels per position, caps, quiet hours,
        timezones), once per engine."""
        if self._config_loaded:
            return
        r = self.run
        r("drop table if exists _campaigns, _caps, _quiet, _chan, _tzb")
        # per channel position i of a campaign: the channel, its consent keys and no_consent
        # outcomes (with their reason), its consent mode, and which caps apply to it
        camps = list(self.campaigns.values())
        self._freq = [c for c in camps if c.frequency]
        n = self._positions = max([len(c.channels) for c in camps] + [1])
        caps = list(self.policy.caps)
        poscols = []
        for i in range(1, n + 1):
            poscols += [
                f"ch{i} text",
                f"k0_{i} text",
                f"k1_{i} text",
                f"nc0_{i} text",
                f"nc1_{i} text",
                f"nci_{i} text",
                f"oi_{i} bool",
            ]
            poscols += [f"ap{j}_{i} bool" for j in range(1, len(caps) + 1)]
        r(
            "create temp table _campaigns (campaign_id text primary key, priority int not null,"
            " transactional bool not null, topic text not null, tags text[] not null, cc text not null,"
            " holdout_bp numeric not null, counts bool not null, freq_limit int, freq_window interval,"
            " freq_period text, freq_idx int, " + ", ".join(poscols) + ")"
        )
        rows = []
        for c in camps:
            f = c.frequency
            pos: list[str] = []
            for i in range(n):
                ch = c.channels[i].value if i < len(c.channels) else None
                if ch is None:
                    pos += ["null"] * (7 + len(caps))
                    continue
                opt_in = self.policy.channel(c.channels[i]).consent == ConsentMode.opt_in
                pos += [
                    self.lit(ch),
                    self.lit(ch + "\x1f"),
                    self.lit(ch + "\x1f" + c.topic),
                    self.lit("n|opt_out " + ch),
                    self.lit(f"n|opt_out {ch}/{c.topic}"),
                    self.lit("n|no opt_in for " + ch),
                    "true" if opt_in else "false",
                ]
                pos += [
                    "true"
                    if (cap.channel is None or cap.channel.value == ch)
                    and (cap.tag is None or cap.tag in c.tags)
                    else "false"
                    for cap in caps
                ]
            rows.append(
                "("
                + ", ".join(
                    [
                        self.lit(c.id),
                        str(int(c.priority)),
                        "true" if c.category == Category.transactional else "false",
                        self.lit(c.topic),
                        self.lit(list(c.tags)) + "::text[]",
                        self.lit("".join(_CHANNEL_LETTER[ch.value] for ch in c.channels)),
                        repr(float(c.holdout_percent) * 100),
                        "true" if c.counts_toward_caps else "false",
                        str(f.limit) if f else "null",
                        _interval(f.window) if f and f.window else "null",
                        self.lit(f.period.value) if f and f.period else "null",
                        str(self._freq.index(c) + 1) if f else "null",
                        *pos,
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
        cap_rows: list[str] = []
        for i, cap in enumerate(self.policy.caps, start=1):
            cap_rows.append(
                f"({i}, {self.lit(cap.name)}, {cap.limit}, "
                f"{_interval(cap.window) if cap.window else 'null'}, "
                f"{self.lit(cap.period.value) if cap.period else 'null'}, "
                f"{self.lit(cap.channel.value) if cap.channel else 'null'}, "
                f"{self.lit(cap.tag) if cap.tag else 'null'})"
            )
        if cap_rows:
            r("insert into _caps values " + ", ".join(cap_rows))
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
        self._timezones()
        r("drop table if exists _sup")
        # suppressions in both forms: exact (trimmed) and lower-cased for email addresses
        r(
            f"create temp table _sup as select channel, false as lowered, btrim(address, {WS}) as addr"
            f" from suppressions union select channel, true, lower(btrim(address, {WS})) from suppressions"
        )
        r("analyze _campaigns; analyze _sup")
        self._persons_as_of_t()
        self._config_loaded = True

    def _persons_as_of_t(self) -> None:
        """``_pm``: the profiles of persons with two or more profiles at T (SPEC §6), with the person's
        shard hash ``pbucket``: from ``persons_sql`` (the cycle's, computed once when it began), else
        computed here.  Empty when nothing links (then every row is its own person and the decision
        runs exactly as without identity)."""
        self.run("drop table if exists _pm0, _pm")
        if self.persons_sql is None:
            persons_as_of(self._raw, self.at, self.identity, by_creation=self.by_creation, table="_pm0")
        else:  # computed once for the cycle (every shard decides with the same persons)
            self.run(f"create temp table _pm0 as {self.persons_sql}")
        self.run(
            f"create temp table _pm as select customer_id, person_id, {bucket_sql('person_id')} as pbucket from _pm0"
        )
        self.run("drop table _pm0")
        self.run("create unique index on _pm (customer_id)")
        self.run("analyze _pm")
        self._linked = bool(self.scalar("select exists (select 1 from _pm)"))

    def _timezones(self) -> None:
        """``_tzb``: per timezone (every valid name, and the default), what depends on the
        person's timezone only: quiet or not at T per channel with quiet hours and the end of
        those quiet hours, and the start and end of the local periods the caps use; the row
        that is not ``valid`` is the default timezone's (for missing and invalid names)."""
        T = self.T
        cols: list[str] = []
        names: list[str] = []
        for ch, q in self.policy.quiet_hours.items():
            qs, qe = f"{self.lit(q.start.isoformat())}::time", f"{self.lit(q.end.isoformat())}::time"
            cols.append(
                f"case when {qs} <= {qe} then lt::time >= {qs} and lt::time < {qe}"
                f" else lt::time >= {qs} or lt::time < {qe} end as q_{ch.value}"
            )
            cols.append(
                f"((lt::date + case when {qs} > {qe} and lt::time >= {qs} then 1 else 0 end) + {qe})"
                f" at time zone name as qe_{ch.value}"
            )
            names += [f"q_{ch.value}", f"qe_{ch.value}"]
        periods = sorted(
            {c.period.value for c in self.policy.caps if c.period}
            | {c.frequency.period.value for c in self._freq if c.frequency and c.frequency.period}
        )
        for p in periods:
            local = f"date_trunc('{p}', lt)"
            cols.append(f"({local} at time zone name) as lo_{p}")
            cols.append(f"(({local} + interval '1 {p}') at time zone name) as hi_{p}")
            names += [f"lo_{p}", f"hi_{p}"]
        self._tz_columns = names
        sel = "".join(", " + c for c in cols)
        default = self.lit(self.policy.default_timezone)
        self.run(
            f"create temp table _tzb as select name, valid{sel} from (select name, valid, ({T} at time zone name) as lt"
            f" from (select name, true as valid from _tz union all select {default}, false) n) x"
        )
        self.run("create index on _tzb (name)")
        self.run("analyze _tzb")

    # -- the decision ---------------------------------------------------------------------------
    WORK_TABLES = ("_p", "_pc", "_st", "_hc", "_lf", "_lpp", "_lpo")

    def drop_work(self) -> None:
        """Drop the working relations of a previous shard of this session."""
        self.run("drop view if exists _out, _dec")
        walks = ", ".join(f"_w{k}" for k in range(1, len(self.campaigns) + 2))
        self.run(f"drop table if exists {', '.join(self.WORK_TABLES)}, {walks}")

    def _has_bucket(self, relation: str) -> bool:
        """Whether ``relation`` (as the search path resolves it) carries the person's shard hash."""
        return bool(
            self.scalar(
                f"select exists (select 1 from pg_attribute where attrelid = to_regclass({self.lit(relation)})"
                " and attname = 'bucket' and not attisdropped)"
            )
        )

    def decide_shard(self, shard: int = 0, shards: int = 1, *, count: bool = True) -> ShardStats:
        """Decide the people of ``shard`` (of ``shards``); leaves the result in the view ``_out``.

        With ``count=False`` the caller counts the outcomes itself (e.g. while storing them).
        """
        self.load_config()
        stats = ShardStats(shard)
        clock = time.perf_counter()

        def lap(name: str) -> None:
            nonlocal clock
            now = time.perf_counter()
            stats.timings[name] = stats.timings.get(name, 0.0) + now - clock
            clock = now

        self.drop_work()
        n = self._positions
        caps = list(self.policy.caps)
        if shards <= 1:
            shard_filter = "true"
        elif self._has_bucket("_cand"):  # the store's candidates carry the profile's hash (see load_batch)
            shard_filter = shard_predicate("bucket", shard, shards)
        else:
            shard_filter = shard_predicate(bucket_sql("customer_id"), shard, shards)
        person_filter = "true" if shards <= 1 else shard_predicate("pbucket", shard, shards)
        if self._linked and shards > 1:
            # a linked profile's rows belong to the shard of its person, not of its own hash
            shard_filter = (
                f"((({shard_filter}) and customer_id not in (select customer_id from _pm))"
                f" or customer_id in (select customer_id from _pm where {person_filter}))"
            )
        self._persons(shard_filter, person_filter)
        lap("people")
        if self._needs_history:
            self._history(shard, shards, person_filter)
            lap("history")
        self._checks(shard_filter, n, caps)
        lap("checks")
        max_rank = self._max_rank = self._walk(caps)
        lap("walk")
        self._output(n, max_rank)
        if count:
            stats.alternatives = 0
            for outcome, cnt in self._raw.execute(
                "select outcome, count(*) from _out group by outcome"
            ).fetchall():
                stats.outcomes[outcome] = int(cnt)
                stats.alternatives += int(cnt)
            lap("output")
            self.log_stats(stats, shards)
        return stats

    def log_stats(self, stats: ShardStats, shards: int) -> None:
        """Log a decided shard's outcome counts and step timings."""
        log.info(
            "cycle %s shard %s/%s: %d alternatives -> %s (%s)",
            self.at.isoformat(),
            stats.shard,
            shards,
            stats.alternatives,
            ", ".join(f"{k}={v}" for k, v in sorted(stats.outcomes.items())),
            ", ".join(f"{k} {v:.2f}s" for k, v in stats.timings.items()),
        )

    @property
    def _needs_history(self) -> bool:
        return bool(self.policy.caps) or any(c.frequency for c in self.campaigns.values())

    def _persons(self, shard_filter: str, person_filter: str) -> None:
        """``_p``: one row per known profile with candidate rows in the shard, with everything the
        checks need that depends on the person only — computed once per profile, not per
        alternative: per channel ``unreachable``/``suppressed``, quiet hours and their end in the
        person's timezone, the starts and ends of the local periods, the global control group,
        consents as arrays.  ``pk`` is the person (SPEC §6), ``linked`` whether the person has other
        profiles, ``rep`` one row per person (for the history).

        A profile linked to no one is its own person: its facts are its own, computed in one pass.
        The few profiles of persons with several profiles (``_pm``) take an address the profile
        lacks from the person's other profiles (the person's profile first, then by id), the
        opt-outs of all of them, the opt-ins of the profile whose address is used, and one
        timezone per person."""
        gbp = float(self.policy.global_control_percent) * 100
        salt = self.lit(self.policy.holdout_salt + ":")
        ctl = f"{_bucket_sql(salt + ' || x.pk')} < {gbp!r}" if gbp > 0 else "false"
        # suppressed: joins with _sup (distinct rows, so at most one match each)
        sups = {
            "email": "'email' and s.lowered and s.addr = x.el",
            "sms": "'sms' and not s.lowered and s.addr = x.ph",
            "push": "'push' and not s.lowered and s.addr = x.pu",
            "direct_mail": "'direct_mail' and not s.lowered and s.addr = x.po",
            "audience": "'audience' and s.lowered = x.ae_email and s.addr = x.ael",
        }
        joins = "".join(
            f" left join _sup s_{ch} on s_{ch}.channel = " + cond.replace("s.", f"s_{ch}.")
            for ch, cond in sups.items()
        )
        address = {"email": "e", "sms": "ph", "push": "pu", "direct_mail": "po", "audience": "ae"}
        reach = {
            ch: f"case when x.{col} is null then 'u' when s_{ch}.addr is not null then 'p' end"
            for ch, col in address.items()
        }
        # the default timezone's values as constants: a join per person would cost more
        default = self._raw.execute(
            "select " + (", ".join(self._tz_columns) or "1") + " from _tzb where not valid"
        ).fetchone()
        tzcols = "".join(
            f", coalesce(z.{c}, {self.lit(v)}) as {c}"
            for c, v in zip(self._tz_columns, default, strict=False)
        )
        facts = (
            f"nullif(btrim(cu.email, {WS}), '') as e, lower(nullif(btrim(cu.email, {WS}), '')) as el,"
            f" nullif(btrim(cu.phone, {WS}), '') as ph, nullif(btrim(cu.push_token, {WS}), '') as pu,"
            f" nullif(btrim(cu.postal_address, {WS}), '') as po,"
            f" coalesce(nullif(btrim(cu.email, {WS}), ''), nullif(btrim(cu.phone, {WS}), '')) as ae,"
            f" nullif(btrim(cu.email, {WS}), '') is not null as ae_email,"
            f" coalesce(lower(nullif(btrim(cu.email, {WS}), '')), nullif(btrim(cu.phone, {WS}), '')) as ael,"
            " cs.outs, cs.ins"
        )
        consents = (
            " left join (select customer_id, array_agg(channel || E'\\x1f' || topic) filter (where status = 'opt_out')"
            " as outs, array_agg(channel || E'\\x1f' || topic) filter (where status = 'opt_in') as ins"
            " from consents group by customer_id) cs on cs.customer_id = cu.customer_id"
        )
        own = (
            "select cu.customer_id, cu.customer_id as pk, false as linked, true as rep, null::jsonb as fb, "
            + facts
            + tzcols
            + " from customers cu left join _tzb z on z.name = cu.timezone and z.valid"
            + consents
            + f" where cu.customer_id in (select customer_id from _cand where {shard_filter})"
            + (" and cu.customer_id not in (select customer_id from _pm)" if self._linked else "")
        )
        sources = [own]
        if self._linked:
            sources.append(self._linked_profiles(facts, consents, tzcols, shard_filter, person_filter))
        # the shard's people: a hash of its candidate rows' people probed by the customers —
        # not a de-duplicated list of them first, the planner's pick that costs twice as much
        with self.setting("enable_hashagg", "off"):
            self.run(
                "create temp table _p as select x.customer_id, x.pk, x.linked, x.rep, x.fb, "
                + ", ".join(f"{expr} as r_{ch}" for ch, expr in reach.items())
                + f", {ctl} as ctl, x.outs, x.ins"
                + "".join(f", x.{c}" for c in self._tz_columns)
                + " from ("
                + " union all ".join(sources)
                + " offset 0) x"
                + joins
            )
        self.run("analyze _p")

    def _linked_profiles(
        self, facts: str, consents: str, tzcols: str, shard_filter: str, person_filter: str
    ) -> str:
        """SQL: the ``_p`` source rows of the shard's candidate profiles that belong to persons with
        several profiles (after building the person-level tables ``_lf``, ``_lpp``, ``_lpo``)."""
        order = 'order by not prim, customer_id collate "C"'
        self.run(
            "create temp table _lf as select m.person_id as pk, cu.customer_id, cu.customer_id = m.person_id as prim, "
            + facts
            + ", case when exists (select 1 from _tz t where t.name = cu.timezone) then cu.timezone end as tzname"
            + " from _pm m join customers cu on cu.customer_id = m.customer_id"
            + consents
            + f" where {person_filter}"
        )
        self.run("create index on _lf (customer_id)")
        firsts = []
        for col, extra in (("e", ["el"]), ("ph", []), ("pu", []), ("po", []), ("ae", ["ae_email", "ael"])):
            for c in (col, *extra, "customer_id"):
                name = f"{col}_o" if c == "customer_id" else c
                firsts.append(f"(array_agg({c} {order}) filter (where {col} is not null))[1] as {name}")
        firsts.append(f"(array_agg(tzname {order}) filter (where tzname is not null))[1] as tzname")
        self.run("create temp table _lpp as select pk, " + ", ".join(firsts) + " from _lf group by pk")
        self.run(
            "create temp table _lpo as select pk, array_agg(distinct o) as outs from _lf, unnest(outs) o group by pk"
        )
        # the opt-ins count only from the profile whose address is used (one join per opt-in channel)
        owners = {"email": "e", "sms": "ph", "push": "pu", "direct_mail": "po", "audience": "ae"}
        opt_in = [ch.value for ch in Channel if self.policy.channel(ch).consent == ConsentMode.opt_in]
        owner_joins = "".join(
            f" left join _lf o_{ch} on o_{ch}.customer_id = case when f.{owners[ch]} is not null"
            f" then f.customer_id else pp.{owners[ch]}_o end"
            for ch in opt_in
        )
        # each owner's opt-ins of its own channel only: the profile that owns the push token must not
        # lend its SMS opt-in to a phone number of another profile
        ins = (
            " || ".join(
                f"array(select i from unnest(o_{ch}.ins) i where starts_with(i, {self.lit(ch + chr(31))}))"
                for ch in opt_in
            )
            if opt_in
            else "null::text[]"
        )

        def pick(col: str) -> str:
            return f"case when f.{col} is not null then f.{col} else pp.{col} end"

        def pick_with(col: str, own_col: str) -> str:
            return f"case when f.{own_col} is not null then f.{col} else pp.{col} end"

        return (
            "select f.customer_id, f.pk, true as linked,"
            ' row_number() over (partition by f.pk order by f.customer_id collate "C") = 1 as rep,'
            # the addresses taken from the person's other profiles: where delivery sends (messages.address)
            " nullif(jsonb_strip_nulls(jsonb_build_object('email', case when f.e is null then pp.e end,"
            " 'phone', case when f.ph is null then pp.ph end, 'push_token', case when f.pu is null then pp.pu end,"
            " 'postal_address', case when f.po is null then pp.po end)), '{}') as fb, "
            f"{pick('e')} as e, {pick_with('el', 'e')} as el, {pick('ph')} as ph, {pick('pu')} as pu,"
            f" {pick('po')} as po, {pick('ae')} as ae, {pick_with('ae_email', 'ae')} as ae_email,"
            f" {pick_with('ael', 'ae')} as ael, po_.outs, {ins} as ins"
            + tzcols
            + " from _lf f join _lpp pp on pp.pk = f.pk left join _lpo po_ on po_.pk = f.pk"
            + " left join _tzb z on z.name = pp.tzname and z.valid"
            + owner_joins
            + f" where f.customer_id in (select customer_id from _cand where {shard_filter})"
        )

    def _history(self, shard: int, shards: int, person_filter: str = "true") -> None:
        """``_st``: ``_p`` with, per person, the used room of every cap and of every campaign
        frequency cap.

        On the DAG path, messages of cycles still deciding (not yet committed, e.g. a cycle
        whose run died and will be retried) are not history: they do not exist until their
        cycle commits.  When ``messages`` carries the person's shard hash, the shard's people
        are picked out by it before the join."""
        T = self.T
        where = []
        if shards > 1 and self._has_bucket("messages"):
            where.append(shard_predicate("h.bucket", shard, shards))
        if self.live:
            pending = self._raw.execute(
                "select coalesce(array_agg(cycle_at), '{}') from cycles where status <> 'decided'"
                " and cycle_at <> %(at)s",
                {"at": self.at},
            ).fetchone()[0]
            if pending:
                where.append(f"h.cycle_at <> all({self.lit(list(pending))}::timestamptz[])")
        caps = list(self.policy.caps)
        lower, upper = self._history_range()
        bounds = f"h.cycle_at >= {self.lit(lower)}::timestamptz"
        bounds += (
            f" and h.cycle_at <= {self.lit(upper)}::timestamptz" if self.live else f" and h.cycle_at <= {T}"
        )
        counts: dict[str, str] = {}  # column -> the condition of the messages it counts
        for i, cap in enumerate(caps, start=1):
            cond = [
                "h.counts_toward_caps",
                self._hrange(
                    int(cap.window.total_seconds()) if cap.window else None,
                    cap.period.value if cap.period else None,
                ),
            ]
            if cap.channel is not None:
                cond.append(f"h.channel = {self.lit(cap.channel.value)}")
            if cap.tag is not None:
                cond.append(f"{self.lit(cap.tag)} = any(h.tags)")
            counts[f"u{i}"] = " and ".join(cond)
        for j, c in enumerate(self._freq, start=1):
            f = c.frequency
            assert f is not None
            rng = self._hrange(
                int(f.window.total_seconds()) if f.window else None, f.period.value if f.period else None
            )
            counts[f"f{j}"] = f"h.campaign_id = {self.lit(c.id)} and {rng}"
        # hashing the people beats sorting millions of history rows by person (which the
        # planner picks when it expects few rows per person); with the person's other facts
        # (one row per person to look up per candidate row)
        aggregates = ", ".join(f"count(*) filter (where {cond})::int as {c}" for c, cond in counts.items())
        conditions = f" where {bounds} and h.status not in {NOT_COUNTING}"
        with self.setting("enable_sort", "off"):
            # a person of one profile: the messages of that profile
            self.run(
                f"create temp table _hc as select p.pk, {aggregates}"
                " from messages h join _p p on p.customer_id = h.customer_id and not p.linked"
                + conditions
                + "".join(f" and {w}" for w in where)
                + " group by p.pk"
            )
            if self._linked:  # a person of several profiles: the messages of every one of them
                self.run(
                    f"insert into _hc select p.pk, {aggregates}"
                    " from messages h join _pm m on m.customer_id = h.customer_id"
                    " join _p p on p.pk = m.person_id and p.rep"
                    + conditions
                    + f" and {person_filter.replace('pbucket', 'm.pbucket')}"
                    + "".join(f" and {w}" for w in where if "h.bucket" not in w)
                    + " group by p.pk"
                )
            self.run(
                "create temp table _st as select p.*, "
                + ", ".join(f"coalesce(h.{c}, 0) as {c}" for c in counts)
                + " from _p p left join _hc h on h.pk = p.pk"
            )
        self.run("analyze _st")

    def _history_range(self) -> tuple[datetime, datetime]:
        """The times of all history any cap or campaign frequency cap can count: T minus and (for
        later cycles, see ``live``) plus the longest window, and the earliest start and latest
        end of the local periods over every timezone (``_tzb``) — a few days for day and week
        periods, so a cycle reads only the history it needs, not all of it."""
        ranges = [(c.window, c.period) for c in self.policy.caps]
        ranges += [(c.frequency.window, c.frequency.period) for c in self._freq if c.frequency]
        lower = upper = self.at
        for window, _ in ranges:
            if window is not None:
                lower, upper = min(lower, self.at - window), max(upper, self.at + window)
        periods = sorted({period.value for _, period in ranges if period is not None})
        if periods:
            row = self._raw.execute(
                "select " + ", ".join(f"min(lo_{p}), max(hi_{p})" for p in periods) + " from _tzb"
            ).fetchone()
            lower, upper = min(lower, *row[0::2]), max(upper, *row[1::2])
        return lower, upper

    def _shift(self, seconds: int, sign: int) -> str:
        return f"{self.lit(self.at + sign * timedelta(seconds=seconds))}::timestamptz"

    def _hrange(self, window: int | None, period: str | None) -> str:
        """SQL condition: message time ``h.cycle_at`` lies in the cap's range for decision time T
        (periods in the person's timezone: their bounds come from ``_p``)."""
        T = self.T
        ts = "h.cycle_at"
        if window is not None:  # constants computed here: PostgreSQL evaluates T - interval per row
            lower = f"{ts} > {self._shift(window, -1)}"
            upper = f"{ts} < {self._shift(window, 1)}" if self.live else f"{ts} <= {T}"
        else:
            assert period is not None
            lower = f"{ts} >= p.lo_{period}"
            upper = f"{ts} < p.hi_{period}" if self.live else f"{ts} <= {T}"
        own = f" and {ts} <> {T}" if self.live else ""
        return f"({lower} and {upper}{own})"

    def _checks(self, shard_filter: str, n: int, caps: list[Any]) -> None:
        """``_pc``: one row per (person, campaign) — the best candidate row — ranked in the
        person's ranking (``rnk``), with checks 1–8 for each channel position of the campaign:
        ``pre{i}`` is null when the channel survives, the outcome otherwise ('' when the row has
        no alternative there); ``f`` the first surviving position and, for the cap walk, its
        channel, its ``send_at`` when quiet hours move it (``sa``), the caps that apply to it
        (``a{j}``), the person's used room of each cap (``u{j}``, from the history) and the
        campaign frequency verdict (``fblock``).  Rows without a survivor (``f`` null) keep
        their rank: the walk passes over them."""
        T = self.T
        hist = self._needs_history
        quiet_channels = [ch.value for ch in self.policy.quiet_hours]
        pre, sa = [], []
        for i in range(1, n + 1):
            ch = f"k.ch{i}"
            reach = (
                "case "
                + ch
                + " "
                + " ".join(f"when '{c.value}' then p.r_{c.value}" for c in Channel)
                + " end"
            )
            quiet = (
                "case "
                + ch
                + " "
                + " ".join(f"when '{q}' then p.q_{q}" for q in quiet_channels)
                + " else false end"
                if quiet_channels
                else "false"
            )
            qend = (
                "case " + ch + " " + " ".join(f"when '{q}' then p.qe_{q}" for q in quiet_channels) + " end"
                if quiet_channels
                else "null::timestamptz"
            )
            pre.append(
                f"case when {ch} is null or (r.channel is not null and r.channel <> {ch}) then ''"
                " when p.customer_id is null then 'k'"
                f" when r.expires_at is not null and r.expires_at <= {T} then 'e'"
                f" when {reach} is not null then {reach}"
                " when not k.transactional then case"
                f" when k.k0_{i} = any(p.outs) then k.nc0_{i}"
                f" when k.k1_{i} = any(p.outs) then k.nc1_{i}"
                f" when k.oi_{i} and not coalesce(k.k0_{i} = any(p.ins) or k.k1_{i} = any(p.ins), false)"
                f" then k.nci_{i}"
                f" when {quiet} and r.expires_at is not null and {qend} > r.expires_at then 'q'"
                " when p.ctl then 'g'"
                " when k.holdout_bp > 0"
                f" and {_bucket_sql('r.campaign_id || ' + chr(39) + ':' + chr(39) + ' || r.pk')}"
                " < k.holdout_bp then 'h'"
                f" end end as pre{i}"
            )
            sa.append(f"case when not k.transactional and {quiet} then {qend} end as sa{i}")
        first = "case " + " ".join(f"when pre{i} is null then {i}" for i in range(1, n + 1)) + " end as f"
        rc = "case r.channel " + " ".join(f"when k.ch{i} then {i}" for i in range(1, n + 1)) + " end as rc"
        # the campaign's priority as a constant per campaign, not a join per row
        priority = (
            "case d.campaign_id "
            + " ".join(f"when {self.lit(c.id)} then {int(c.priority)}" for c in self.campaigns.values())
            + " end"
            if self.campaigns
            else "0"
        )

        def at_f(col: str) -> str:  # the value at the first surviving position
            return "case f " + " ".join(f"when {i} then {col.format(i=i)}" for i in range(1, n + 1)) + " end"

        # what the campaign says about each position, carried to where f is known
        kcols = [f"k.ch{i} as kch{i}" for i in range(1, n + 1)]
        kcols += [f"k.ap{j}_{i} as kap{j}_{i}" for j in range(1, len(caps) + 1) for i in range(1, n + 1)]
        kcols += ["k.priority", "k.transactional", "k.counts", "k.freq_idx", "k.freq_limit"]
        used = [f"p.u{j}" for j in range(1, len(caps) + 1)] + [
            f"p.f{j}" for j in range(1, len(self._freq) + 1)
        ]
        walk = [
            f"{at_f('kch{i}')} as channel",
            f"{at_f('sa{i}')} as sa",
            "priority",
            "transactional",
            "counts",
        ]
        for j in range(1, len(caps) + 1):
            walk += [
                f"coalesce({at_f('kap' + str(j) + '_{i}')}, false) as a{j}",
                f"coalesce(u{j}, 0) as u{j}",
            ]
        if self._freq:
            fn = (
                "case freq_idx "
                + " ".join(f"when {j} then f{j}" for j in range(1, len(self._freq) + 1))
                + " end"
            )
            walk.append(f"(freq_limit is not null and coalesce({fn}, 0) >= freq_limit) as fblock")
        else:
            walk.append("false as fblock")
        # a person's rows: those of every profile of the person (SPEC §6); without links, the profile's
        candidates = (
            "(select c.*, coalesce(m.person_id, c.customer_id) as pk from _cand c"
            " left join _pm m on m.customer_id = c.customer_id) c"
            if self._linked
            else "(select c.*, c.customer_id as pk from _cand c) c"
        )
        # the sort for distinct on holds the shard's rows in memory (~400MB for 2.5M rows)
        with self.setting("work_mem", "'512MB'"):
            self.run(
                "create temp table _pc as select customer_id, campaign_id, batch_id, seq, score, rnk, "
                + ", ".join(self._carried())
                + ", "
                + ", ".join(walk)
                + f" from (select *, {first} from ("
                "select r.customer_id, r.pk, case when p.customer_id is not null then r.pk end as person_id, p.fb,"
                " r.campaign_id, r.batch_id, r.seq, r.score, r.rnk, "
                + rc
                + ", "
                + ", ".join(pre + sa + kcols + used)
                # the person's ranking (over all their rows; the walk passes over rows without a
                # survivor), computed on the stream that is already in person order: only each
                # person's few rows are sorted
                + ' from (select d.*, row_number() over (partition by d.pk collate "C"'
                f' order by {priority} desc, d.score desc, d.campaign_id collate "C") as rnk'
                ' from (select distinct on (pk collate "C", campaign_id collate "C")'
                " pk, customer_id, campaign_id, coalesce(score, 0) as score, channel, expires_at, batch_id, seq"
                f" from {candidates}"
                f" where {shard_filter} and campaign_id in (select campaign_id from _campaigns)"
                ' order by pk collate "C", campaign_id collate "C", coalesce(score, 0) desc,'
                ' customer_id collate "C", batch_id, seq) d'
                ") r"
                " join _campaigns k on k.campaign_id = r.campaign_id"
                + f" left join {'_st' if hist else '_p'} p on p.customer_id = r.customer_id"
                + " offset 0) x) y"
            )

    def _walk(self, caps: list[Any]) -> int:
        """Walk every person's ranking, one rank at a time, all people at once: ``_w{k}`` holds
        the verdicts of rank ``k`` and the person's running counters after it.  Returns the
        number of ranks."""
        max_rank = int(self.scalar("select coalesce(max(rnk), 0) from _pc"))
        if max_rank > 1:
            self.run("create index on _pc (rnk)")
            self.run("analyze _pc")
        carried = ", ".join(self._carried())
        out = (
            "s.customer_id, s.campaign_id, s.channel, s.batch_id, s.seq, s.priority, s.score, s.sa, "
            + ", ".join(f"s.{c}" for c in self._carried())
        )
        for k in range(1, max_rank + 1):
            if k == 1:  # the counters start from the history, carried in _pc
                src, state = "_pc s", "s"
            else:  # ... and then from the person's row of the previous rank
                src, state = f"_pc s join _w{k - 1} st on st.pk = s.pk", "st"
            blocks = " ".join(
                f"when s.a{i} and {state}.u{i} >= {cap.limit} then {self.lit(cap.name)}"
                for i, cap in enumerate(caps, 1)
            )
            block = (
                f"case when s.f is null or s.transactional then null {blocks}"
                " when s.fblock then 'campaign_frequency' end"
            )
            ucols = "".join(f", {state}.u{i} as u{i}" for i in range(1, len(caps) + 1))
            counters = "".join(
                f", u{i} + (block is null and counts and a{i})::int as u{i}" for i in range(1, len(caps) + 1)
            )
            self.run(
                f"create temp table _w{k} as select customer_id, campaign_id, channel, batch_id, seq, priority,"
                f" score, sa, {carried}, block{counters} from (select {out}, s.counts"
                + "".join(f", s.a{i}" for i in range(1, len(caps) + 1))
                + f"{ucols}, {block} as block from {src} where s.rnk = {k} offset 0) x"
            )
        return max_rank

    def selected_sql(self) -> str:
        """A query of the selected alternatives of the last decided shard (the outbox rows):
        customer_id, campaign_id, channel, batch_id, seq, send_at, person_id, and the addresses taken from
        another profile of the person (``address``, null when the profile's own are used)."""
        parts = [
            f"select customer_id, campaign_id, channel, batch_id, seq, coalesce(sa, {self.T}) as send_at, person_id,"
            f" fb as address from _w{k} where block is null and f is not null"
            for k in range(1, self._max_rank + 1)
        ]
        return " union all ".join(parts) or (
            "select null::text as customer_id, null::text as campaign_id, null::text as channel,"
            " null::bigint as batch_id, null::int as seq, null::timestamptz as send_at, null::text as person_id,"
            " null::jsonb as address where false"
        )

    def summary(self) -> list[tuple[str, str, str, str, int]]:
        """The last decided shard's decisions counted per (campaign, channel, outcome, cap):
        the cap's name for ``capped``, '' otherwise.  Counted from the working tables in a few
        small groups (the same counts as grouping ``_out``, without expanding it)."""
        n = self._positions
        counts: dict[tuple[str, str, str, str], int] = {}

        def add(key: tuple[str, str, str, str], cnt: int) -> None:
            counts[key] = counts.get(key, 0) + int(cnt)

        pres = ", ".join(f"pre{i}" for i in range(1, n + 1))
        for cid, rc, f, *rest in self._raw.execute(
            f"select campaign_id, rc, f, {pres}, count(*) from _pc group by campaign_id, rc, f, {pres}"
        ).fetchall():
            pre, cnt = rest[:n], rest[n]
            channels = [c.value for c in self.campaigns[cid].channels]
            for i in [rc] if rc is not None else range(1, len(channels) + 1):
                p = pre[i - 1]
                if p is None:
                    if i != f:
                        add((cid, channels[i - 1], "channel_alternative", ""), cnt)
                else:
                    add((cid, channels[i - 1], OUTCOME_CODES[p[0]], ""), cnt)
        if self._max_rank:
            walk = " union all ".join(
                f"select campaign_id, channel, block from _w{k} where f is not null"
                for k in range(1, self._max_rank + 1)
            )
            for cid, ch, block, cnt in self._raw.execute(
                f"select campaign_id, channel, block, count(*) from ({walk}) w group by 1, 2, 3"
            ).fetchall():
                add((cid, ch, "selected" if block is None else "capped", block or ""), cnt)
        return [(*k, v) for k, v in sorted(counts.items())]

    def _carried(self) -> list[str]:
        """The columns of ``_pc`` that travel through the walk to the output."""
        return ["pk", "person_id", "fb", "rc", "f", *(f"pre{i}" for i in range(1, self._positions + 1))]

    def _output(self, n: int, max_rank: int) -> None:
        """``_dec`` (a view): one row per (person, campaign) — the candidate row decided, the
        surviving channel (if any) with its ``send_at`` and the cap that blocked it, and per
        alternative, in the campaign's channel order, its channel and outcome (one letter each:
        CHANNEL_CODES, OUTCOME_CODES) and reason (REASON_SEP-separated, null when none has one;
        the reason of a ``channel_alternative`` is implied by ``channel``).  ``_out`` (a view):
        the same decisions one row per alternative, as ``baton simulate`` writes them."""
        T = self.T

        def arrays(walk: bool) -> str:
            def outcome(i: int) -> str:  # the letter of the outcome (OUTCOME_CODES)
                chosen = f" when f = {i} then case when block is null then 's' else 'c' end" if walk else ""
                return f"case{chosen} when pre{i} is null then 'a' else left(pre{i}, 1) end"

            def reason(i: int) -> str:
                chosen = f" when f = {i} then block" if walk else ""
                return f"case when pre{i} like 'n|%' then substr(pre{i}, 3){chosen} end"

            def per_position(expr: Any, whole: Any) -> str:
                full = " ".join(
                    f"when {m} then {whole([expr(i) for i in range(1, m + 1)])}" for m in range(1, n + 1)
                )
                own = " ".join(f"when {i} then {expr(i)}" for i in range(1, n + 1))
                return f"case when rc is null then case length(k.cc) {full} end else {whole([f'case rc {own} end'])} end"

            def letters(items: list[str]) -> str:
                return " || ".join(items)

            def reasons(items: list[str]) -> str:  # null when no alternative has a reason
                sep = f"E'{REASON_SEP}'"
                return (
                    f"nullif(concat({f', {sep}, '.join(items)}), {self.lit(REASON_SEP * (len(items) - 1))})"
                )

            return (
                "case when rc is null then k.cc else substr(k.cc, rc, 1) end as channels,"
                f" {per_position(outcome, letters)} as outcomes, {per_position(reason, reasons)} as reasons"
            )

        parts = [
            "select c.customer_id, c.campaign_id, c.batch_id, c.seq, k.priority, c.score, null::text as channel,"
            f" null::timestamptz as send_at, null::text as block, {arrays(False)}, c.person_id"
            " from _pc c join _campaigns k on k.campaign_id = c.campaign_id where c.f is null"
        ]
        for k in range(1, max_rank + 1):
            parts.append(
                "select w.customer_id, w.campaign_id, w.batch_id, w.seq, w.priority, w.score, w.channel,"
                f" case when block is null then coalesce(w.sa, {T}) end, block, {arrays(True)}, w.person_id"
                f" from _w{k} w join _campaigns k on k.campaign_id = w.campaign_id where w.f is not null"
            )
        self.run("create temp view _dec as " + " union all ".join(parts))
        self.run(
            f"create temp view _out as select d.customer_id, d.campaign_id, {channel_sql('a.ch')} as channel,"
            " d.batch_id, d.seq, d.priority,"
            f" d.score, {outcome_sql('a.code')} as outcome, coalesce(nullif(a.reason, ''), case when a.code = 'a'"
            " then 'first surviving channel: ' || d.channel end) as reason,"
            " case when a.code = 's' then d.send_at end as send_at, d.person_id"
            " from _dec d cross join lateral unnest(string_to_array(d.channels, null), string_to_array(d.outcomes, null),"
            f" coalesce(string_to_array(d.reasons, E'{REASON_SEP}'), '{{}}')) a(ch, code, reason)"
        )
