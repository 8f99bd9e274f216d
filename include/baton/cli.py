"""The ``baton`` command line (also ``python -m baton``).

User mistakes end with a one-line (or one-line-per-problem) message and a non-zero
exit status, never a stack trace.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from baton.errors import BatonError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Baton: campaigns propose, Baton decides.")
db_app = typer.Typer(
    no_args_is_help=True, help="The marketing store (embedded PostgreSQL unless BATON_DATABASE_URL)."
)
app.add_typer(db_app, name="db")
identity_app = typer.Typer(no_args_is_help=True, help="One person across profiles (SPEC §6).")
app.add_typer(identity_app, name="identity")
person_app = typer.Typer(no_args_is_help=True, help="Export or forget a person (GDPR articles 15 and 17).")
app.add_typer(person_app, name="person")

err = Console(stderr=True)
out = Console(width=None if sys.stdout.isatty() else 160)  # wide tables when piped


def _fail(exc: BatonError, code: int = 2) -> None:
    err.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _not_found(query: str) -> NoReturn:
    """No profile has *query*: one line, exit 1 (the same for every command that looks a person up)."""
    err.print(f"no profile has the customer id or identifier {query!r}", highlight=False, markup=False)
    raise typer.Exit(1)


@app.command()
def validate(
    paths: Annotated[
        list[Path] | None, typer.Argument(help="Campaign/policy files or folders (default: dags/)")
    ] = None,
    store: Annotated[
        bool,
        typer.Option(
            "--store",
            help="also check each campaign against the store: its audience query prepared read-only,"
            " every template variable known",
        ),
    ] = False,
) -> None:
    """Check campaign and policy files; print every error as file:line: field: message."""
    from baton.spec.loader import default_templates_dir, validated_campaigns

    campaigns, issues = validated_campaigns(list(paths or [Path("dags")]))
    if store:
        from baton.audience.check import check_campaign
        from baton.spec import Policy

        try:
            engine = _store()
            for campaign, file, policy in campaigns:
                issues += check_campaign(
                    engine, campaign, policy or Policy(), file=file, templates_dir=default_templates_dir(file)
                )
        except BatonError as exc:
            _fail(exc)
    for issue in issues:
        out.print(str(issue), highlight=False, soft_wrap=True, markup=False)
    if issues:
        err.print(f"[red]{len(issues)} error(s)[/red]")
        raise typer.Exit(1)
    checked = " (and fit the store)" if store else ""
    out.print(f"[green]all files valid{checked}[/green]")


@app.command()
def status(
    dags: Annotated[
        Path, typer.Option(help="the dags folder (its policy.yaml gives the cycle schedule)")
    ] = Path("dags"),
    cycles: Annotated[int, typer.Option(help="how many recent cycles to show", min=1, max=1000)] = 10,
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
        if not os.environ.get("BATON_DATABASE_URL"):  # the embedded server's databases; never a typo's
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
        int, typer.Option(help="decide in this many shards (the result does not depend on it)", min=1, max=64)
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
        _outside(out_path, scenario_dir)
        scenario = load_scenario(scenario_dir)
        for warning in scenario.warnings:
            err.print(f"[yellow]warning:[/yellow] {escape(warning)}", highlight=False, soft_wrap=True)
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


def _outside(out_path: Path, scenario_dir: Path) -> None:
    """Refuse an ``--out`` inside the scenario folder: it would overwrite an input or become one."""
    from baton.errors import InputError

    target, folder = out_path.resolve(), scenario_dir.resolve()
    if folder.is_dir() and (target == folder or folder in target.parents):
        raise InputError(
            f"--out {out_path} is inside the scenario folder {scenario_dir}: write the decisions elsewhere "
            "(e.g. --out decisions.csv from outside the folder), so that no input file is overwritten"
        )


DagsOption = Annotated[
    Path, typer.Option("--dags", help="the dags folder: its policy.yaml holds the identity settings")
]


def _identity_settings(dags: Path) -> Any:
    """The identity settings of *dags*/policy.yaml; a missing file is an error, never the defaults (they
    would link values the deployment blocks)."""
    from baton.errors import ConfigError
    from baton.identity.resolve import IdentitySettings
    from baton.spec import load_policy

    policy = dags / "policy.yaml"
    if not policy.is_file():
        raise ConfigError(
            f"{policy} not found: run from the project folder or pass --dags (the policy's identity settings"
            " decide which values link profiles)"
        )
    return IdentitySettings.of(load_policy(policy))


def _store() -> Any:
    """The store's engine, migrated to the newest revision (a clear error otherwise)."""
    from baton.store.engine import get_engine
    from baton.store.migrate import require_current

    engine = get_engine()
    require_current(engine)
    return engine


@identity_app.command("resolve")
def identity_resolve(
    full: Annotated[
        bool, typer.Option("--full", help="recompute every person, not only what changed")
    ] = False,
    dags: DagsOption = Path("dags"),
) -> None:
    """Recompute persons from the identifiers (incrementally: only what new identifiers touch)."""
    from baton.identity.store import resolve

    try:
        result = resolve(_store(), _identity_settings(dags), full=full)
    except BatonError as exc:
        _fail(exc)
    what = "all profiles" if result.full else f"{result.affected_profiles:,} affected profile(s)"
    out.print(
        f"resolved {what} in {result.seconds:.2f}s: {result.persons.linked_profiles:,} profiles in"
        f" {result.persons.persons:,} persons of several profiles"
    )


@identity_app.command("exclude")
def identity_exclude(
    kind: Annotated[str, typer.Argument(help="email, phone, login, cookie, device or push_token")],
    value: Annotated[str, typer.Argument(help="the value, in any spelling")],
    reason: Annotated[str | None, typer.Option(help="why (kept with the exclusion)")] = None,
) -> None:
    """Stop a value from linking anyone (undo a wrong merge); applies at the next resolve and cycle."""
    from baton.identity.admin import exclude

    try:
        holders = exclude(_store(), kind, value, reason=reason)
    except BatonError as exc:
        _fail(exc)
    out.print(
        f"excluded {kind} {value!r} ({holders} profile(s) hold it); the persons it linked split at the next"
        " `baton identity resolve`, and every cycle that begins from now on decides without it",
        markup=False,
        highlight=False,
    )
    if holders == 0:
        err.print(
            f"[yellow]warning:[/yellow] no profile holds this {escape(kind)} value: check the spelling (values"
            " are compared normalised: emails in any case, phones by their digits, other kinds exactly)",
            highlight=False,
        )


@identity_app.command("load")
def identity_load(
    file: Annotated[Path, typer.Argument(help="CSV: customer_id,kind,value[,first_seen][,source]")],
    source: Annotated[
        str | None, typer.Option(help="where the identifiers were observed (default: the file name)")
    ] = None,
) -> None:
    """Store identifiers from a CSV file; rejected rows are listed with their reason (exit 1 if any)."""
    from baton.identity.admin import load_identifiers

    try:
        result = load_identifiers(_store(), file, source=source)
    except BatonError as exc:
        _fail(exc)
    for line, why in result.rejected:
        out.print(f"{file}:{line}: {why}", highlight=False, markup=False)
    out.print(
        f"{result.stored:,} identifier(s) stored, {len(result.rejected):,} of {result.rows:,} row(s) rejected"
    )
    if result.rejected:
        raise typer.Exit(1)


@identity_app.command("show")
def identity_show(
    query: Annotated[str, typer.Argument(help="a customer id or any identifier (email, phone, login, ...)")],
    dags: DagsOption = Path("dags"),
) -> None:
    """Show one person: profiles, identifiers, why they are linked, what is blocked or over-shared."""
    from rich.table import Table

    from baton.identity.admin import show

    try:
        view = show(_store(), query, _identity_settings(dags))
    except BatonError as exc:
        _fail(exc)
    if view is None:
        _not_found(query)
    out.print(
        f"person [bold]{escape(view.person_id)}[/bold] ({len(view.profiles)} profile(s), as of the last resolve)"
    )
    profiles = Table("profile", "created", "email", "phone", "push token", "timezone", "linked through")
    for p in view.profiles:
        chain = view.chains.get(p["customer_id"])
        how = (
            "the person's profile"
            if p["customer_id"] == view.person_id
            else " → ".join(f"{kind} {value} ({to})" for _f, kind, value, to in chain)
            if chain
            else "-"
        )
        created = f"{p['created_at']:%Y-%m-%d}" if p.get("created_at") else "-"
        profiles.add_row(
            p["customer_id"],
            created,
            p["email"] or "-",
            p["phone"] or "-",
            p["push_token"] or "-",
            p["timezone"] or "-",
            how,
        )
    out.print(profiles)
    ids = Table("profile", "kind", "value", "first seen", "source", "profiles holding it", "links?")
    for o in view.observations:
        seen = f"{o.first_seen:%Y-%m-%d %H:%M}" if o.first_seen else "-"
        ids.add_row(o.customer_id, o.kind, o.value, seen, o.source or "-", str(o.holders), o.status)
    out.print(ids)


def _current_persons(dags: Path) -> Any:
    """The store, its persons brought up to date first (an incremental resolve, as each cycle does), so
    that an export or an erasure takes every profile the person has now."""
    from baton.identity.store import resolve

    engine = _store()
    resolve(engine, _identity_settings(dags))
    return engine


@person_app.command("export")
def person_export(
    query: Annotated[str, typer.Argument(help="a customer id or any identifier of the person")],
    out_path: Annotated[
        Path | None, typer.Option("--out", help="write the JSON here (default: standard output)")
    ] = None,
    dags: DagsOption = Path("dags"),
) -> None:
    """Write everything Baton holds about a person as JSON (GDPR article 15)."""
    import json

    from baton.identity.gdpr import export_person

    try:
        data = export_person(_current_persons(dags), query)
    except BatonError as exc:
        _fail(exc)
    text = json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False)
    if out_path is None:
        print(text)
    else:
        out_path.write_text(text + "\n", encoding="utf-8")
        err.print(f"{len(data['profiles'])} profile(s) of person {data['person_id']} -> {out_path}")


@person_app.command("forget")
def person_forget(
    query: Annotated[str, typer.Argument(help="a customer id or any identifier of the person")],
    yes: Annotated[bool, typer.Option("--yes", help="do not ask for confirmation")] = False,
    dags: DagsOption = Path("dags"),
) -> None:
    """Erase a person's personal data from every table, in one transaction (GDPR article 17)."""
    from baton.identity.gdpr import forget_person, person_to_forget

    try:
        engine = _current_persons(dags)
        person, members = person_to_forget(engine, query)
        shown = ", ".join(members[:20]) + (f" and {len(members) - 20} more" if len(members) > 20 else "")
        err.print(
            f"{query!r} names person {person}: {len(members)} profile(s) ({shown})",
            highlight=False,
            markup=False,
        )
        if not yes:
            typer.confirm("Erase all of them? This cannot be undone", abort=True)
        result = forget_person(engine, query, expected=(person, members))
    except BatonError as exc:
        _fail(exc)
    out.print(
        f"forgot person {result.person_id} ({len(result.profiles)} profile(s)): deleted "
        + ", ".join(f"{n} {t}" for t, n in sorted(result.deleted.items()) if n)
        + "; kept pseudonymously "
        + ", ".join(f"{n} {t}" for t, n in sorted(result.pseudonymised.items()) if n)
        + f"; {result.digests} address digest(s) keep a later import from being messaged"
    )


DeploymentDagsOption = Annotated[
    Path, typer.Option("--dags", help="the dags folder: its policy.yaml and campaigns/ (the deployment)")
]


def _deployment(dags: Path) -> Any:
    """The deployment of *dags* for the Marketing view's commands (an invalid policy is an error here)."""
    from baton.errors import ConfigError
    from baton.web.deployment import deployment

    if not (dags / "campaigns").is_dir() and not (dags / "policy.yaml").exists():
        raise ConfigError(f"{dags} is no dags folder (no policy.yaml, no campaigns/): pass --dags")
    dep = deployment(dags)
    if dep.policy_error:
        raise ConfigError(f"{dags / 'policy.yaml'} is invalid:\n{dep.policy_error}")
    return dep


@app.command()
def why(
    query: Annotated[str, typer.Argument(help="a customer id or any identifier (email, phone, login, ...)")],
    cycle: Annotated[
        str | None,
        typer.Option("--cycle", help="only this cycle's decisions (its decision time, ISO 8601 UTC)"),
    ] = None,
    days: Annotated[int, typer.Option(help="how many days back (without --cycle)", min=1, max=62)] = 30,
    dags: DeploymentDagsOption = Path("dags"),
) -> None:
    """Why did this person get (or not get) a message? Every decision explained in words."""
    from datetime import timedelta

    from baton.web.queries import customer_timeline, parse_time

    try:
        engine = _store()
        dep = _deployment(dags)
        if cycle is not None:
            at = parse_time(cycle, "--cycle")
            with engine.connect() as conn:
                found = conn.exec_driver_sql(
                    "select status from cycles where cycle_at = %(t)s", {"t": at}
                ).scalar()
            if found is None:
                err.print(
                    f"no cycle was decided at {at.isoformat()} (`baton status` lists the recent cycles)"
                )
                raise typer.Exit(1)
            view = customer_timeline(engine, dep, query, until=at + timedelta(seconds=1), days=1)
        else:
            view = customer_timeline(engine, dep, query, days=days)
    except BatonError as exc:
        _fail(exc)
    if view is None:
        _not_found(query)
    profiles = ", ".join(p["customer_id"] for p in view.profiles)
    control = view.control["global"]
    out.print(
        f"person [bold]{escape(view.person_id)}[/bold] (profiles: {escape(profiles)}); timezone {view.timezone}"
        f" ({view.timezone_note}); global control group: {'IN it' if control['in'] else 'not in it'}"
        f" ({control['percent']:g}%)",
        highlight=False,
        soft_wrap=True,
    )
    decisions = view.decisions
    if cycle is not None:
        decisions = [d for d in decisions if d["cycle_at"] == at]
    else:
        if view.pending_not_searched:
            batches, rows = view.pending_not_searched
            out.print(
                f"{batches} batches ({rows:,} candidate rows) wait undecided: too many to search for this"
                " person's (`baton status` lists batches left behind)"
            )
        for c in reversed(view.pending):
            out.print(
                f"{c['loaded_at']:%Y-%m-%d %H:%M} UTC  {c['campaign_id']:<22} {c['channel'] or '':<11}"
                f" {'no decision yet':<19} {c['state']}",
                highlight=False,
                markup=False,
                soft_wrap=True,
            )
    if not decisions:
        span = f"cycle {at.isoformat()}" if cycle is not None else f"the last {days} days"
        out.print(f"no decision about this person in {span}")
        return
    for d in reversed(decisions):
        line = f"{d['cycle_at']:%Y-%m-%d %H:%M} UTC  {d['campaign_id']:<22} {d['channel']:<11} {d['outcome']:<19} {d['explanation']}"
        msg = view.messages.get(d["message_id"]) if d["message_id"] is not None else None
        if msg is not None:
            line += f"  [message {msg['message_id']}: {msg['status']}"
            line += "".join(f"; {e['type']} {e['ts']:%m-%d %H:%M}" for e in msg["events"]) + "]"
        out.print(line, highlight=False, markup=False, soft_wrap=True)
    if view.more_decisions:
        out.print("(more decisions than shown: narrow the range with --days or --cycle)")


@app.command()
def preview(
    campaign: Annotated[str, typer.Argument(help="the campaign id")],
    customer: Annotated[
        str | None,
        typer.Option(help="render for this customer id or identifier (default: someone it proposed lately)"),
    ] = None,
    send_to: Annotated[
        list[str] | None,
        typer.Option(
            "--send-to", help="send the preview, marked as a test, to this internal address (repeatable)"
        ),
    ] = None,
    channel: Annotated[
        str | None,
        typer.Option(help="the channel of the test send (default: from the address: email or sms)"),
    ] = None,
    dags: DeploymentDagsOption = Path("dags"),
) -> None:
    """Render a campaign's messages for one customer in the delivery sandbox; optionally send a test."""
    import getpass

    from baton.delivery.base import normalize_phone
    from baton.delivery.render import html_to_text
    from baton.web import preview as pv

    try:
        engine = _store()
        dep = _deployment(dags)
        shown = pv.preview(engine, dep, campaign, customer)
    except BatonError as exc:
        _fail(exc)
    out.print(
        f"campaign [bold]{campaign}[/bold] for customer [bold]{escape(shown.customer_id)}[/bold]: {escape(shown.note)}",
        highlight=False,
        soft_wrap=True,
    )
    for ch in shown.channels:
        out.rule(ch.channel)
        if ch.content is None:
            out.print(f"[red]cannot render:[/red] {escape(ch.error or '')}", soft_wrap=True)
            continue
        content = dict(ch.content)
        if "html" in content:
            content["text"] = content.get("text") or html_to_text(content["html"])
            content.pop("html")
        for key, value in content.items():
            out.print(f"{key}: {value}", highlight=False, markup=False, soft_wrap=True)
    if shown.channels and all(ch.content is None for ch in shown.channels):
        err.print("[red]no channel could be rendered[/red] (see the reasons above)")
        raise typer.Exit(1)
    if not send_to:
        return
    addresses = list(send_to)
    chosen = channel or (
        "email" if "@" in addresses[0] else "sms" if normalize_phone(addresses[0]) else "push"
    )
    try:
        from baton.airflow.hooks.channels import connection_info

        result = pv.send_test(
            engine,
            dep,
            shown,
            chosen,
            addresses,
            requested_by=f"cli:{getpass.getuser()}",
            connection=connection_info,
        )
    except BatonError as exc:
        _fail(exc)
    for address in result.sent:
        out.print(f"test sent on {chosen} to {address} (test send {result.test_send_id})")
    for address, why_failed in result.failed.items():
        err.print(f"[red]test to {escape(address)} failed:[/red] {escape(why_failed)}", soft_wrap=True)
    if result.failed:
        raise typer.Exit(1)


def main() -> None:
    """The ``baton`` command: warnings logged tersely, a BatonError printed as an error (exit 2)."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("pgserver").setLevel(logging.WARNING)
    # Airflow logs a malformed connection extra with a traceback, then answers {}; Baton's own strict
    # parse reports it in one line (README, "Channels")
    logging.getLogger("airflow.sdk.definitions.connection").setLevel(logging.CRITICAL)
    import sqlalchemy.exc

    try:
        app()
    except BatonError as exc:  # pragma: no cover - commands catch their own
        err.print(f"[red]error:[/red] {escape(str(exc))}")
        sys.exit(2)
    except (
        sqlalchemy.exc.OperationalError,
        sqlalchemy.exc.InterfaceError,
        sqlalchemy.exc.ProgrammingError,
    ) as exc:
        # the server is down or refuses the URL's user, database or parameters: a setup problem, not a bug
        # (any other ProgrammingError is a bug in Baton's SQL and keeps its traceback)
        refused = not isinstance(exc, sqlalchemy.exc.ProgrammingError) or any(
            what in str(exc) for what in ("connection option", "invalid dsn")
        )
        if not refused:
            raise
        from baton.store.engine import connection_problem, store_url

        err.print(f"[red]error:[/red] {escape(connection_problem(store_url(), exc))}", highlight=False)
        sys.exit(2)


if __name__ == "__main__":
    main()
