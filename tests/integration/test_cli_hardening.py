"""The command line against what a clumsy or hostile user types (an adversarial review's findings):
lookups that must not name the wrong person, commands that must not lose or half-write data, and
input that must end in one line, never a traceback."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from typer.testing import CliRunner

from baton.cli import app
from baton.seed import run_seed

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DAGS = ROOT / "dags"
SCENARIO = ROOT / "tests" / "unit" / "scenarios" / "basic"


def _insert(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "insert into customers (customer_id, email, phone, first_name) values"
                " ('ann', 'ann@example.com', '+1 416 000 0002', 'Ann'),"
                " ('bob', 'bob@example.com', '+1 416 000 0003', 'Bob'),"
                " ('cy', 'NULL', null, 'Cy'), ('dee', 'dee@example.com', null, 'Dee')"
            )
        )
        conn.execute(
            sa.text(
                "insert into identifiers (customer_id, kind, value, norm, source) values"
                " ('ann', 'device', 'tablet-1', 'tablet-1', 'app'), ('bob', 'device', 'tablet-1', 'tablet-1', 'app')"
            )
        )


@pytest.fixture()
def store(fresh_store: Engine, monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    monkeypatch.setenv("BATON_DATABASE_URL", fresh_store.url.render_as_string(hide_password=False))
    _insert(fresh_store)
    yield fresh_store


def _all(engine: Engine, sql: str) -> list[object]:
    with engine.connect() as conn:  # closed: an open read would hold locks a rebuild waits for
        return [row[0] for row in conn.execute(sa.text(sql))]


def run(*args: str, stdin: str | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args), input=stdin)
    text = result.output + (result.stderr if result.stderr_bytes is not None else "")
    assert result.exception is None or isinstance(result.exception, SystemExit), text
    return result.exit_code, text


def _baton(*args: str, env: dict[str, str], cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "baton", *args], capture_output=True, text=True, env=env, cwd=cwd, check=False
    )


def test_a_lookup_compares_a_value_only_as_the_kinds_it_can_be(store: Engine) -> None:
    """A phone keeps only its digits: text that merely contains Ann's digits must not name her — least of
    all for `person forget`. A value that identifies no one (NULL) names no one."""
    for query in ("x14160000002", "mary.14160000002@example.com", "NULL", "null"):
        code, text = run("person", "export", query, "--dags", str(DAGS))
        assert code == 2 and "no profile has the customer id or identifier" in text, (query, text)
        code, _ = run("person", "forget", query, "--yes", "--dags", str(DAGS))
        assert code == 2, query
    assert _all(store, "select customer_id from customers order by 1") == ["ann", "bob", "cy", "dee"]
    code, text = run(
        "person", "export", "+1 (416) 000-0002", "--dags", str(DAGS)
    )  # written as a phone: it is one
    assert code == 0 and json.loads(text)["person_id"] == "ann"


def test_a_value_of_several_persons_is_refused_by_every_command(store: Engine) -> None:
    run("identity", "exclude", "device", "tablet-1", "--reason", "family tablet")
    assert run("identity", "resolve", "--dags", str(DAGS))[0] == 0
    for args in (("why", "tablet-1"), ("identity", "show", "tablet-1"), ("person", "export", "tablet-1")):
        code, text = run(*args, "--dags", str(DAGS))
        assert code == 2 and "names profiles of 2 different persons (ann, bob)" in text, (args, text)


def test_identity_commands_need_the_deployments_policy(store: Engine, tmp_path: Path) -> None:
    for args in (("identity", "resolve"), ("identity", "show", "ann"), ("person", "export", "ann")):
        code, text = run(*args, "--dags", str(tmp_path))
        assert (
            code == 2
            and f"{tmp_path / 'policy.yaml'} not found: run from the project folder or pass --dags" in text
        )


def test_export_and_forget_take_the_persons_as_they_are_now(store: Engine, tmp_path: Path) -> None:
    """An identifier loaded since the last resolve links Dee to Ann (and Bob, who shares her tablet): the
    export and the erasure include her."""
    assert run("identity", "resolve", "--dags", str(DAGS))[0] == 0
    ids = tmp_path / "ids.csv"
    ids.write_text("customer_id,kind,value\nann,login,ann-42\ndee,login,ann-42\n")
    assert run("identity", "load", str(ids))[0] == 0
    code, text = run("person", "export", "ann", "--dags", str(DAGS))
    assert code == 0 and [p["customer_id"] for p in json.loads(text)["profiles"]] == ["ann", "bob", "dee"]
    code, text = run("person", "forget", "ann@example.com", "--dags", str(DAGS), stdin="n\n")
    assert code == 1 and "'ann@example.com' names person ann: 3 profile(s) (ann, bob, dee)" in text
    assert _all(store, "select count(*) from customers")[0] == 4  # answered no
    code, text = run("person", "forget", "ann@example.com", "--dags", str(DAGS), stdin="y\n")
    assert code == 0, text
    left = _all(store, "select customer_id from customers order by 1")
    assert left == ["cy"]


def test_exclude_keeps_its_reason_warns_about_a_value_nobody_holds_and_prints_markup_as_text(
    store: Engine,
) -> None:
    assert run("identity", "exclude", "login", "acct-9", "--reason", "first reason")[0] == 0
    code, text = run("identity", "exclude", "login", "acct-9")
    assert code == 0 and "no profile holds this login value: check the spelling" in text
    assert _all(store, "select reason from identity_exclusions where norm = 'acct-9'") == ["first reason"]
    code, text = run("identity", "exclude", "device", "[/]")
    assert code == 0 and "excluded device '[/]'" in text
    for args in (
        ("why", "[/]", "--dags", str(DAGS)),
        ("identity", "show", "[red]x[/red]", "--dags", str(DAGS)),
    ):
        code, text = run(*args)
        assert code == 1 and "no profile has the customer id or identifier" in text and "[/" in text, text


def test_seed_checks_its_arguments_before_it_touches_the_store(store: Engine) -> None:
    code, text = run("seed", "--customers", "99999999999", "--days", "1")
    assert code == 2 and "--customers must be from 1 to 10,000,000" in text
    code, text = run("seed", "--customers", "10", "--days", "1", "--until", "2999-01-01T00:00:00Z")
    assert code == 2 and "is out of range" in text
    code, text = run("seed", "--customers", "10", "--days", "1", "--until", "[/]")
    assert code == 2 and "is not an ISO 8601 time" in text
    assert _all(store, "select count(*) from customers")[0] == 4


def test_seed_does_not_rebuild_over_loaded_identifiers_without_reset(
    fresh_store: Engine, tmp_path: Path
) -> None:
    run_seed(fresh_store, customers=30, days=1, seed=1, until="2026-03-01T00:00:00Z")
    with fresh_store.begin() as conn:
        conn.execute(
            sa.text(
                "insert into identifiers (customer_id, kind, value, norm, source)"
                " values ('c0000001', 'login', 'x-1', 'x-1', 'crm')"
            )
        )
    from baton.errors import ConfigError

    with pytest.raises(ConfigError, match="1 identifier\\(s\\) loaded by `baton identity load`"):
        run_seed(fresh_store, customers=30, days=1, seed=2, until="2026-03-01T00:00:00Z")
    assert _all(fresh_store, "select count(*) from identifiers where source = 'crm'") == [1]
    run_seed(fresh_store, customers=30, days=1, seed=2, until="2026-03-01T00:00:00Z", reset=True)
    assert _all(fresh_store, "select count(*) from identifiers where source = 'crm'") == [0]


def test_simulate_refuses_an_output_inside_the_scenario_and_files_that_are_no_files(tmp_path: Path) -> None:
    scenario = tmp_path / "scenario"
    shutil.copytree(SCENARIO, scenario)
    before = (scenario / "candidates.csv").read_text()
    code, text = run(
        "simulate", str(scenario), "--at", "2026-03-02T12:00:00Z", "--out", str(scenario / "candidates.csv")
    )
    assert code == 2 and "is inside the scenario folder" in text
    assert (scenario / "candidates.csv").read_text() == before
    (scenario / "consents.csv").unlink(missing_ok=True)
    (scenario / "consents.csv").symlink_to("/dev/zero")
    code, text = run(
        "simulate", str(scenario), "--at", "2026-03-02T12:00:00Z", "--out", str(tmp_path / "d.csv")
    )
    assert code == 2 and "consents.csv: is not a regular file" in text
    code, text = run("simulate", str(scenario), "--at", "2026-03-02T12:00:00Z", "--shards", "100000")
    assert code == 2 and "less than or equal to 64" in text.replace("\n", " ").replace("│", "")


def test_an_unreachable_or_malformed_store_url_is_one_line(tmp_path: Path) -> None:
    for url in ("postgresql://postgres:secret@127.0.0.1:1/x", "postgresql://postgres@127.0.0.1:1/x?foo=bar"):
        env = dict(os.environ, BATON_DATABASE_URL=url)
        for args in (("status",), ("db", "upgrade"), ("seed", "--customers", "5", "--days", "1")):
            proc = _baton(*args, env=env)
            assert proc.returncode == 2, (args, proc.stderr)
            assert "Traceback" not in proc.stderr and "secret" not in proc.stderr, proc.stderr
            assert proc.stderr.startswith("error: cannot "), proc.stderr
            assert "127.0.0.1" in proc.stderr and ("port 1 failed" in proc.stderr or "foo" in proc.stderr)


def test_db_url_creates_no_database_on_a_given_server_and_psql_reads_its_parameters(
    fresh_store: Engine,
) -> None:
    base = fresh_store.url.set(drivername="postgresql")
    typo = base.set(database=f"{fresh_store.url.database}_typo")
    env = dict(os.environ, BATON_DATABASE_URL=typo.render_as_string(hide_password=False))
    assert _baton("db", "url", env=env).returncode == 0
    with fresh_store.connect() as conn:
        exists = conn.execute(sa.text("select 1 from pg_database where datname = :d"), {"d": typo.database})
        assert exists.scalar() is None
    spaced = base.update_query_dict({"options": "-c search_path=baton_x", "application_name": "a b"})
    env = dict(os.environ, BATON_DATABASE_URL=spaced.render_as_string(hide_password=False))
    printed = _baton("db", "url", env=env).stdout.strip()
    assert "+" not in printed.split("?", 1)[1], printed
    import pgserver

    psql = Path(pgserver.__file__).parent / "pginstall" / "bin" / "psql"
    proc = subprocess.run(
        [
            str(psql),
            printed,
            "-Atc",
            "select current_setting('search_path'), current_setting('application_name')",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.stdout.strip() == "baton_x|a b", proc.stderr


def test_out_of_range_options_are_usage_errors(store: Engine) -> None:
    for args in (("status", "--cycles", "-1"), ("why", "ann", "--days", "0", "--dags", str(DAGS))):
        code, text = run(*args)
        assert code == 2 and "Invalid value" in text, (args, text)
