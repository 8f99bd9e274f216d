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
from datetime import UTC, datetime
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

console = Console()

DEMO_CUSTOMERS = int(os.environ.get("BATON_DEMO_CUSTOMERS", "10000"))
DEMO_DAYS = int(os.environ.get("BATON_DEMO_DAYS", "30"))
DEMO_SEED = int(os.environ.get("BATON_DEMO_SEED", "42"))
PORT = int(os.environ.get("BATON_DEMO_PORT", "8080"))
RUN_TIMEOUT = float(os.environ.get("BATON_DEMO_TIMEOUT", "600"))


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
                raise SystemExit(
                    f"an Airflow process exited ({' '.join(map(str, proc.args))}); see {self.home / 'logs'}"
                )


def _secret(path: Path) -> str:
    if not path.exists():
        path.write_text(secrets.token_urlsafe(32))
        path.chmod(0o600)
    return path.read_text().strip()


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
            "BATON_HOME": str(root),
            "PYTHONPATH": os.pathsep.join(filter(None, [str(root / "include"), os.environ.get("PYTHONPATH")])),
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
    run_seed(engine, customers=DEMO_CUSTOMERS, days=DEMO_DAYS, seed=DEMO_SEED, until=None, reset=False, console=console)


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
            sa.text("select dag_id from dag where dag_id like 'campaign\\_\\_%' and is_stale is false order by 1")
        ).all()
    return [r[0] for r in rows]


def scheduled_dag_ids(af_db: Engine, dag_ids: list[str]) -> list[str]:
    """The DAGs that have a schedule (placeholders of invalid files have none)."""
    with af_db.connect() as conn:
        rows = conn.execute(
            sa.text("select dag_id from dag where dag_id = any(:ids) and coalesce(timetable_summary, 'None') <> 'None'"),
            {"ids": dag_ids},
        ).all()
    return sorted(r[0] for r in rows)


def run_states(af_db: Engine, dag_ids: list[str]) -> dict[str, str]:
    """State of each DAG's newest run (by data interval); absent while it has none."""
    with af_db.connect() as conn:
        rows = conn.execute(
            sa.text(
                "select distinct on (dag_id) dag_id, state from dag_run where dag_id = any(:ids)"
                " order by dag_id, data_interval_end desc nulls last, id desc"
            ),
            {"ids": dag_ids},
        ).all()
    return {r[0]: r[1] for r in rows}


def import_errors(af_db: Engine) -> list[tuple[str, str]]:
    with af_db.connect() as conn:
        return [(r[0], r[1]) for r in conn.execute(sa.text("select filename, stacktrace from import_error")).all()]


def print_problem(engine: Engine) -> None:
    console.rule("[bold]3. what the campaigns propose")
    with engine.connect() as conn:
        batches = conn.execute(
            sa.text(
                "select distinct on (campaign_id) campaign_id, batch_id, cycle_at, row_count,"
                " (select count(distinct customer_id) from candidates c where c.batch_id = b.batch_id) as people"
                " from candidate_batches b order by campaign_id, cycle_at desc, loaded_at desc"
            ),
        ).all()
        table = Table("campaign", "feeds cycle (UTC)", "candidate rows", "people")
        for b in batches:
            table.add_row(b.campaign_id, f"{b.cycle_at:%Y-%m-%d %H:%M}", f"{b.row_count:,}", f"{b.people:,}")
        console.print(table)
        ids = [b.batch_id for b in batches]
        stats = conn.execute(
            sa.text(
                "with per as (select customer_id, count(distinct batch_id) as n from candidates"
                " where batch_id = any(:ids) group by customer_id)"
                " select count(*) as people, coalesce(max(n), 0) as max,"
                " coalesce(percentile_disc(0.99) within group (order by n), 0) as p99,"
                " count(*) filter (where n > 2) as over2, coalesce(sum(n), 0) as total from per"
            ),
            {"ids": ids},
        ).one()
    console.rule("[bold]4. the problem in numbers: without orchestration")
    console.print(
        f"Every automation fires on its own: [bold]{stats.total:,}[/bold] messages to "
        f"[bold]{stats.people:,}[/bold] people from the latest run of each campaign.\n"
        f"  messages per person: max [bold red]{stats.max}[/bold red], p99 [bold]{stats.p99}[/bold], "
        f"people with more than 2: [bold red]{stats.over2:,}[/bold red]"
    )


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

    console.rule("[bold]2. Airflow (scheduler, DAG processor, API server, triggerer)")
    home = root / ".baton" / "airflow"
    (home / "logs").mkdir(parents=True, exist_ok=True)
    ensure_database(make_url(airflow_sql_alchemy_conn()).set(drivername="postgresql+psycopg"))
    af = Airflow(home, airflow_env(home, url.render_as_string(hide_password=False)))
    password = admin_password(home)
    with console.status("airflow db migrate"):
        af.run("db", "migrate")
    try:
        af.start("api-server", "api-server", "--port", str(PORT))
        af.start("scheduler", "scheduler")
        af.start("dag-processor", "dag-processor")
        af.start("triggerer", "triggerer")
        wait_for("waiting for the API server", api_ready, 180, af)
        af_db = airflow_engine()
        dag_ids = wait_for("waiting for the DAG processor to parse the campaigns",
                           lambda: campaign_dag_ids(af_db), 240, af)
        errors = import_errors(af_db)
        console.print(f"{len(dag_ids)} campaign DAGs parsed, {len(errors)} import errors")
        for filename, trace in errors:
            console.print(f"[red]import error in {filename}[/red]\n{trace}")
        runnable = scheduled_dag_ids(af_db, dag_ids)
        af.run("dags", "unpause", "--treat-dag-id-as-regex", "-y", "^campaign__")
        time.sleep(10)  # let the scheduler create the runs of the latest intervals

        def all_done() -> dict[str, str] | None:
            states = run_states(af_db, runnable)
            if len(states) < len(runnable) or any(s not in ("success", "failed") for s in states.values()):
                return None
            return states

        states = wait_for(f"the scheduler runs {len(runnable)} campaign DAGs", all_done, RUN_TIMEOUT, af)
        failed = sorted(d for d, s in states.items() if s != "success")
        console.print(f"campaign runs: {len(states) - len(failed)} succeeded, {len(failed)} failed {failed or ''}")
        print_problem(engine)
        console.rule("[bold]Airflow UI")
        console.print(
            f"  URL:   [bold]http://localhost:{PORT}[/bold]\n  login: [bold]admin[/bold] / [bold]{password}[/bold]\n"
            f"  logs:  {home / 'logs'}\n  Press Ctrl-C to stop every process this demo started."
        )
        if os.environ.get("BATON_DEMO_EXIT"):
            return
        while True:
            af.check_alive()
            time.sleep(2)
    except KeyboardInterrupt:
        console.print("\nstopping Airflow…")
    finally:
        # pause again so that the next `make demo` starts from the latest interval, not a catch-up
        af.run("dags", "pause", "--treat-dag-id-as-regex", "-y", "^campaign__", check=False)
        af.stop()
        console.print("Airflow stopped. The data stays in .baton/ (`make clean` deletes it; "
                      "`make db-stop` stops the embedded PostgreSQL).")


if __name__ == "__main__":
    main()
