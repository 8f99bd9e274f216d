"""``make demo``: Baton end to end on one machine.

1. start (or reuse) the embedded PostgreSQL, migrate the store, seed 10,000 customers
   (reused on later runs; events are topped up to now);
2. prepare Airflow's metadata database (database ``airflow`` on the same server);
3. start a real Airflow: scheduler, DAG processor, API server and triggerer (as
   ``airflow standalone`` does), with the project's dags/ and plugins/;
4. unpause every campaign DAG so the scheduler runs each for its latest interval,
   wait for the runs, and print the numbers;
5. leave the UI running at the printed URL until Ctrl-C, which stops every process
   this command started.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
from rich.console import Console
from rich.table import Table
from sqlalchemy.engine import Engine, make_url

from baton.store.engine import (
    airflow_sql_alchemy_conn,
    baton_home,
    ensure_database,
    get_engine,
    store_url,
)

console = Console(width=None if sys.stdout.isatty() else 130)

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("", "0", "false", "no", "off")


def env_flag(name: str, default: bool = False) -> bool:
    """A yes/no knob: ``1``/``true``/``yes``/``on`` or ``0``/``false``/``no``/``off`` (any case); unset is *default*."""
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise SystemExit(f"{name}={raw!r}: write 1 or 0 (also true/false, yes/no, on/off)")


def env_number(name: str, default: float) -> float:
    """A numeric knob; a value that is not a number stops the demo with a message naming it."""
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        return float(raw)
    except ValueError:
        raise SystemExit(f"{name}={raw!r} is not a number") from None


DEMO_CUSTOMERS = int(env_number("BATON_DEMO_CUSTOMERS", 10000))
DEMO_DAYS = int(env_number("BATON_DEMO_DAYS", 30))
DEMO_SEED = int(env_number("BATON_DEMO_SEED", 42))
PORT = int(env_number("BATON_DEMO_PORT", 8080))
RUN_TIMEOUT = env_number("BATON_DEMO_TIMEOUT", 600)


@dataclass
class Airflow:
    home: Path
    env: dict[str, str]
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def bin(self) -> str:
        return str(Path(sys.executable).parent / "airflow")

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run([self.bin, *args], env=self.env, check=check, capture_output=True, text=True)

    def start(self, name: str, *args: str) -> None:
        log = open(self.home / "logs" / f"{name}.log", "ab")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(
            [self.bin, *args], env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.procs.append(proc)

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.time() + 20
        for proc in self.procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    def check_alive(self) -> None:
        for proc in self.procs:
            if proc.poll() is not None:
                raise SystemExit(f"an Airflow process exited ({proc.args!s}); see {self.home / 'logs'}")


def _secret(path: Path) -> str:
    if not path.exists():
        path.write_text(secrets.token_urlsafe(32))
        path.chmod(0o600)
    return path.read_text().strip()


def channel_connections(
    smtp_port: int, http_port: int, push_account: dict[str, Any] | None = None
) -> dict[str, str]:
    """Airflow Connections (as AIRFLOW_CONN_* JSON) pointing the channels at the local sinks;
    push authenticates with the service account ``push_account`` (OAuth, as with FCM) when given."""
    from baton_dev.sinks import ProviderEmulator

    emu = ProviderEmulator()
    push: dict[str, Any] = (
        {"extra": {"service_account": push_account}}
        if push_account
        else {"password": emu.fcm_token, "extra": {"project": emu.fcm_project}}
    )
    return {
        "AIRFLOW_CONN_BATON_SMTP": json.dumps(
            {
                "conn_type": "smtp",
                "host": "127.0.0.1",
                "port": smtp_port,
                "extra": {"from": "Northwind Shop <shop@northwind.example>"},
            }
        ),
        "AIRFLOW_CONN_BATON_SMS": json.dumps(
            {
                "conn_type": "http",
                "host": f"http://127.0.0.1:{http_port}",
                "login": emu.twilio_sid,
                "password": emu.twilio_token,
                "extra": {"from": "+15550100000"},
            }
        ),
        "AIRFLOW_CONN_BATON_PUSH": json.dumps(
            {"conn_type": "http", "host": f"http://127.0.0.1:{http_port}", **push}
        ),
    }


def airflow_env(home: Path, store: str) -> dict[str, str]:
    root = baton_home()
    env = dict(os.environ)
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": airflow_sql_alchemy_conn(),
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__DAGS_FOLDER": str(root / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(root / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__PARALLELISM": "8",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://localhost:{PORT}/execution/",
            "AIRFLOW__API__PORT": str(PORT),
            "AIRFLOW__API__BASE_URL": f"http://localhost:{PORT}",
            "AIRFLOW__API_AUTH__JWT_SECRET": _secret(home / "jwt_secret"),
            "AIRFLOW__API__SECRET_KEY": _secret(home / "api_secret"),
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "20",
            "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "True",
            "BATON_DATABASE_URL": store,
            "BATON_UNSUBSCRIBE_SECRET": _secret(home / "unsubscribe_secret"),
            "BATON_UNSUBSCRIBE_URL": f"http://localhost:{PORT}/baton/unsubscribe",
            "BATON_HOME": str(root),
            "PYTHONPATH": os.pathsep.join(
                filter(None, [str(root / "include"), os.environ.get("PYTHONPATH")])
            ),
        }
    )
    return env


def admin_password(home: Path) -> str:
    path = home / "simple_auth_manager_passwords.json.generated"
    if not path.exists():
        path.write_text(json.dumps({"admin": secrets.token_urlsafe(12)}))
    return str(json.loads(path.read_text())["admin"])


def seed_store(engine: Engine) -> None:
    from baton.seed import run_seed

    console.rule("[bold]1. the marketing store")
    run_seed(
        engine,
        customers=DEMO_CUSTOMERS,
        days=DEMO_DAYS,
        seed=DEMO_SEED,
        until=None,
        reset=False,
        console=console,
    )


def resolve_identity(engine: Engine) -> None:
    """Resolve profiles into persons (SPEC §6) and say what the seed's overlap looks like."""
    from baton.identity.resolve import IdentitySettings
    from baton.identity.store import resolve
    from baton.spec import load_policy

    settings = IdentitySettings.of(load_policy(baton_home() / "dags" / "policy.yaml"))
    result = resolve(engine, settings, full=True)
    with engine.connect() as conn:
        profiles = conn.execute(sa.text("select count(*) from customers")).scalar() or 0
        sizes: dict[int, int] = dict(
            conn.execute(
                sa.text(
                    "select n, count(*) from (select count(*) as n from identity_persons group by person_id) x"
                    " group by n order by n"
                )
            ).all()
        )
        junk = conn.execute(
            sa.text("select count(*) from customers where lower(btrim(email)) in ('null', 'test@test.com')")
        ).scalar()
    persons = profiles - result.persons.linked_profiles + result.persons.persons
    console.print(
        f"identity: {profiles:,} profiles are [bold]{persons:,} persons[/bold]; "
        + ", ".join(f"{n:,} persons have {k} profiles" for k, n in sorted(sizes.items()))
        + f" (resolved in {result.seconds:.2f}s; {junk} junk emails such as 'null' link no one)"
    )


def print_identity_effect(engine: Engine, cycle: datetime) -> None:
    """People who, had each profile been a person of its own, would have gone over the daily cap in
    this cycle — and, resolved into one person, did not."""
    from baton.arbitration.cycle import what_if_unlinked
    from baton.spec import load_deployment

    policy, campaigns = load_deployment(baton_home() / "dags")
    daily = min(
        (c.limit for c in policy.caps if c.window == timedelta(hours=24) and c.channel is None), default=None
    )
    if daily is None:
        return
    unlinked = what_if_unlinked(engine, cycle, policy, campaigns)
    counting = {c.id for c in campaigns if c.counts_toward_caps}
    with engine.begin() as conn:
        conn.execute(
            sa.text("create temp table _unlinked (customer_id text, campaign_id text) on commit drop")
        )
        values = [{"c": c, "k": k} for c, k, _ch in unlinked if k in counting]
        if values:
            conn.execute(sa.text("insert into _unlinked values (:c, :k)"), values)
        rows = conn.execute(
            sa.text(
                "with person as (select c.customer_id, coalesce(p.person_id, c.customer_id) as person_id"
                " from customers c left join identity_persons p using (customer_id)),"
                " before as (select p.person_id, count(*) as n from messages m join person p using (customer_id)"
                " where m.cycle_at > :t - interval '24 hours' and m.cycle_at < :t and m.counts_toward_caps"
                " and m.status not in ('cancelled', 'expired', 'failed') group by 1),"
                " alone as (select p.person_id, count(*) as n, count(distinct u.customer_id) as profiles"
                " from _unlinked u join person p using (customer_id) group by 1),"
                " resolved as (select person_id, count(*) as n from messages where cycle_at = :t"
                " and counts_toward_caps group by 1)"
                " select a.person_id, coalesce(b.n, 0) + a.n as unlinked, coalesce(b.n, 0) + coalesce(r.n, 0)"
                " as linked from alone a left join before b using (person_id) left join resolved r using (person_id)"
                " where a.profiles > 1 and coalesce(b.n, 0) + a.n > :cap order by unlinked desc, person_id"
            ),
            {"t": cycle, "cap": daily},
        ).all()
    kept = [r for r in rows if r.linked <= daily]
    console.print(
        f"identity at work: [bold]{len(rows):,}[/bold] people would have had more than {daily} messages in 24 hours"
        f" had each of their profiles been a person of its own; resolved into one person, [bold green]{len(kept):,}"
        f"[/bold green] of them stayed within the cap"
        + (f" (e.g. person {kept[0].person_id}: {kept[0].unlinked} → {kept[0].linked})" if kept else "")
    )


def wait_for(what: str, predicate: Any, timeout: float, af: Airflow, every: float = 2.0) -> Any:
    deadline = time.time() + timeout
    with console.status(what):
        while time.time() < deadline:
            af.check_alive()
            value = predicate()
            if value:
                return value
            time.sleep(every)
    raise SystemExit(f"timed out after {timeout:.0f}s: {what} (logs in {af.home / 'logs'})")


def api_ready() -> bool:
    try:
        return httpx.get(f"http://localhost:{PORT}/api/v2/monitor/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def airflow_engine() -> Engine:
    url = make_url(airflow_sql_alchemy_conn()).set(drivername="postgresql+psycopg")
    return get_engine(url)


def campaign_dag_ids(af_db: Engine) -> list[str]:
    with af_db.connect() as conn:
        rows = conn.execute(
            sa.text(
                "select dag_id from dag where dag_id like 'campaign\\_\\_%' and is_stale is false order by 1"
            )
        ).all()
    return [r[0] for r in rows]


def scheduled_dag_ids(af_db: Engine, dag_ids: list[str]) -> list[str]:
    """The DAGs that have a schedule (placeholders of invalid files have none)."""
    with af_db.connect() as conn:
        rows = conn.execute(
            sa.text(
                "select dag_id from dag where dag_id = any(:ids) and coalesce(timetable_summary, 'None') <> 'None'"
            ),
            {"ids": dag_ids},
        ).all()
    return sorted(r[0] for r in rows)


def import_errors(af_db: Engine) -> list[tuple[str, str]]:
    with af_db.connect() as conn:
        return [
            (r[0], r[1]) for r in conn.execute(sa.text("select filename, stacktrace from import_error")).all()
        ]


class Api:
    """The Airflow REST API (v2), authenticated with the demo's admin login."""

    def __init__(self, password: str) -> None:
        self.base = f"http://localhost:{PORT}"
        token = httpx.post(
            f"{self.base}/auth/token", json={"username": "admin", "password": password}, timeout=30
        )
        token.raise_for_status()
        self.headers = {"Authorization": f"Bearer {token.json()['access_token']}"}

    def trigger(self, dag_id: str, start: datetime, end: datetime, note: str) -> bool:
        """Trigger ``dag_id`` for the data interval [start, end); False when that run exists already."""
        body = {
            "logical_date": start.isoformat(),
            "data_interval_start": start.isoformat(),
            "data_interval_end": end.isoformat(),
            "note": note,
            "conf": {},
        }
        resp = httpx.post(
            f"{self.base}/api/v2/dags/{dag_id}/dagRuns", json=body, headers=self.headers, timeout=30
        )
        if resp.status_code == 409:
            return False
        if resp.status_code >= 400:
            raise SystemExit(f"triggering {dag_id} failed: {resp.status_code} {resp.text}")
        return True

    def clear(self, dag_id: str, run_id: str) -> None:
        resp = httpx.post(
            f"{self.base}/api/v2/dags/{dag_id}/dagRuns/{run_id}/clear",
            json={"dry_run": False},
            headers=self.headers,
            timeout=30,
        )
        if resp.status_code >= 400:
            raise SystemExit(f"clearing {dag_id} {run_id} failed: {resp.status_code} {resp.text}")


def failed_runs_for(af_db: Engine, dag_ids: list[str], cycle: datetime) -> list[tuple[str, str]]:
    with af_db.connect() as conn:
        rows = conn.execute(
            sa.text(
                "select dag_id, run_id from dag_run where dag_id = any(:ids) and data_interval_end = :c"
                " and state = 'failed'"
            ),
            {"ids": dag_ids, "c": cycle},
        ).all()
    return [(r[0], r[1]) for r in rows]


def interval_ending_at(schedule: str, cycle: datetime) -> tuple[datetime, datetime] | None:
    """The interval the demo triggers so the campaign feeds the demo cycle: its own length
    (at least an hour) ending at the cycle; None when the scheduler's own latest run is
    exactly that (hourly campaigns)."""
    from baton.spec.schedule import next_after, previous_at

    e = previous_at(schedule, cycle)
    natural = next_after(schedule, e) - e
    if e == cycle and natural == timedelta(hours=1):
        return None
    return cycle - max(natural, timedelta(hours=1)), cycle


def run_campaigns(af: Airflow, af_db: Engine, dag_ids: list[str], cycle: datetime, password: str) -> None:
    """Unpause the campaigns; the scheduler runs the hourly ones for [cycle - 1h, cycle).  The
    others (daily, weekly) do not end an interval at the demo cycle, so the demo triggers
    one run each covering their own interval length up to the cycle."""
    from baton.spec import load_campaigns

    campaigns, _ = load_campaigns(baton_home() / "dags" / "campaigns", baton_home() / "dags" / "templates")
    by_dag = {f"campaign__{c.id}": c for c in campaigns if c.enabled}
    runnable = [d for d in scheduled_dag_ids(af_db, dag_ids) if d in by_dag]
    af.run("dags", "unpause", "--treat-dag-id-as-regex", "-y", "^campaign__")
    api = Api(password)
    for dag_id in runnable:
        interval = interval_ending_at(by_dag[dag_id].schedule, cycle)
        if interval is None:
            continue  # the scheduler creates this run itself (catchup off: the latest interval)
        api.trigger(dag_id, *interval, "baton demo: feed the demo cycle")
    # a run of an earlier demo for this very cycle that failed is retried (cleared), not skipped
    for dag_id, run_id in failed_runs_for(af_db, runnable, cycle):
        console.print(f"retrying the failed run {run_id} of {dag_id}")
        api.clear(dag_id, run_id)

    def all_done() -> dict[str, str] | None:
        states = run_states_for(af_db, runnable, cycle)
        if len(states) < len(runnable) or any(s not in ("success", "failed") for s in states.values()):
            return None
        return states

    time.sleep(5)
    states = wait_for(f"the scheduler runs {len(runnable)} campaign DAGs", all_done, RUN_TIMEOUT, af)
    failed = sorted(d for d, s in states.items() if s != "success")
    console.print(
        f"campaign runs: {len(states) - len(failed)} succeeded, {len(failed)} failed {failed or ''}"
    )


def run_states_for(af_db: Engine, dag_ids: list[str], cycle: datetime) -> dict[str, str]:
    """State of each DAG's run whose data interval ends at ``cycle``."""
    with af_db.connect() as conn:
        rows = conn.execute(
            sa.text(
                "select distinct on (dag_id) dag_id, state from dag_run where dag_id = any(:ids)"
                " and data_interval_end = :c order by dag_id, id desc"
            ),
            {"ids": dag_ids, "c": cycle},
        ).all()
    return {r[0]: r[1] for r in rows}


def run_arbitration(af: Airflow, af_db: Engine, cycle: datetime) -> None:
    """Unpause the cycle DAG: the scheduler runs the latest cycle, the one the campaigns fed."""
    af.run("dags", "unpause", "-y", "baton_arbitration")
    states = wait_for(
        "the scheduler runs the arbitration cycle (wait → decide in shards → commit)",
        lambda: (lambda s: s if s.get("baton_arbitration") in ("success", "failed") else None)(
            run_states_for(af_db, ["baton_arbitration"], cycle)
        ),
        RUN_TIMEOUT,
        af,
    )
    console.print(f"arbitration run: {states['baton_arbitration']}")


def _per_person(conn: sa.Connection, sql: str, params: dict[str, Any]) -> Any:
    return conn.execute(
        sa.text(
            f"with per as ({sql}) select count(*) as people, coalesce(sum(n), 0) as total,"
            " coalesce(max(n), 0) as max, coalesce(percentile_disc(0.99) within group (order by n), 0) as p99,"
            " count(*) filter (where n > 2) as over2 from per"
        ),
        params,
    ).one()


def print_problem(engine: Engine, cycle: datetime) -> None:
    console.rule("[bold]4. what the campaigns propose for this cycle")
    with engine.connect() as conn:
        batches = conn.execute(
            sa.text(
                "select b.campaign_id, min(b.data_interval_start) as s, max(b.data_interval_end) as e,"
                " sum(b.row_count) as rows, (select count(distinct c.customer_id) from candidates c"
                " where c.batch_id = any(array_agg(b.batch_id))) as people"
                " from candidate_batches b where b.cycle_at = :c group by b.campaign_id order by b.campaign_id"
            ),
            {"c": cycle},
        ).all()
        table = Table("campaign", "data interval (UTC)", "candidates", "people")
        for b in batches:
            table.add_row(
                b.campaign_id, f"{b.s:%m-%d %H:%M} → {b.e:%m-%d %H:%M}", f"{b.rows:,}", f"{b.people:,}"
            )
        console.print(table)
        stats = _per_person(
            conn,
            # every automation messages every profile it finds on its own: per person (SPEC §6)
            "select coalesce(p.person_id, c.customer_id), count(distinct (b.campaign_id, c.customer_id)) as n"
            " from candidates c join candidate_batches b using (batch_id)"
            " left join identity_persons p on p.customer_id = c.customer_id"
            " where b.cycle_at = :c group by 1",
            {"c": cycle},
        )
    console.rule("[bold]5. without orchestration")
    console.print(
        f"Every automation fires on its own: [bold]{stats.total:,}[/bold] messages to [bold]{stats.people:,}[/bold]"
        f" people in this cycle (daily and weekly campaigns cover the last day or week).\n  per person: max [bold red]{stats.max}[/bold red], p99 [bold]{stats.p99}[/bold],"
        f" people with more than 2: [bold red]{stats.over2:,}[/bold red]"
    )


def print_outcome(engine: Engine, cycle: datetime) -> None:
    console.rule("[bold]6. with Baton")
    with engine.connect() as conn:
        stats = _per_person(
            conn,
            "select coalesce(person_id, customer_id), count(*) as n from messages"
            " where cycle_at > :c - interval '24 hours' and cycle_at <= :c"
            " and status not in ('cancelled', 'expired', 'failed') group by 1",
            {"c": cycle},
        )
        rows = conn.execute(
            sa.text(
                "select campaign_id, outcome, sum(n)::int as n from cycle_outcomes where cycle_at = :c"
                " group by 1, 2 order by 1, 2"
            ),
            {"c": cycle},
        ).all()
    with engine.connect() as conn:
        late = conn.execute(
            sa.text(
                "select string_agg(distinct campaign_id, ', ') from candidate_batches where cycle_at = :c"
                " and decided_cycle_at is null"
            ),
            {"c": cycle},
        ).scalar()
    if late:
        console.print(
            f"[yellow]batches that landed after this cycle was decided ({late}) are decided by the next "
            "cycle[/yellow]"
        )
    console.print(
        f"Baton decided: [bold]{stats.total:,}[/bold] messages to [bold]{stats.people:,}[/bold] people in 24 hours."
        f"\n  per person: max [bold green]{stats.max}[/bold green], p99 [bold]{stats.p99}[/bold],"
        f" people with more than 2: [bold green]{stats.over2:,}[/bold green]"
    )
    outcomes = sorted(
        {r.outcome for r in rows}, key=lambda o: OUTCOME_ORDER.index(o) if o in OUTCOME_ORDER else 99
    )
    table = Table(
        "campaign", *outcomes, title="outcomes per campaign (one per alternative: candidate × channel)"
    )
    per: dict[str, dict[str, int]] = {}
    for r in rows:
        per.setdefault(r.campaign_id, {})[r.outcome] = r.n
    for cid, counts in per.items():
        table.add_row(cid, *[f"{counts.get(o, 0):,}" for o in outcomes])
    console.print(table)


def print_delivery(engine: Engine, cycle: datetime, smtp: Any, http: Any) -> None:
    console.rule("[bold]7. delivery")
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "select channel, status, count(*) as n from messages where cycle_at = :c group by 1, 2 order by 1, 2"
            ),
            {"c": cycle},
        ).all()
        over = conn.execute(
            sa.text(
                "select count(*) from (select customer_id from messages where status = 'sent' and counts_toward_caps"
                " and sent_at > now() - interval '24 hours' group by customer_id having count(*) > 2) x"
            )
        ).scalar()
    table = Table("channel", "status", "messages")
    for r in rows:
        table.add_row(r.channel, r.status, f"{r.n:,}")
    console.print(table)
    console.print(
        f"SMTP sink (maildir {smtp.maildir_path}): {smtp.received:,} emails, {len(smtp.counts):,} distinct "
        f"Message-IDs, {smtp.duplicates} duplicates\n"
        f"provider emulator: {sum(1 for a in http.accepted if a['kind'] == 'sms'):,} SMS, "
        f"{sum(1 for a in http.accepted if a['kind'] == 'push'):,} push, {http.duplicates} duplicates"
        f" (push authenticated by a service account: {http.token_requests} OAuth token(s) issued)\n"
        f"people who got more than 2 counting messages in 24 hours: [bold green]{over}[/bold green]"
        "  (pending = deferred by quiet hours; they go out with the first cycle after their send_at)"
    )


OUTCOME_ORDER = [
    "selected",
    "capped",
    "channel_alternative",
    "holdout_campaign",
    "holdout_global",
    "quiet_hours",
    "no_consent",
    "suppressed",
    "unreachable",
    "expired",
    "unknown_customer",
]


def main() -> None:
    root = baton_home()
    os.chdir(root)
    console.rule("[bold]Baton demo")
    url = store_url()
    ensure_database(url)
    from baton.store.migrate import upgrade

    engine = get_engine()
    upgrade(engine)
    seed_store(engine)
    resolve_identity(engine)

    console.rule("[bold]2. Airflow (scheduler, DAG processor, API server, triggerer)")
    home = root / ".baton" / "airflow"
    (home / "logs").mkdir(parents=True, exist_ok=True)
    ensure_database(make_url(airflow_sql_alchemy_conn()).set(drivername="postgresql+psycopg"))
    from baton_dev.sinks import ProviderEmulator, SmtpSink

    smtp = SmtpSink(port=int(env_number("BATON_DEMO_SMTP_PORT", 2525)), maildir=root / ".baton" / "maildir")
    http = ProviderEmulator(
        port=int(env_number("BATON_DEMO_PROVIDER_PORT", 8025)), store=root / ".baton" / "provider"
    )
    smtp.start()
    http.start()
    af = Airflow(home, airflow_env(home, url.render_as_string(hide_password=False)))
    af.env.update(channel_connections(smtp.port, http.port, http.service_account()))
    password = admin_password(home)
    with console.status("airflow db migrate"):
        af.run("db", "migrate")
        for channel in ("email", "sms", "push", "audience", "direct_mail"):
            af.run("pools", "set", f"baton_{channel}", "2", f"Baton {channel} delivery")
    try:
        af.start("api-server", "api-server", "--port", str(PORT))
        af.start("scheduler", "scheduler")
        af.start("dag-processor", "dag-processor")
        af.start("triggerer", "triggerer")
        wait_for("waiting for the API server", api_ready, 180, af)
        af_db = airflow_engine()
        dag_ids = wait_for(
            "waiting for the DAG processor to parse the campaigns", lambda: campaign_dag_ids(af_db), 240, af
        )
        errors = import_errors(af_db)
        console.print(f"{len(dag_ids)} campaign DAGs parsed, {len(errors)} import errors")
        for filename, trace in errors:
            console.print(f"[red]import error in {filename}[/red]\n{trace}")
        cycle = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
        console.rule(f"[bold]3. one decision cycle: {cycle:%Y-%m-%d %H:%M} UTC")
        run_campaigns(af, af_db, dag_ids, cycle, password)
        print_problem(engine, cycle)
        run_arbitration(af, af_db, cycle)
        print_outcome(engine, cycle)
        print_identity_effect(engine, cycle)
        print_delivery(engine, cycle, smtp, http)
        console.rule("[bold]Airflow UI")
        console.print(
            f"  URL:   [bold]http://localhost:{PORT}[/bold]\n  login: [bold]admin[/bold] / [bold]{password}[/bold]\n"
            f"  logs:  {home / 'logs'}\n  Press Ctrl-C to stop every process this demo started."
        )
        if env_flag("BATON_DEMO_EXIT"):
            return
        while True:
            af.check_alive()
            time.sleep(2)
    except KeyboardInterrupt:
        console.print("\nstopping Airflow…")
    finally:
        smtp.stop()
        http.stop()
        # pause again so that the next `make demo` starts from the latest interval, not a catch-up
        af.run("dags", "pause", "--treat-dag-id-as-regex", "-y", "^(campaign__|baton_)", check=False)
        af.stop()
        console.print(
            "Airflow stopped. The data stays in .baton/ (`make clean` deletes it; "
            "`make db-stop` stops the embedded PostgreSQL)."
        )


if __name__ == "__main__":
    main()
