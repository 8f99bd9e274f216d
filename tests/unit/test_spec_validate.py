"""``validate_paths`` and ``baton validate``: every problem of every file, with file:line."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from baton.cli import app
from baton.spec import validate_paths

pytestmark = pytest.mark.unit

HERE = Path(__file__).parent
VALID = HERE / "valid"
CORPUS = HERE / "corpus"


@pytest.fixture()
def project(tmp_path: Path) -> Path:
    """A dags-like folder: valid files plus bad ones in each place validate_paths looks."""
    dags = tmp_path / "dags"
    shutil.copytree(VALID, dags)
    shutil.copy(CORPUS / "templates" / "good.html.j2", dags / "templates")
    shutil.copy(CORPUS / "campaigns" / "priority_out_of_range.yaml", dags / "campaigns")
    shutil.copy(CORPUS / "campaigns" / "missing_template.yaml", dags / "campaigns")
    shutil.copy(CORPUS / "campaigns" / "bad_duration.yaml", dags)  # beside campaigns/: Airflow never reads it
    (dags / "policy.yaml").write_text((CORPUS / "policies" / "duplicate_cap_name.yaml").read_text())
    return dags


def test_valid_folder_has_no_issues() -> None:
    assert validate_paths([VALID]) == []
    assert validate_paths([VALID / "campaigns" / "abandoned_cart.yaml", VALID / "policy.yaml"]) == []


def test_folder_reports_every_bad_file(project: Path) -> None:
    issues = validate_paths([project])
    assert [(i.file.relative_to(project).as_posix(), i.line, i.field) for i in issues] == [
        ("policy.yaml", 4, "caps[2].name"),
        ("bad_duration.yaml", 1, "(file)"),
        ("campaigns/missing_template.yaml", 10, "message.email.template"),
        ("campaigns/priority_out_of_range.yaml", 6, "priority"),
    ]
    assert issues[1].message.startswith(f"is not read: campaigns live in {project / 'campaigns'}/")
    assert issues[2].message.startswith(f"template 'good.htm.j2' not found in {project / 'templates'}")


def test_yaml_files_airflow_would_not_read_are_reported(tmp_path: Path) -> None:
    """What Airflow skips without a word — a policy.yml, a campaign file named x.YAML or 'x.yaml ' —
    baton validate and the placeholder DAGs report, so that nobody edits a file that is never read."""
    dags = tmp_path / "dags"
    shutil.copytree(VALID, dags)
    shutil.copy(dags / "policy.yaml", dags / "policy.yml")
    shutil.copy(dags / "campaigns" / "abandoned_cart.yaml", dags / "campaigns" / "upper.YAML")
    shutil.copy(dags / "campaigns" / "abandoned_cart.yaml", dags / "campaigns" / "spaced.yaml ")
    issues = validate_paths([dags])
    assert [(i.file.name, i.line) for i in issues] == [
        ("policy.yml", 1),
        ("spaced.yaml ", 1),
        ("upper.YAML", 1),
    ]
    assert issues[0].message == (
        "is not read: Baton reads the policy from policy.yaml only; merge what it holds into policy.yaml "
        "and remove it"
    )
    assert issues[1].message.endswith("rename it to spaced.yaml")
    assert issues[2].message.endswith("rename it to upper.yaml")
    (dags / "policy.yaml").unlink()
    assert [i.message for i in validate_paths([dags / "policy.yml"])] == [
        "is not read: Baton reads the policy from policy.yaml only; rename it to policy.yaml"
    ]


def test_files_and_missing_paths(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("global_control_percent: 60\n")
    campaign = CORPUS / "campaigns" / "unknown_channel.yaml"
    issues = validate_paths([tmp_path / "nowhere", policy, campaign, campaign])
    assert [str(i) for i in issues] == [
        f"{tmp_path / 'nowhere'}: (file): no such file or directory: check the path",
        f"{policy}:1: global_control_percent: 60 is out of range: use a percentage from 0 to 50",
        f"{campaign}:6: channels[1]: unknown channel 'fax': use one of email, sms, push, audience, direct_mail",
    ]


def test_corpus_folders_report_every_file() -> None:
    issues = validate_paths([CORPUS / "campaigns"])
    files = {i.file.name for i in issues}
    assert files == {p.name for p in (CORPUS / "campaigns").glob("*.yaml")}


def test_cli_validate_bad_file_exits_1(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shutil.copytree(CORPUS / "campaigns", tmp_path / "campaigns")
    shutil.copytree(CORPUS / "templates", tmp_path / "templates")
    shutil.copy(CORPUS / "policies" / "bad_timezone.yaml", tmp_path / "policy.yaml")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["validate", "campaigns/priority_out_of_range.yaml", "policy.yaml"])
    assert result.exit_code == 1
    assert result.stdout.splitlines() == [
        "policy.yaml:1: default_timezone: unknown time zone 'America/New_Yrok': "
        "use an IANA name such as 'UTC' or 'America/New_York' (did you mean 'America/New_York'?)",
        "campaigns/priority_out_of_range.yaml:6: priority: 120 is out of range: use an integer from 0 to 100",
    ]
    assert "2 error(s)" in result.output


def test_cli_validate_good_folder_exits_0() -> None:
    result = CliRunner().invoke(app, ["validate", str(VALID)])
    assert result.exit_code == 0, result.output
    assert "all files valid" in result.stdout


def test_an_empty_value_says_what_to_write(tmp_path: Path) -> None:
    dags = tmp_path / "dags"
    shutil.copytree(VALID, dags)
    path = dags / "campaigns" / "abandoned_cart.yaml"
    lines = path.read_text().splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("priority:"))
    lines[at] = "priority:"
    path.write_text("\n".join(lines) + "\n")
    assert [str(i) for i in validate_paths([path])] == [
        f"{path}:{at + 1}: priority: must be an integer, not empty (null): write a value after the colon "
        "(or remove the key to use its default, where it has one)"
    ]
