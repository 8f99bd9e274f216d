"""``make demo``: Baton end to end on one machine, telling the seed's story — a retailer's independent
automations would send one shopper twenty-odd messages in 24 hours.

1. start (or reuse) the embedded PostgreSQL, migrate the store, seed 10,000 customers — among them
   the very active shopper, Maya Brooks, one person with three profiles — (reused on later runs;
   events are topped up to now; a rebuilt seed clears earlier demos' decisions and Airflow runs) and
   resolve the profiles into persons;
2. prepare Airflow's metadata database (database ``airflow`` on the same server) and start a real
   Airflow: scheduler, DAG processor, API server and triggerer (as ``airflow standalone`` does), with
   the project's dags/ and plugins/;
3. replay a day: backfill every campaign DAG over the 24 hours up to the last full hour (every run
   its schedule would have made) and wait for the runs; print what the independent automations would
   have sent; backfill the arbitration DAG over the day's 24 hourly cycles, in order, with
   ``allow_late_send`` (the day is played as if live: each cycle's messages reach the local sinks and
   count toward the next cycles' caps), and wait;
4. print the numbers with Baton, the shopper's day campaign by campaign without and with Baton, what
   identity resolution changed and what delivery did, and the links to the UI: the Marketing view's calendar and her timeline;
5. leave the UI running at the printed URL until Ctrl-C, which stops every process this command
   started.
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
from zoneinfo import ZoneInfo

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
#: runs of one campaign DAG's backfill at a time, and of the arbitration DAG's (1: the cycles in order)
CAMPAIGN_RUNS_AT_ONCE = int(env_number("BATON_DEMO_CAMPAIGN_RUNS", 4))
CYCLES_AT_ONCE = int(env_number("BATON_DEMO_CYCLE_RUNS", 1))


@dataclass
class Airflow:
    """The Airflow processes this demo starts (same home and environment), and the CLI."""

    home: Path
    env: dict[str, str]
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def bin(self) -> str:
        """The ``airflow`` command of this virtualenv."""
        return str(Path(sys.executable).parent / "airflow")

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run ``airflow *args`` to completion (output captured)."""
        return subprocess.run([self.bin, *args], env=self.env, check=check, capture_output=True, text=True)

    def start(self, name: str, *args: str) -> None:
        """Start ``airflow *args`` in a session of its own, logging to ``logs/<name>.log``."""
        log = open(self.home / "logs" / f"{name}.log", "ab")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(
            [self.bin, *args], env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.procs.append(proc)

    def stop(self) -> None:
        """Stop every process started, and the task processes they started in their sessions (which put
        themselves in process groups of their own): SIGTERM, then SIGKILL after 20 seconds."""
        for proc in self.procs:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        self._signal_sessions(signal.SIGTERM)
        deadline = time.time() + 20
        for proc in self.procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        while self._signal_sessions(0) and time.time() < deadline:
            time.sleep(0.5)
        self._signal_sessions(signal.SIGKILL)

    def _signal_sessions(self, sig: int) -> int:
        """Send *sig* to every process left in the sessions of the processes started; how many there were."""
        sessions = {proc.pid for proc in self.procs}
        found = 0
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                if os.getsid(int(entry.name)) in sessions:
                    found += 1
                    os.kill(int(entry.name), sig)
            except (ProcessLookupError, PermissionError):
                continue
        return found

    def check_alive(self) -> None:
        """Stop the demo with a message when one of the processes has exited."""
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
    """The environment of the demo's Airflow processes: LocalExecutor, this repository's DAGs and plugins."""
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
    """The password of the UI's ``admin`` user (generated once, kept in the Airflow home)."""
    path = home / "simple_auth_manager_passwords.json.generated"
    if not path.exists():
        path.write_text(json.dumps({"admin": secrets.token_urlsafe(12)}))
    return str(json.loads(path.read_text())["admin"])


def seed_store(engine: Engine) -> str:
    """Seed (or top up) the store; the seed's mode: ``rebuild``, ``top_up`` or ``up_to_date``."""
    from baton.seed import needs_rebuild, run_seed

    console.rule("[bold]1. the marketing store")
    # a rebuild (other customers or generator version) is meant here: the demo then clears its history
    stats = run_seed(
        engine,
        customers=DEMO_CUSTOMERS,
        days=DEMO_DAYS,
        seed=DEMO_SEED,
        until=None,
        reset=needs_rebuild(engine, customers=DEMO_CUSTOMERS, seed=DEMO_SEED),
        console=console,
    )
    return stats.mode


#: what campaigns proposed, what cycles decided and what became of it (the history the replay rebuilds)
HISTORY_TABLES = (
    "message_events",
    "messages",
    "cycle_outcomes",
    "cycle_decisions",
    "cycle_persons",
    "cycles",
    "candidates",
    "candidate_batches",
)


def forget_earlier_demos(engine: Engine) -> None:
    """After the seed was rebuilt, earlier demos' decisions are about data that is gone: empty the store's
    history of them and drop Airflow's metadata database (their runs), so the day is replayed afresh."""
    from baton.store.engine import drop_database

    with engine.begin() as conn:
        conn.execute(sa.text(f"truncate {', '.join(HISTORY_TABLES)}"))
    drop_database(make_url(airflow_sql_alchemy_conn()).set(drivername="postgresql+psycopg"))
    console.print(
        "the seed was rebuilt: the decisions and Airflow runs of earlier demos were about its old data, so they"
        " were cleared"
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
    """Poll *predicate* until it returns something true (its value); a string *predicate* returns
    instead says how far it got, shown after *what*."""
    deadline = time.time() + timeout
    with console.status(what) as status:
        while time.time() < deadline:
            af.check_alive()
            value = predicate()
            if value and not isinstance(value, str):
                return value
            if isinstance(value, str):
                status.update(f"{what}: {value}")
            time.sleep(every)
    raise SystemExit(f"timed out after {timeout:.0f}s: {what} (logs in {af.home / 'logs'})")


def api_ready() -> bool:
    """Whether the API server answers its health check."""
    try:
        return httpx.get(f"http://localhost:{PORT}/api/v2/monitor/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def airflow_engine() -> Engine:
    """An engine on Airflow's metadata database (read to follow the runs)."""
    url = make_url(airflow_sql_alchemy_conn()).set(drivername="postgresql+psycopg")
    return get_engine(url)


def campaign_dag_ids(af_db: Engine) -> list[str]:
    """The campaign DAGs the DAG processor has parsed."""
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
    """The DAG files that failed to import, with their tracebacks."""
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

    def _call(self, method: str, path: str, what: str, **kwargs: Any) -> httpx.Response:
        resp = httpx.request(method, f"{self.base}/api/v2{path}", headers=self.headers, timeout=60, **kwargs)
        if resp.status_code >= 400 and resp.status_code not in (409, 422):
            raise SystemExit(f"{what} failed: {resp.status_code} {resp.text}")
        return resp

    def unpause(self, dag_id: str) -> None:
        """Unpause *dag_id*: its runs (backfilled ones too) get scheduled, and its live schedule starts."""
        self._call("PATCH", f"/dags/{dag_id}", f"unpausing {dag_id}", json={"is_paused": False})

    def backfill(
        self,
        dag_id: str,
        first: datetime,
        last: datetime,
        max_active_runs: int,
        conf: dict[str, Any] | None = None,
    ) -> bool:
        """Backfill the runs of *dag_id* whose logical dates (their intervals' starts) lie in [first, last],
        each with *conf*: runs that exist already are kept, failed ones run again.  False when there is
        nothing to run."""
        body: dict[str, Any] = {
            "dag_id": dag_id,
            "from_date": first.isoformat(),
            "to_date": last.isoformat(),
            "reprocess_behavior": "failed",
            "max_active_runs": max_active_runs,
            "dag_run_conf": conf or {},
        }
        what = f"backfilling {dag_id} from {first:%m-%d %H:%M} to {last:%m-%d %H:%M}"
        resp = self._call("POST", "/backfills", what, json=body)
        if resp.status_code == 409:  # an earlier demo's backfill stopped half-way: cancel it, start again
            listed = self._call("GET", "/backfills", what, params={"dag_id": dag_id}).json()
            for b in listed.get("backfills", []):
                if b.get("completed_at") is None:
                    self._call("PUT", f"/backfills/{b['id']}/cancel", what)
            resp = self._call("POST", "/backfills", what, json=body)
        if resp.status_code == 422 and "No runs to create" in resp.text:
            return False
        if resp.status_code >= 400:
            raise SystemExit(f"{what} failed: {resp.status_code} {resp.text}")
        return True


def run_states(
    af_db: Engine, dag_ids: list[str], since: datetime, until: datetime
) -> dict[tuple[str, datetime], str]:
    """The state of each DAG's latest run per data interval end in ``(since, until]``."""
    with af_db.connect() as conn:
        rows = conn.execute(
            sa.text(
                "select distinct on (dag_id, data_interval_end) dag_id, data_interval_end, state from dag_run"
                " where dag_id = any(:ids) and data_interval_end > :lo and data_interval_end <= :hi"
                " order by dag_id, data_interval_end, id desc"
            ),
            {"ids": dag_ids, "lo": since, "hi": until},
        ).all()
    return {(r[0], r[1]): r[2] for r in rows}


def await_runs(
    af: Airflow, af_db: Engine, what: str, expected: set[tuple[str, datetime]], until: datetime
) -> dict[str, int]:
    """Wait until every expected run (DAG, interval end) has finished; the count of each final state."""
    dag_ids = sorted({d for d, _ in expected})
    since = min(e for _, e in expected) - timedelta(seconds=1)

    def finished() -> dict[str, int] | str:
        states = run_states(af_db, dag_ids, since, until)
        done = [states[k] for k in expected if states.get(k) in ("success", "failed")]
        if len(done) < len(expected):
            return f"{len(done)} of {len(expected)} runs done"
        return {s: done.count(s) for s in sorted(set(done))}

    result: dict[str, int] = wait_for(what, finished, RUN_TIMEOUT, af)
    return result


def _interval(start: datetime, end: datetime) -> str:
    return f"{start:%m-%d %H:%M} → " + (
        f"{end:%H:%M}" if end - start < timedelta(hours=24) else f"{end:%m-%d %H:%M}"
    )


def replay_campaigns(af: Airflow, af_db: Engine, api: Api, dag_ids: list[str], until: datetime) -> None:
    """Every run the scheduler would have made of each campaign over the day: unpause the campaign DAGs
    (their live schedule starts), backfill each over the day's intervals, wait for every run."""
    from baton.airflow.dags.campaigns import dag_id_for
    from baton.spec import load_deployment
    from baton_dev.replay import day_runs

    policy, campaigns = load_deployment(baton_home() / "dags")
    scheduled = set(scheduled_dag_ids(af_db, dag_ids))
    by_dag: dict[str, list[Any]] = {}
    for run in day_runs(campaigns, policy, until):
        if dag_id_for(run.campaign_id) in scheduled:
            by_dag.setdefault(dag_id_for(run.campaign_id), []).append(run)
    for dag_id in sorted(scheduled):
        api.unpause(dag_id)
    table = Table("campaign DAG", "schedule", "runs over the day", "first interval (UTC)", "last interval")
    by_id = {c.id: c for c in campaigns}
    for dag_id, runs in sorted(by_dag.items()):
        api.backfill(dag_id, runs[0].start, runs[-1].start, max_active_runs=CAMPAIGN_RUNS_AT_ONCE)
        table.add_row(
            dag_id,
            by_id[runs[0].campaign_id].schedule,
            str(len(runs)),
            _interval(runs[0].start, runs[0].end),
            _interval(runs[-1].start, runs[-1].end),
        )
    console.print(table)
    expected = {(d, r.end) for d, runs in by_dag.items() for r in runs}
    started = time.perf_counter()
    states = await_runs(af, af_db, f"the scheduler runs {len(expected)} campaign runs", expected, until)
    console.print(
        f"campaign runs: {states.get('success', 0)} succeeded, {states.get('failed', 0)} failed"
        f" ({time.perf_counter() - started:.0f}s; runs an earlier demo made are kept, failed ones run again)"
    )


def replay_cycles(af: Airflow, af_db: Engine, api: Api, until: datetime) -> None:
    """The day's 24 decision cycles: backfill the arbitration DAG over them (one run at a time, in order,
    so each cycle's caps see the cycles before it), unpause it, wait for every run.

    The runs are started with ``allow_late_send``: the demo plays the day as if it were live, so each
    cycle's messages go to the local sinks and count toward the caps of the cycles after it.  A real
    backfill leaves it off: messages of cycles older than ``max_send_delay`` expire instead of being
    sent, and expired messages count toward no cap."""
    from baton.spec import load_policy
    from baton.spec.schedule import previous_at
    from baton_dev.replay import day_cycles

    policy = load_policy(baton_home() / "dags" / "policy.yaml")
    cycles = day_cycles(policy, until)
    schedule = policy.cycle.schedule
    first, last = (previous_at(schedule, c - timedelta(microseconds=1)) for c in (cycles[0], cycles[-1]))
    api.backfill(
        "baton_arbitration", first, last, max_active_runs=CYCLES_AT_ONCE, conf={"allow_late_send": True}
    )
    api.unpause("baton_arbitration")
    started = time.perf_counter()
    states = await_runs(
        af,
        af_db,
        f"the scheduler runs {len(cycles)} cycles (wait → decide in shards → commit → deliver)",
        {("baton_arbitration", c) for c in cycles},
        until,
    )
    console.print(
        f"arbitration runs: {states.get('success', 0)} succeeded, {states.get('failed', 0)} failed"
        f" ({time.perf_counter() - started:.0f}s)"
    )


def _per_person(conn: sa.Connection, sql: str, params: dict[str, Any]) -> Any:
    return conn.execute(
        sa.text(
            f"with per as ({sql}) select count(*) as people, coalesce(sum(n), 0) as total,"
            " coalesce(max(n), 0) as max, coalesce(percentile_disc(0.99) within group (order by n), 0) as p99,"
            " count(*) filter (where n > 2) as over2 from per"
        ),
        params,
    ).one()


def print_problem(engine: Engine, until: datetime) -> None:
    """What the campaigns proposed over the day, and what the independent automations would have sent."""
    from baton.spec import load_deployment
    from baton_dev.replay import DAY, independent_sql

    _policy, campaigns = load_deployment(baton_home() / "dags")
    window = {"lo": until - DAY, "hi": until}
    console.rule("[bold]4. what the campaigns proposed over the day")
    with engine.connect() as conn:
        batches = conn.execute(
            sa.text(
                "select b.campaign_id, count(*) as runs, sum(b.row_count) as rows,"
                " (select count(distinct c.customer_id) from candidates c"
                " where c.batch_id = any(array_agg(b.batch_id))) as profiles"
                " from candidate_batches b where b.cycle_at > :lo and b.cycle_at <= :hi"
                " group by b.campaign_id order by b.campaign_id"
            ),
            window,
        ).all()
        table = Table("campaign", "runs", "candidates", "profiles")
        for b in batches:
            table.add_row(b.campaign_id, f"{b.runs:,}", f"{b.rows:,}", f"{b.profiles:,}")
        console.print(table)
        sql, params = independent_sql(campaigns)
        stats = _per_person(
            conn,
            f"select person_id, count(*) as n from ({sql}) i where marketing group by 1",
            {**params, **window},
        )
        transactional = conn.execute(
            sa.text(f"select count(*) from ({sql}) i where not marketing"), {**params, **window}
        ).scalar()
    console.rule("[bold]5. without orchestration")
    console.print(
        "Every automation fires on its own, to each profile it finds (on the first of its channels that"
        f" profile can be reached on): [bold]{stats.total:,}[/bold] marketing messages to [bold]{stats.people:,}"
        f"[/bold] people over the day (and {transactional:,} order confirmations).\n  per person: max"
        f" [bold red]{stats.max}[/bold red], p99 [bold]{stats.p99}[/bold], people with more than 2:"
        f" [bold red]{stats.over2:,}[/bold red]"
    )


def print_outcome(engine: Engine, until: datetime) -> None:
    """What Baton decided over the day's cycles."""
    from baton_dev.replay import DAY

    window = {"lo": until - DAY, "hi": until}
    console.rule("[bold]6. with Baton")
    with engine.connect() as conn:
        stats = _per_person(
            conn,
            "select coalesce(person_id, customer_id), count(*) as n from messages"
            " where cycle_at > :lo and cycle_at <= :hi and counts_toward_caps group by 1",
            window,
        )
        transactional = conn.execute(
            sa.text(
                "select count(*) from messages where cycle_at > :lo and cycle_at <= :hi and not counts_toward_caps"
            ),
            window,
        ).scalar()
        rows = conn.execute(
            sa.text(
                "select campaign_id, outcome, sum(n)::int as n from cycle_outcomes where cycle_at > :lo"
                " and cycle_at <= :hi group by 1, 2 order by 1, 2"
            ),
            window,
        ).all()
        late = conn.execute(
            sa.text(
                "select string_agg(distinct campaign_id, ', ') from candidate_batches where cycle_at > :lo"
                " and cycle_at <= :hi and decided_cycle_at is null"
            ),
            window,
        ).scalar()
    if late:
        console.print(
            f"[yellow]batches not decided yet (late for their cycle: {late}) go to the next cycle[/yellow]"
        )
    console.print(
        f"Baton decided (selected) [bold]{stats.total:,}[/bold] marketing messages to [bold]{stats.people:,}"
        f"[/bold] people over the 24 cycles (and {transactional:,} order confirmations, which no cap holds back)."
        f"\n  per person: max [bold green]{stats.max}[/bold green], p99 [bold]{stats.p99}[/bold],"
        f" people with more than 2: [bold green]{stats.over2:,}[/bold green]"
    )
    outcomes = sorted(
        {r.outcome for r in rows}, key=lambda o: OUTCOME_ORDER.index(o) if o in OUTCOME_ORDER else 99
    )
    table = Table(
        "campaign", *outcomes, title="outcomes over the day (one per alternative: candidate × channel)"
    )
    per: dict[str, dict[str, int]] = {}
    for r in rows:
        per.setdefault(r.campaign_id, {})[r.outcome] = r.n
    for cid, counts in per.items():
        table.add_row(cid, *[f"{counts.get(o, 0):,}" for o in outcomes])
    console.print(table)


def print_shopper(engine: Engine, until: datetime) -> str | None:
    """The very active shopper's day, campaign by campaign, without and with Baton; her person's id."""
    from baton.seed import very_active_shopper
    from baton.spec import load_deployment
    from baton_dev.replay import daily_cap, person_day

    shopper = very_active_shopper(DEMO_CUSTOMERS, DEMO_SEED)
    if shopper is None:
        return None
    policy, campaigns = load_deployment(baton_home() / "dags")
    with engine.connect() as conn:
        day = person_day(conn, campaigns, shopper.profiles, until)
        timezone = conn.execute(
            sa.text("select timezone from customers where customer_id = :c"), {"c": shopper.account}
        ).scalar()
    console.rule(f"[bold]7. {shopper.name}'s day: without and with Baton")
    local = until.astimezone(ZoneInfo(timezone)) if timezone else until
    console.print(
        f"{shopper.name} ({shopper.email}) shops a lot: her account {shopper.account}, a guest checkout"
        f" {shopper.guest} and the app {shopper.app} are one person to Baton. The 24 hours up to"
        f" {until:%Y-%m-%d %H:%M} UTC ({local:%H:%M} her time):"
    )
    table = Table(
        "campaign",
        "account",
        "guest checkout",
        "app",
        "without Baton",
        "Baton decided",
        "sent",
        title="messages to her, campaign by campaign",
    )
    for c in sorted(day.campaigns.values(), key=lambda c: (not c.marketing, -sum(c.independent.values()))):
        if not c.independent and not c.selected:
            continue
        table.add_row(
            c.campaign_id + ("" if c.marketing else " (transactional)"),
            *[str(c.independent.get(p, 0)) for p in shopper.profiles],
            f"[red]{sum(c.independent.values())}[/red]",
            f"[green]{c.selected}[/green]",
            str(c.statuses.get("sent", 0)),
        )
    table.add_row(
        "[bold]marketing, all campaigns",
        *[
            str(sum(c.independent.get(p, 0) for c in day.campaigns.values() if c.marketing))
            for p in shopper.profiles
        ],
        f"[bold red]{day.independent(marketing_only=True)}",
        f"[bold green]{day.selected(marketing_only=True)}",
        str(sum(c.statuses.get("sent", 0) for c in day.campaigns.values() if c.marketing)),
    )
    console.print(table)
    why = {k: n for k, n in day.outcomes.items() if k != "channel_alternative"}
    cap = daily_cap(policy)
    console.print(
        f"Without Baton, [bold red]{day.independent(marketing_only=True)}[/bold red] marketing messages in 24"
        " hours: every automation fires on its own and knows nothing of the others, nor that her three"
        f" profiles are one person. With Baton, [bold green]{day.selected(marketing_only=True)}[/bold green]"
        f" (the daily cap is {cap}); its decisions on her candidates: "
        + ", ".join(f"{k} {n}" for k, n in why.items())
        + "."
    )
    expired, sent, pending = day.status("expired"), day.status("sent"), day.status("pending")
    console.print(
        f"Delivered to the demo's sinks: {sent} sent, {pending} pending (quiet hours), {expired} expired. The"
        " demo replays the day as if it were live (its cycles run with allow_late_send); a real backfill"
        f" expires the messages of cycles older than max_send_delay ({policy.cycle.max_send_delay}) instead"
        " of sending them."
    )
    return shopper.account


def busiest_cycle(engine: Engine, until: datetime) -> datetime | None:
    """The day's cycle with the most alternatives."""
    with engine.connect() as conn:
        row = conn.execute(
            sa.text(
                "select cycle_at from cycle_outcomes where cycle_at > :hi - interval '24 hours' and cycle_at <= :hi"
                " group by 1 order by sum(n) desc, 1 desc limit 1"
            ),
            {"hi": until},
        ).first()
    return row[0] if row else None


def print_delivery(engine: Engine, until: datetime, smtp: Any, http: Any) -> None:
    """What became of the day's messages."""
    from baton.spec import load_policy

    policy = load_policy(baton_home() / "dags" / "policy.yaml")
    console.rule("[bold]8. delivery")
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "select channel, status, count(*) as n, count(distinct cycle_at) as cycles from messages"
                " where cycle_at > :hi - interval '24 hours' and cycle_at <= :hi group by 1, 2 order by 1, 2"
            ),
            {"hi": until},
        ).all()
        over = conn.execute(
            sa.text(
                "select count(*) from (select coalesce(person_id, customer_id) from messages where status = 'sent'"
                " and counts_toward_caps and sent_at > now() - interval '24 hours' group by 1 having count(*) > 2) x"
            )
        ).scalar()
    table = Table("channel", "status", "messages", "of cycles")
    for r in rows:
        table.add_row(r.channel, r.status, f"{r.n:,}", str(r.cycles))
    console.print(table)
    console.print(
        "the replayed cycles ran with allow_late_send, so their messages went to the sinks as if the day were"
        f" live (without it, messages of cycles older than max_send_delay, {policy.cycle.max_send_delay},"
        " expire: a backfill recomputes history, it does not spam); pending: deferred by quiet hours (they go"
        " out with the first cycle after their send_at)\n"
        f"SMTP sink (maildir {smtp.maildir_path}): {smtp.received:,} emails, {len(smtp.counts):,} distinct "
        f"Message-IDs, {smtp.duplicates} duplicates\n"
        f"provider emulator: {sum(1 for a in http.accepted if a['kind'] == 'sms'):,} SMS, "
        f"{sum(1 for a in http.accepted if a['kind'] == 'push'):,} push, {http.duplicates} duplicates"
        f" (push authenticated by a service account: {http.token_requests} OAuth token(s) issued)\n"
        f"people who got more than 2 counting messages in 24 hours: [bold green]{over}[/bold green]"
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


def print_links(home: Path, password: str, until: datetime, person: str | None) -> None:
    """Where to look: Airflow's UI, the Marketing view's calendar, her timeline, the demo cycle."""
    base = f"http://localhost:{PORT}"
    marketing = f"{base}/baton/marketing"
    console.rule("[bold]Airflow UI and the Marketing view")
    lines = [
        f"  Airflow:    [bold]{base}[/bold]   login [bold]admin[/bold] / [bold]{password}[/bold]",
        f"  Marketing:  {base}/plugin/marketing   (the 'Marketing' entry of Airflow's navigation)",
        f"  calendar:   {marketing}/?day={until:%Y-%m-%d}   (the replayed day hour by hour;"
        f" ?day={until - timedelta(days=1):%Y-%m-%d} for its first hours)",
    ]
    if person is not None:
        lines.append(f"  her day:    {marketing}/customers/{person}   (every decision about her, explained)")
    lines += [
        f"  the cycle:  {marketing}/cycles/{until:%Y-%m-%dT%H:%M:%SZ}   (the last cycle's funnel)",
        f"  logs:       {home / 'logs'}",
        "  Press Ctrl-C to stop every process this demo started.",
    ]
    console.print("\n".join(lines))


def main() -> None:
    """``make demo``: see the module's docstring."""
    root = baton_home()
    os.chdir(root)
    started = time.perf_counter()
    console.rule("[bold]Baton demo")
    url = store_url()
    ensure_database(url)
    from baton.store.migrate import upgrade

    engine = get_engine()
    upgrade(engine)
    if seed_store(engine) == "rebuild":
        forget_earlier_demos(engine)
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
        until = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
        console.rule(f"[bold]3. a day replayed: the 24 hourly cycles up to {until:%Y-%m-%d %H:%M} UTC")
        console.print(
            "The campaign DAGs and then the arbitration DAG are backfilled over the 24 hours, through the real"
            " scheduler: every run the schedules would have made, each cycle deciding with what its runs proposed."
        )
        api = Api(password)
        replay_campaigns(af, af_db, api, dag_ids, until)
        print_problem(engine, until)
        replay_cycles(af, af_db, api, until)
        print_outcome(engine, until)
        person = print_shopper(engine, until)
        busiest = busiest_cycle(engine, until)
        if busiest is not None:
            print_identity_effect(engine, busiest)
        print_delivery(engine, until, smtp, http)
        print_links(home, password, until, person)
        console.print(f"(the demo took {time.perf_counter() - started:.0f}s to get here)")
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
