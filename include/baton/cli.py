"""The ``baton`` command line (also ``python -m baton``).

User mistakes end with a one-line (or one-line-per-problem) message and a non-zero
exit status, never a stack trace.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from baton.errors import BatonError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Baton: campaigns propose, Baton decides.")
db_app = typer.Typer(
    no_args_is_help=True, help="The marketing store (embedded PostgreSQL unless BATON_DATABASE_URL)."
)
app.add_typer(db_app, name="db")

err = Console(stderr=True)
out = Console()


def _fail(exc: BatonError, code: int = 2) -> None:
    err.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


@app.command()
def validate(
    paths: Annotated[
        list[Path] | None, typer.Argument(help="Campaign/policy files or folders (default: dags/)")
    ] = None,
) -> None:
    """Check campaign and policy files; print every error as file:line: field: message."""
    from baton.spec import validate_paths

    issues = validate_paths(list(paths or [Path("dags")]))
    for issue in issues:
        out.print(str(issue), highlight=False, soft_wrap=True, markup=False)
    if issues:
        err.print(f"[red]{len(issues)} error(s)[/red]")
        raise typer.Exit(1)
    out.print("[green]all files valid[/green]")


@app.command()
def status(
    dags: Annotated[
        Path, typer.Option(help="the dags folder (its policy.yaml gives the cycle schedule)")
    ] = Path("dags"),
    cycles: Annotated[int, typer.Option(help="how many recent cycles to show")] = 10,
) -> None:
    """Show recent cycles, batches waiting for a cycle that never ran, and the outbox per channel."""
    from rich.table import Table

    from baton.arbitration.status import read_status, stranded_advice
    from baton.spec import Policy, SpecValidationError, load_policy
    from baton.store.engine import get_engine
    from baton.store.migrate import require_current

    try:
        require_current(get_engine())
        state = read_status(get_engine(), cycles=cycles)
    except BatonError as exc:
        _fail(exc)
    table = Table(
        "cycle (UTC)", "status", "decided at", "alternatives", "selected", "late campaigns", title="cycles"
    )
    for c in state.cycles:
        decided = f"{c.decided_at:%Y-%m-%d %H:%M:%S}" if c.decided_at else "-"
        late = ", ".join(c.late_campaigns) or "-"
        table.add_row(
            f"{c.cycle_at:%Y-%m-%d %H:%M}", c.status, decided, f"{c.alternatives:,}", f"{c.selected:,}", late
        )
    out.print(table if state.cycles else "no cycle has run yet")
    if state.outbox:
        box = Table(
            "channel", "status", "messages", title="outbox (pending and sending, and the last 24 hours)"
        )
        for channel, st, n in state.outbox:
            box.add_row(channel, st, f"{n:,}")
        out.print(box)
    if state.stranded:
        try:
            schedule = load_policy(dags / "policy.yaml").cycle.schedule
        except SpecValidationError:
            schedule = Policy().cycle.schedule
        out.print("[yellow]batches waiting for a cycle that never ran:[/yellow]")
        out.print(stranded_advice(state.stranded, schedule), highlight=False, markup=False, soft_wrap=True)
        raise typer.Exit(1)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Create or migrate the store's tables (idempotent)."""
    from baton.store.engine import ensure_database, get_engine, store_url
    from baton.store.migrate import upgrade

    try:
        ensure_database(store_url())
        before, after = upgrade(get_engine())
    except BatonError as exc:
        _fail(exc)
    if before == after:
        out.print(f"store is up to date (revision {after})")
    else:
        out.print(f"store migrated {before or 'empty'} -> {after}")


@db_app.command("url")
def db_url(
    airflow: Annotated[
        bool, typer.Option("--airflow", help="Airflow's metadata database instead of the store")
    ] = False,
    sqlalchemy: Annotated[
        bool,
        typer.Option(
            "--sqlalchemy",
            help="SQLAlchemy's form with the driver (e.g. for AIRFLOW__DATABASE__SQL_ALCHEMY_CONN)",
        ),
    ] = False,
) -> None:
    """Print the store's URL (starting the embedded server if needed): psql "$(baton db url)" connects."""
    from sqlalchemy.engine import make_url

    from baton.store.engine import airflow_sql_alchemy_conn, ensure_database, libpq_url, store_url

    try:
        url = make_url(airflow_sql_alchemy_conn()) if airflow else store_url()
        ensure_database(url.set(drivername="postgresql+psycopg"))
    except BatonError as exc:
        _fail(exc)
    print(url.render_as_string(hide_password=False) if sqlalchemy else libpq_url(url))


@db_app.command("stop")
def db_stop() -> None:
    """Stop the embedded PostgreSQL (no effect with BATON_DATABASE_URL)."""
    from baton.store.engine import stop_embedded

    out.print("stopped" if stop_embedded() else "embedded PostgreSQL was not running")


@app.command()
def seed(
    customers: Annotated[int, typer.Option(help="number of customers")] = 10_000,
    days: Annotated[int, typer.Option(help="days of events, ending now")] = 30,
    seed: Annotated[int, typer.Option("--seed", help="random seed; same seed, same data")] = 42,
    until: Annotated[str | None, typer.Option(help="end of the events (ISO 8601 UTC); default: now")] = None,
    reset: Annotated[bool, typer.Option(help="delete existing customers and events first")] = False,
) -> None:
    """Write deterministic synthetic customers, consents, suppressions and events (COPY)."""
    from baton.seed import run_seed
    from baton.store.engine import ensure_database, get_engine, store_url
    from baton.store.migrate import upgrade

    try:
        ensure_database(store_url())
        upgrade(get_engine())
        run_seed(
            get_engine(), customers=customers, days=days, seed=seed, until=until, reset=reset, console=out
        )
    except BatonError as exc:
        _fail(exc)


@app.command()
def simulate(
    scenario_dir: Annotated[
        Path, typer.Argument(help="folder with policy.yaml, campaigns/, customers.csv, candidates.csv, ...")
    ],
    at: Annotated[str, typer.Option("--at", help="decision time, ISO 8601 UTC (e.g. 2026-03-02T12:00:00Z)")],
    out_path: Annotated[Path, typer.Option("--out", help="where to write decisions.csv")] = Path(
        "decisions.csv"
    ),
    shards: Annotated[
        int, typer.Option(help="decide in this many shards (the result does not depend on it)")
    ] = 1,
) -> None:
    """Decide one cycle from files with the DAG's engine (what-if analysis); writes decisions.csv."""
    from collections import Counter

    from baton.arbitration.scenario import load_scenario, parse_at, write_decisions_csv
    from baton.arbitration.simulate import decide_scenario
    from baton.store.engine import ensure_database, get_engine, store_url
    from baton.store.migrate import upgrade

    try:
        when = parse_at(at)
        scenario = load_scenario(scenario_dir, ignore=[out_path])
        ensure_database(store_url())
        upgrade(get_engine())
        with err.status("deciding…"):
            decisions = decide_scenario(get_engine(), scenario, when, shards=shards)
        write_decisions_csv(decisions, out_path)
    except BatonError as exc:
        _fail(exc, 2)
    counts = Counter(d.outcome for d in decisions)
    out.print(f"{len(decisions):,} decisions at {when.isoformat()} -> {out_path}")
    for outcome, n in sorted(counts.items(), key=lambda kv: -kv[1]):
        out.print(f"  {outcome:<20} {n:>8,}")


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("pgserver").setLevel(logging.WARNING)
    try:
        app()
    except BatonError as exc:  # pragma: no cover - commands catch their own
        err.print(f"[red]error:[/red] {exc}")
        sys.exit(2)


if __name__ == "__main__":
    main()
