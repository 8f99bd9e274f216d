"""``baton simulate`` end to end (SPEC.md §5): files in, the SQL engine, decisions.csv out."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from baton.arbitration.scenario import load_scenario, parse_at, write_decisions_csv
from reference_arbitration import decide_reference

pytestmark = pytest.mark.integration

BASIC = Path(__file__).parent.parent / "unit" / "scenarios" / "basic"
AT = "2026-03-02T12:00:00Z"


def _run(*args: str) -> tuple[int, str]:
    from baton.cli import app

    result = CliRunner().invoke(app, list(args))
    output = result.output + (result.stderr if result.stderr_bytes is not None else "")
    return result.exit_code, output


def test_simulate_matches_reference(tmp_path: Path) -> None:
    out = tmp_path / "d.csv"
    code, output = _run("simulate", str(BASIC), "--at", AT, "--out", str(out))
    assert code == 0, output
    expected = tmp_path / "expected.csv"
    write_decisions_csv(decide_reference(load_scenario(BASIC), parse_at(AT)), expected)
    got = out.read_text(encoding="utf-8").splitlines()
    want = expected.read_text(encoding="utf-8").splitlines()
    assert got[0] == want[0] == "customer_id,campaign_id,channel,outcome,reason,send_at,person_id"
    # The engine may add a short detail to reason for outcomes other than capped.
    strip = [
        ",".join(
            r.split(",")[:4] + ([r.split(",")[4]] if r.split(",")[3] == "capped" else [""]) + r.split(",")[5:]
        )
        for r in got[1:]
    ]
    assert strip == want[1:]


def test_simulate_bad_scenario_exits_2(tmp_path: Path) -> None:
    scen = tmp_path / "scen"
    shutil.copytree(BASIC, scen)
    (scen / "candidates.csv").write_text(
        "campaign_id,customer_id,score,channel,expires_at\nnewsletter,c1,,,\nnewsletter,c2,,,soon\n",
        encoding="utf-8",
    )
    out = tmp_path / "d.csv"
    code, output = _run("simulate", str(scen), "--at", AT, "--out", str(out))
    assert code == 2, output
    assert "candidates.csv:3" in " ".join(output.split())
    assert not out.exists()


@pytest.mark.parametrize(
    ("file", "text", "where"),
    [
        ("identifiers.csv", "customer_id,kind,value\nc1,login,ann\nc2,username,bob\n", "identifiers.csv:3"),
        ("identifiers.csv", "customer_id,kind,value,first_seen\nc1,login,ann,soon\n", "identifiers.csv:2"),
        ("exclusions.csv", "kind,value\nemail,\n", "exclusions.csv:2"),
    ],
)
def test_simulate_bad_identity_files_exit_2(tmp_path: Path, file: str, text: str, where: str) -> None:
    scen = tmp_path / "scen"
    shutil.copytree(BASIC, scen)
    (scen / file).write_text(text, encoding="utf-8")
    out = tmp_path / "d.csv"
    code, output = _run("simulate", str(scen), "--at", AT, "--out", str(out))
    assert code == 2, output
    assert where in " ".join(output.split())
    assert "Traceback" not in output
    assert not out.exists()


def test_simulate_bad_at_exits_2(tmp_path: Path) -> None:
    code, output = _run("simulate", str(BASIC), "--at", "tomorrow", "--out", str(tmp_path / "d.csv"))
    assert code == 2, output
    assert "--at" in output
