"""``baton simulate`` with policy ``topics``: a consent topic the policy does not list is a warning, not an error."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

pytestmark = pytest.mark.integration

BASIC = Path(__file__).parent.parent / "unit" / "scenarios" / "basic"
AT = "2026-03-02T12:00:00Z"


def test_unknown_consent_topic_is_warned_about_and_the_cycle_still_decides(tmp_path: Path) -> None:
    from baton.cli import app

    scen = tmp_path / "scen"
    shutil.copytree(BASIC, scen)
    policy = scen / "policy.yaml"
    policy.write_text(policy.read_text() + "topics: [promotions, newsletter, sms_flash]\n")
    consents = scen / "consents.csv"
    consents.write_text(consents.read_text() + "c3,email,promotion,opt_out\nc4,email,promotion,opt_out\n")
    out = tmp_path / "decisions.csv"
    result = CliRunner().invoke(app, ["simulate", str(scen), "--at", AT, "--out", str(out)])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())  # rich may wrap long lines
    assert (
        f"warning: {consents}:4: topic 'promotion' is not one of the policy's topics (promotions, newsletter, "
        "sms_flash) (did you mean 'promotions'?); its consents (2 rows, first on line 4) match no campaign: "
        "fix the topic or add it to topics in policy.yaml"
    ) in text
    assert "Traceback" not in result.output
    assert out.read_text().startswith("customer_id,campaign_id,channel,outcome,reason,send_at")


def test_campaign_with_unlisted_topic_is_bad_input(tmp_path: Path) -> None:
    from baton.cli import app

    scen = tmp_path / "scen"
    shutil.copytree(BASIC, scen)
    policy = scen / "policy.yaml"
    policy.write_text(policy.read_text() + "topics: [promotions, newsletter]\n")  # sms_flash is not listed
    result = CliRunner().invoke(app, ["simulate", str(scen), "--at", AT, "--out", str(tmp_path / "d.csv")])
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert f"{scen / 'campaigns' / 'sms_flash.yaml'}:1: topic: the campaign has no topic" in text
    assert not (tmp_path / "d.csv").exists()
