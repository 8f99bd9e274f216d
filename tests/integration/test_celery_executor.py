"""Baton on Airflow's CeleryExecutor: one decision cycle run by a real scheduler, API server,
DAG processor and triggerer, with its tasks executed by two Celery worker processes.

The broker is kombu's SQLAlchemy transport on the embedded PostgreSQL by default (a fresh
machine has only Python and make: no Redis to start); ``BATON_TEST_CELERY_BROKER`` names
another, e.g. ``redis://127.0.0.1:6379/0``.  Celery's results go to ``db+postgresql://`` on
the same server, as in docker-compose.yml.

Asserted: both workers ran tasks (every try of every task of the cycle's runs in Airflow's
metadata database was taken by one of the two named workers, according to their own logs), and
the outcome equals that of the in-process path (``dag.test()``) on an identical store: the same
cycle summary, decisions and outbox rows, and the same messages delivered, compared by content
(message ids aside), to a real SMTP server and a Twilio/FCM-shaped HTTP provider on loopback.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine

from baton_dev.sinks import ProviderEmulator, SmtpSink
from conftest import point_airflow_at

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
WORKERS = ("w1", "w2")
SECRET = "celery-test-secret-" + "c" * 32
UNSUBSCRIBE_URL = "http://localhost:8080/baton/unsubscribe"
SHARDS = "2"

POLICY = """\
cycle: {schedule: "0 * * * *", wait_for: 10m, max_send_delay: 3h}
caps:
  - {name: daily_total, limit: 2, window: 24h}
  - {name: one_promo_a_day, limit: 1, period: day, tag: promo}
"""

CAMPAIGNS = {
    "promo": ("60", "sms, email", "promo", "browse"),
    "stock": ("80", "push, email", "promo", "back_in_stock"),
    "cart": ("90", "email", "cart", "cart_abandoned"),
}
BLOCKS = {
    "email": '  email: {subject: "Hello {{ first_name }}", html: "<p>{{ item_name }} for {{ first_name }}</p>"}',
    "sms": '  sms: {text: "{{ item_name }} is back, {{ first_name }}"}',
    "push": '  push: {title: "Hi {{ first_name }}", body: "{{ item_name }}"}',
}


def _campaign(cid: str, priority: str, channels: str, tags: str, etype: str) -> str:
    chans = [c.strip() for c in channels.split(",")]
    return (
        f"id: {cid}\nname: {cid}\nowner: crm\nschedule: '@hourly'\nstart_date: 2026-01-01\n"
        f"priority: {priority}\ntags: [{tags}]\nchannels: [{channels}]\naudience:\n  sql: |\n"
        "    select customer_id, count(*) as score, max(item_name) as item_name from events\n"
        f"    where type = '{etype}' and ts >= {{{{ data_interval_start }}}} and ts < {{{{ data_interval_end }}}}\n"
        "    group by customer_id\n"
        "message:\n" + "\n".join(BLOCKS[c] for c in chans) + "\n"
    )


def _dags_folder(path: Path) -> Path:
    (path / "campaigns").mkdir(parents=True)
    (path / "templates").mkdir()
    (path / "policy.yaml").write_text(POLICY)
    for cid, args in CAMPAIGNS.items():
        (path / "campaigns" / f"{cid}.yaml").write_text(_campaign(cid, *args))
    for f in ("campaign_dags.py", "arbitration.py"):
        shutil.copy(ROOT / "dags" / f, path / f)
    return path


def _populate(engine: Engine, cycle: datetime, people: int = 40) -> None:
    """The same people, consents, history and events in every store (nothing random)."""
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "insert into customers (customer_id, email, phone, push_token, first_name, timezone)"
                " select 'p' || lpad(i::text, 3, '0'), 'p' || i || '@example.com',"
                " '+1555' || lpad(i::text, 7, '0'), case when i % 2 = 0 then 'tok' || i end, 'Name' || i, 'UTC'"
                " from generate_series(1, :n) i"
            ),
            {"n": people},
        )
        conn.execute(
            sa.text(
                "insert into consents (customer_id, channel, topic, status) select customer_id, 'sms', '', 'opt_in'"
                " from customers where right(customer_id, 1) in ('1', '3', '5', '7')"
            )
        )
        # yesterday's messages: some people are near their daily cap already
        conn.execute(
            sa.text(
                "insert into messages (cycle_at, customer_id, campaign_id, channel, tags, counts_toward_caps,"
                " send_at, status) select :h, customer_id, 'promo', 'email', '{promo}', true, :h, 'sent'"
                " from customers where right(customer_id, 1) in ('2', '4', '9')"
            ),
            {"h": cycle - timedelta(hours=20)},
        )
        conn.execute(
            sa.text(
                "insert into events (customer_id, type, ts, item_name) select customer_id, v.t,"
                " :ts - make_interval(mins => v.m), 'Boots' from customers"
                " cross join (values ('browse', 20), ('back_in_stock', 30), ('cart_abandoned', 40)) v(t, m)"
                " where (right(customer_id, 1)::int + v.m / 10) % 3 <> 0"
            ),
            {"ts": cycle},
        )


def _connections(smtp: SmtpSink, http: ProviderEmulator) -> dict[str, str]:
    return {
        "AIRFLOW_CONN_BATON_EMAIL": json.dumps(
            {
                "conn_type": "smtp",
                "host": "127.0.0.1",
                "port": smtp.port,
                "extra": {"from": "Shop <shop@example.com>"},
            }
        ),
        "AIRFLOW_CONN_BATON_SMS": json.dumps(
            {
                "conn_type": "http",
                "host": http.base_url,
                "login": http.twilio_sid,
                "password": http.twilio_token,
                "extra": {"from": "+15550000000"},
            }
        ),
        "AIRFLOW_CONN_BATON_PUSH": json.dumps(
            {
                "conn_type": "http",
                "host": http.base_url,
                "password": http.fcm_token,
                "extra": {"project": http.fcm_project},
            }
        ),
    }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _drop_database(name: str) -> None:
    from baton.store import engine as store_engine

    store_engine.drop_database(store_engine.server_url().set(database=name))


def _url(url: URL) -> str:
    return url.render_as_string(hide_password=False)


@dataclass
class CeleryStack:
    """A real Airflow on the CeleryExecutor: its processes, their logs and its metadata database."""

    env: dict[str, str]
    logs: Path
    port: int
    metadata: Engine
    broker: str
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self, name: str, *args: str) -> None:
        log = open(self.logs / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        self.procs[name] = subprocess.Popen(
            [sys.executable, "-m", "airflow", *args],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def run(self, *args: str) -> None:
        proc = subprocess.run(
            [sys.executable, "-m", "airflow", *args], env=self.env, capture_output=True, text=True
        )
        assert proc.returncode == 0, f"airflow {' '.join(args)}:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}"

    def stop(self) -> None:
        for proc in self.procs.values():
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 30
        for proc in self.procs.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait(timeout=10)

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(encoding="utf-8", errors="replace")

    def diagnosis(self) -> str:
        """The tails of every process log and the task instances that did not succeed."""
        parts = []
        for name, proc in self.procs.items():
            state = "running" if proc.poll() is None else f"exited {proc.returncode}"
            parts.append(f"--- {name} ({state}) ---\n{self.log(name)[-2500:]}")
        with self.metadata.connect() as conn:
            rows = conn.execute(
                sa.text(
                    "select dag_id, task_id, map_index, state, hostname from task_instance"
                    " where state is distinct from 'success' order by dag_id, task_id"
                )
            ).all()
        parts.append("--- unfinished task instances ---\n" + "\n".join(map(str, rows)))
        return "\n".join(parts)

    def wait(self, what: str, predicate: Callable[[], Any], timeout: float) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    raise AssertionError(f"{name} exited while waiting for {what}\n{self.diagnosis()}")
            value = predicate()
            if value:
                return value
            time.sleep(1)
        raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}\n{self.diagnosis()}")


def _broker(database: URL) -> str:
    """The Celery broker: ``BATON_TEST_CELERY_BROKER``, else kombu's SQLAlchemy transport on *database*."""
    chosen = os.environ.get("BATON_TEST_CELERY_BROKER", "").strip()
    if chosen in ("", "sqla", "postgres"):
        return "sqla+" + _url(database.set(drivername="postgresql+psycopg2"))
    if chosen.startswith(("redis://", "rediss://", "amqp://", "sqla+")):
        return chosen
    raise AssertionError(
        f"BATON_TEST_CELERY_BROKER={chosen!r}: leave it unset (kombu's SQLAlchemy transport on the test "
        "PostgreSQL) or give a broker URL such as redis://127.0.0.1:6379/0"
    )


def _declare(broker: str, queue: str) -> None:
    """Create the broker's queue before the workers start: two workers that create it at once on
    kombu's SQLAlchemy transport race (one dies of a unique violation)."""
    from kombu import Connection, Exchange, Queue

    with Connection(broker) as conn:
        Queue(queue, Exchange(queue, type="direct"), routing_key=queue)(conn.default_channel).declare()


@pytest.fixture()
def celery_stack(
    fresh_store: Engine, tmp_path: Path
) -> Iterator[tuple[CeleryStack, SmtpSink, ProviderEmulator]]:
    from baton.store import engine as store_engine

    assert importlib.util.find_spec("airflow.providers.celery") is not None, (
        "the Celery provider is not installed: `make install` installs requirements-celery.txt"
    )
    suffix = uuid.uuid4().hex[:8]
    af_db, broker_db = f"airflow_cel_{suffix}", f"celery_broker_{suffix}"
    server = store_engine.server_url()
    af_url = server.set(drivername="postgresql+psycopg2", database=af_db)
    for name in (af_db, broker_db):
        store_engine.ensure_database(server.set(database=name))
    smtp = SmtpSink(maildir=tmp_path / "celery-maildir")
    http = ProviderEmulator(store=tmp_path / "celery-provider")
    metadata = sa.create_engine(af_url.set(drivername="postgresql+psycopg"))
    stack: CeleryStack | None = None
    try:
        dags = _dags_folder(tmp_path / "celery-dags")
        logs = tmp_path / "logs"
        logs.mkdir()
        smtp.start()
        http.start()
        port = _free_port()
        queue = f"baton_test_{suffix}"  # this run's own queue, even on a broker others use
        env = dict(os.environ)
        env.update(
            {
                "AIRFLOW_HOME": str(tmp_path / "airflow"),
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": _url(af_url),
                "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
                "AIRFLOW__CELERY__BROKER_URL": _broker(server.set(database=broker_db)),
                "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + _url(af_url.set(drivername="postgresql+psycopg2")),
                "AIRFLOW__OPERATORS__DEFAULT_QUEUE": queue,
                "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__PARALLELISM": "8",
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://localhost:{port}/execution/",
                "AIRFLOW__API__PORT": str(port),
                "AIRFLOW__API_AUTH__JWT_SECRET": uuid.uuid4().hex,
                "AIRFLOW__API__SECRET_KEY": uuid.uuid4().hex,
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
                "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(_free_port()),
                "BATON_DATABASE_URL": _url(fresh_store.url),
                "BATON_UNSUBSCRIBE_SECRET": SECRET,
                "BATON_UNSUBSCRIBE_URL": UNSUBSCRIBE_URL,
                "BATON_ARBITRATION_SHARDS": SHARDS,
                "BATON_DELIVERY_SHARDS": SHARDS,
                **_connections(smtp, http),
                "PYTHONPATH": os.pathsep.join(
                    filter(None, [str(ROOT / "include"), str(ROOT / "dev"), os.environ.get("PYTHONPATH")])
                ),
            }
        )
        stack = CeleryStack(
            env=env, logs=logs, port=port, metadata=metadata, broker=env["AIRFLOW__CELERY__BROKER_URL"]
        )
        stack.run("db", "migrate")
        _declare(stack.broker, queue)
        pools = {
            f"baton_{ch}": {"slots": 4, "description": f"Baton {ch} delivery"}
            for ch in ("email", "sms", "push")
        }
        (tmp_path / "pools.json").write_text(json.dumps(pools))
        stack.run("pools", "import", str(tmp_path / "pools.json"))
        stack.start("api-server", "api-server", "--port", str(port))
        stack.start("scheduler", "scheduler")
        stack.start("dag-processor", "dag-processor")
        stack.start("triggerer", "triggerer")
        for w in WORKERS:
            stack.start(
                w,
                "celery",
                "worker",
                "--celery-hostname",
                f"{w}@baton-test-{suffix}",
                "--concurrency",
                "1",
                "--queues",
                queue,
                "--skip-serve-logs",
                "--without-mingle",
                "--without-gossip",
            )
        yield stack, smtp, http
    finally:
        if stack is not None:
            stack.stop()
        smtp.stop()
        http.stop()
        metadata.dispose()
        for name in (af_db, broker_db):
            _drop_database(name)


@pytest.fixture()
def reference_store(empty_store: Engine) -> Engine:
    from baton.store.migrate import upgrade

    upgrade(empty_store)
    return empty_store


class Api:
    """The REST API of the stack (all users are admins in this test)."""

    def __init__(self, port: int) -> None:
        self.base = f"http://localhost:{port}"
        token = httpx.get(f"{self.base}/auth/token", timeout=30)
        token.raise_for_status()
        self.headers = {"Authorization": f"Bearer {token.json()['access_token']}"}

    def unpause(self, dag_id: str) -> None:
        resp = httpx.patch(
            f"{self.base}/api/v2/dags/{dag_id}", json={"is_paused": False}, headers=self.headers, timeout=30
        )
        assert resp.status_code == 200, resp.text

    def trigger(self, dag_id: str, cycle: datetime) -> str:
        """Run *dag_id* for the data interval ending at *cycle* (an hour long)."""
        start = cycle - timedelta(hours=1)
        body = {
            "dag_run_id": f"celery_test__{start:%Y%m%dT%H}",
            "logical_date": start.isoformat(),
            "data_interval_start": start.isoformat(),
            "data_interval_end": cycle.isoformat(),
            "conf": {},
        }
        resp = httpx.post(
            f"{self.base}/api/v2/dags/{dag_id}/dagRuns", json=body, headers=self.headers, timeout=30
        )
        assert resp.status_code == 200, resp.text
        return str(body["dag_run_id"])


def _api_ready(port: int) -> bool:
    try:
        return httpx.get(f"http://localhost:{port}/api/v2/monitor/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _run_states(metadata: Engine, runs: dict[str, str]) -> dict[str, str] | None:
    with metadata.connect() as conn:
        rows = conn.execute(
            sa.text("select dag_id, run_id, state from dag_run where dag_id = any(:d)"), {"d": list(runs)}
        ).all()
    states = {dag_id: state for dag_id, run_id, state in rows if runs[dag_id] == run_id}
    failed = sorted(d for d, s in states.items() if s == "failed")
    assert not failed, f"runs failed: {failed}"
    return states if len(states) == len(runs) and set(states.values()) == {"success"} else None


def _run_reference(dags: Path, cycle: datetime) -> None:
    """The cycle on the in-process path (``dag.test()``: tasks run in this process)."""
    from baton.airflow.dags.arbitration import build_arbitration_dag
    from baton.airflow.dags.campaigns import build_campaign_dags

    for dag in build_campaign_dags(dags).values():
        assert dag.test(logical_date=cycle).state == "success", dag.dag_id
    assert build_arbitration_dag(dags).test(logical_date=cycle).state == "success"


# what a worker logs as it takes a task: "[celery id] Executing workload in Celery: … ti=TaskInstanceDTO(
# id=UUID('…'), task_id='…', dag_id='…', run_id='…', …"
_TI_IN_LOG = re.compile(
    r"Executing workload in Celery: .*?ti=\w+\(id=UUID\('([0-9a-f-]{36})'\), task_id='[^']*',"
    r" dag_id='[^']*', run_id='([^']*)'"
)


def _ran_by(log: str, run_id: str) -> set[str]:
    """Ids of the task instances of *run_id* that the worker whose log is *log* executed."""
    return {ti for ti, run in _TI_IN_LOG.findall(log) if run == run_id}


def _decisions(engine: Engine, cycle: datetime) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        return [
            tuple(r)
            for r in conn.execute(
                sa.text(
                    "select customer_id, campaign_id, channel, outcome, coalesce(reason, ''), send_at"
                    " from decisions where cycle_at = :c order by 1, 2, 3"
                ),
                {"c": cycle},
            )
        ]


def _cycle_row(engine: Engine, cycle: datetime) -> tuple[Any, ...]:
    with engine.connect() as conn:
        return tuple(
            conn.execute(
                sa.text("select status, shards, alternatives from cycles where cycle_at = :c"), {"c": cycle}
            ).one()
        )


def _outbox(engine: Engine, cycle: datetime) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        return [
            tuple(r)
            for r in conn.execute(
                sa.text(
                    "select customer_id, campaign_id, channel, tags, counts_toward_caps, send_at, status"
                    " from messages where cycle_at = :c order by 1, 2, 3"
                ),
                {"c": cycle},
            )
        ]


def _delivered(engine: Engine, smtp: SmtpSink, http: ProviderEmulator) -> list[tuple[Any, ...]]:
    """What reached the servers, by content: each message keyed by (customer, campaign, channel)
    instead of its database id; unsubscribe links replaced by the claim they carry (verified)."""
    from baton.delivery.unsubscribe import verify_token

    with engine.connect() as conn:
        key = {
            r.message_id: (r.customer_id, r.campaign_id, r.channel)
            for r in conn.execute(
                sa.text("select message_id, customer_id, campaign_id, channel from messages")
            )
        }
    link = re.compile(re.escape(UNSUBSCRIBE_URL) + r"/([A-Za-z0-9_-]+\.[A-Za-z0-9_-]+)")

    def claims(text: str, message_id: int) -> str:
        def replace(m: re.Match[str]) -> str:
            claim = verify_token(SECRET.encode(), m.group(1))
            assert claim.message_id == message_id, (claim, message_id)
            return f"<unsubscribe {claim.customer_id} {claim.channel} {claim.topic!r}>"

        return link.sub(replace, text)

    out: list[tuple[Any, ...]] = []
    for mail in smtp.messages():
        mid = int(str(mail["X-Baton-Message-Id"]))
        parts = [
            claims(mail.get_body((kind,)).get_content(), mid)  # type: ignore[union-attr]
            for kind in ("plain", "html")
        ]
        head = [mail["From"], mail["To"], mail["Subject"], claims(str(mail["List-Unsubscribe"]), mid)]
        out.append(("email", key[mid], *map(str, head), *parts))
    for sms in http.messages("sms"):
        mid = int(sms["message_id"])
        out.append(("sms", key[mid], sms["to"], sms["from"], claims(sms["body"], mid)))
    for push in http.messages("push"):
        mid = int(push["message_id"])
        data = {k: claims(v, mid) for k, v in push["data"].items() if k != "baton_message_id"}
        out.append(
            ("push", key[mid], push["to"], push["title"], push["body"], json.dumps(data, sort_keys=True))
        )
    return sorted(out)


def test_a_cycle_on_celery_equals_the_in_process_cycle(  # type: ignore[no-untyped-def]
    celery_stack,
    fresh_store: Engine,
    reference_store: Engine,
    airflow_db: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stack, smtp, http = celery_stack
    began = time.monotonic()
    cycle = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    _populate(fresh_store, cycle)
    _populate(reference_store, cycle)

    # the reference, in this process, while the stack starts
    ref_dags = _dags_folder(tmp_path / "reference-dags")
    with (
        SmtpSink(maildir=tmp_path / "reference-maildir") as ref_smtp,
        ProviderEmulator(store=tmp_path / "reference-provider") as ref_http,
    ):
        with monkeypatch.context() as mp:
            mp.setenv("BATON_DATABASE_URL", _url(reference_store.url))
            point_airflow_at(mp, ref_dags)
            for name, value in {
                "BATON_UNSUBSCRIBE_SECRET": SECRET,
                "BATON_UNSUBSCRIBE_URL": UNSUBSCRIBE_URL,
                "BATON_ARBITRATION_SHARDS": SHARDS,
                "BATON_DELIVERY_SHARDS": SHARDS,
                **_connections(ref_smtp, ref_http),
            }.items():
                mp.setenv(name, value)
            mp.chdir(tmp_path)
            _run_reference(ref_dags, cycle)
        reference = (
            _cycle_row(reference_store, cycle),
            _decisions(reference_store, cycle),
            _outbox(reference_store, cycle),
            _delivered(reference_store, ref_smtp, ref_http),
        )

    # the same cycle on the CeleryExecutor
    stack.wait("the API server", lambda: _api_ready(stack.port), 180)
    for w in WORKERS:
        stack.wait(f"Celery worker {w}", lambda w=w: " ready." in stack.log(w), 180)

    def parsed() -> bool:
        with stack.metadata.connect() as conn:
            return conn.execute(sa.text("select count(*) from dag")).scalar() == len(CAMPAIGNS) + 1

    stack.wait("the DAG processor to parse the DAGs", parsed, 180)
    api = Api(stack.port)
    campaigns = {f"campaign__{cid}": "" for cid in CAMPAIGNS}
    for dag_id in campaigns:
        campaigns[dag_id] = api.trigger(dag_id, cycle)
        api.unpause(dag_id)
    stack.wait("the campaign runs", lambda: _run_states(stack.metadata, campaigns), 240)
    arbitration = {"baton_arbitration": api.trigger("baton_arbitration", cycle)}
    api.unpause("baton_arbitration")
    stack.wait("the arbitration run", lambda: _run_states(stack.metadata, arbitration), 300)
    elapsed = time.monotonic() - began

    # both workers ran tasks, and together they ran every try of every task of the cycle
    run_id = arbitration["baton_arbitration"]
    assert set(campaigns.values()) == {run_id}
    with stack.metadata.connect() as conn:
        tries = conn.execute(
            sa.text(
                "select id, dag_id, task_id, map_index, try_number from task_instance"
                " where run_id = :r and start_date is not null"
                " union all select task_instance_id, dag_id, task_id, map_index, try_number"
                " from task_instance_history where run_id = :r"  # earlier tries (retries) keep their own id
            ),
            {"r": run_id},
        ).all()
    executed = {str(t.id) for t in tries}
    ran = {w: _ran_by(stack.log(w), run_id) for w in WORKERS}
    assert all(ran.values()), f"a worker ran no task: {ran}"
    assert set().union(*ran.values()) == executed, (tries, ran)
    # 3 campaign tasks; wait, begin, 2 decide shards, commit, delivery_shards, 3 channels x 2 shards
    assert len({(t.dag_id, t.task_id, t.map_index) for t in tries}) == 15, tries

    # the same outcome as the in-process path
    summary, decisions, outbox, delivered = reference
    assert summary == ("decided", int(SHARDS), len(decisions)), summary
    assert decisions and {d[3] for d in decisions} >= {"selected", "capped"}, decisions
    assert {m[2] for m in outbox} == {"email", "sms", "push"} and {m[-1] for m in outbox} == {"sent"}, outbox
    assert len(delivered) == len(outbox)
    assert _cycle_row(fresh_store, cycle) == summary
    assert _decisions(fresh_store, cycle) == decisions
    assert _outbox(fresh_store, cycle) == outbox
    assert _delivered(fresh_store, smtp, http) == delivered
    assert smtp.duplicates == 0 and http.duplicates == 0
    print(
        f"\nCeleryExecutor cycle (broker {stack.broker.split(':')[0]}): {len(tries)} task tries, per worker"
        f" {', '.join(f'{w}: {len(r)}' for w, r in ran.items())}; {len(delivered)} messages; {elapsed:.0f}s"
    )
