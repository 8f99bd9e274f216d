"""The policy's ``topics`` (SPEC §2): a marketing campaign's topic must be listed; consents are warned about."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from baton.arbitration.scenario import load_scenario
from baton.cli import app
from baton.spec import (
    SpecValidationError,
    load_campaign,
    load_campaigns,
    load_deployment,
    load_policy,
    validate_paths,
)

pytestmark = pytest.mark.unit

HERE = Path(__file__).parent
VALID = HERE / "valid"
BASIC = HERE / "scenarios" / "basic"
TOPICS = "topics: [promotions, newsletter, cart_reminders]\n"


@pytest.fixture()
def dags(tmp_path: Path) -> Path:
    """The valid folder with ``topics`` in its policy (abandoned_cart has topic promotions)."""
    folder = tmp_path / "dags"
    shutil.copytree(VALID, folder)
    policy = folder / "policy.yaml"
    policy.write_text(policy.read_text(encoding="utf-8") + TOPICS, encoding="utf-8")
    return folder


def _campaign(dags: Path, old: str, new: str) -> Path:
    path = dags / "campaigns" / "abandoned_cart.yaml"
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    return path


def _line(path: Path, start: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if line.startswith(start))


def test_policy_topics_are_read_and_checked(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(TOPICS)
    assert load_policy(policy).topics == ("promotions", "newsletter", "cart_reminders")
    policy.write_text("global_control_percent: 5\n")
    assert load_policy(policy).topics is None
    policy.write_text("topics: [promotions, news, promotions]\n")
    with pytest.raises(SpecValidationError) as info:
        load_policy(policy)
    assert [str(i) for i in info.value.issues] == [
        f"{policy}:1: topics[2]: topic 'promotions' is listed twice (already topics[0]): list each topic once"
    ]
    policy.write_text("topics: []\n")
    with pytest.raises(SpecValidationError) as info:
        load_policy(policy)
    assert [str(i) for i in info.value.issues] == [
        f"{policy}:1: topics: no topic listed: list the deployment's subscription topics, e.g. "
        "[promotions, newsletter], or remove topics to leave campaigns' topics unchecked"
    ]
    policy.write_text("topics: [promotions, '  ']\n")
    with pytest.raises(SpecValidationError) as info:
        load_policy(policy)
    assert [(i.line, i.field) for i in info.value.issues] == [(1, "topics[1]")]


def test_misspelt_topic_is_invalid_with_a_hint(dags: Path) -> None:
    path = _campaign(dags, "topic: promotions", "topic: promotion")
    expected = (
        f"{path}:{_line(path, 'topic:')}: topic: topic 'promotion' is not one of the policy's topics "
        "(promotions, newsletter, cart_reminders) (did you mean 'promotions'?): use a listed topic, "
        "or add it to topics in policy.yaml"
    )
    assert [str(i) for i in validate_paths([dags])] == [expected]
    # a campaign file given alone is checked against ../policy.yaml
    assert [str(i) for i in validate_paths([path])] == [expected]
    result = CliRunner().invoke(app, ["validate", str(path)])
    assert result.exit_code == 1
    assert result.stdout.splitlines() == [expected]
    policy = load_policy(dags / "policy.yaml")
    campaigns, issues = load_campaigns(dags / "campaigns", policy=policy)
    assert [str(i) for i in issues] == [expected]
    assert [c.id for c in campaigns] == ["order_confirmation"]
    with pytest.raises(SpecValidationError):
        load_campaign(path, policy=policy)
    assert [c.id for c in load_deployment(dags)[1]] == ["order_confirmation"]


def test_campaign_without_topic_uses_its_id(dags: Path) -> None:
    path = _campaign(dags, "topic: promotions\n", "")
    expected = (
        f"{path}:1: topic: the campaign has no topic, so its topic is its id 'abandoned_cart', which is not "
        "one of the policy's topics (promotions, newsletter, cart_reminders): add topic: <a listed topic>, "
        "or add 'abandoned_cart' to topics in policy.yaml"
    )
    assert [str(i) for i in validate_paths([dags])] == [expected]
    policy = dags / "policy.yaml"
    policy.write_text(policy.read_text().replace("cart_reminders]", "cart_reminders, abandoned_cart]"))
    assert validate_paths([dags]) == []


def test_transactional_campaigns_are_not_checked(dags: Path) -> None:
    path = dags / "campaigns" / "order_confirmation.yaml"
    text = path.read_text()
    assert "category: transactional" in text
    path.write_text(text.replace("id: order_confirmation", "id: order_confirmation\ntopic: receipts_typo", 1))
    assert validate_paths([dags]) == []


def test_without_topics_nothing_is_checked(tmp_path: Path) -> None:
    folder = tmp_path / "dags"
    shutil.copytree(VALID, folder)
    _campaign(folder, "topic: promotions", "topic: anything_at_all")
    assert validate_paths([folder]) == []
    assert load_campaigns(folder / "campaigns", policy=load_policy(folder / "policy.yaml"))[1] == []


def test_invalid_policy_reports_itself_and_checks_no_topic(dags: Path) -> None:
    policy = dags / "policy.yaml"
    policy.write_text(policy.read_text().replace("global_control_percent: 5", "global_control_percent: 60"))
    _campaign(dags, "topic: promotions", "topic: promotion")
    assert [str(i) for i in validate_paths([dags])] == [
        f"{policy}:{_line(policy, 'global_control_percent:')}: global_control_percent: 60 is out of range: "
        "use a percentage from 0 to 50"
    ]


def test_campaign_beside_its_policy(dags: Path) -> None:
    """A campaign file given alone beside a policy.yaml is checked against that policy; in a dags folder
    that has campaigns/, it is reported as not read (Airflow reads campaigns/ only)."""
    shutil.move(dags / "campaigns" / "abandoned_cart.yaml", dags / "abandoned_cart.yaml")
    path = _campaign_at(dags / "abandoned_cart.yaml", "topic: promotions", "topic: newsleter")
    issues = validate_paths([path])
    assert [(i.file, i.field) for i in issues] == [(path, "topic")]
    assert "(did you mean 'newsletter'?)" in issues[0].message
    in_folder = validate_paths([dags])
    assert [(i.file, i.field) for i in in_folder] == [(path, "(file)")]
    assert in_folder[0].message.startswith("is not read: campaigns live in")


def _campaign_at(path: Path, old: str, new: str) -> Path:
    path.write_text(path.read_text().replace(old, new, 1))
    return path


def test_shipped_policy_lists_every_marketing_topic() -> None:
    root = HERE.parents[1] / "dags"
    policy = load_policy(root / "policy.yaml")
    assert policy.topics is not None
    campaigns, issues = load_campaigns(root / "campaigns", root / "templates", policy=policy)
    assert issues == []
    assert {c.topic for c in campaigns if c.category.value == "marketing"} <= set(policy.topics)


def test_simulate_warns_about_unknown_consent_topics(tmp_path: Path) -> None:
    scen = tmp_path / "scen"
    shutil.copytree(BASIC, scen)
    assert load_scenario(scen).warnings == ()  # no topics: nothing to compare with
    (scen / "policy.yaml").write_text(
        (scen / "policy.yaml").read_text() + "topics: [promotions, newsletter, sms_flash]\n"
    )
    (scen / "consents.csv").write_text(
        "customer_id,channel,topic,status\n"
        "c1,sms,,opt_in\n"
        "c2,email,newsletter,opt_out\n"
        "c3,email,promotion,opt_out\n"
        "c4,email,old_topic,opt_out\n"
        "c5,push,promotion,opt_out\n"
    )
    scenario = load_scenario(scen)
    assert len(scenario.consents) == 5  # reported, not dropped
    assert scenario.warnings == (
        f"{scen / 'consents.csv'}:4: topic 'promotion' is not one of the policy's topics (promotions, newsletter, "
        "sms_flash) (did you mean 'promotions'?); its consents (2 rows, first on line 4) match no campaign: "
        "fix the topic or add it to topics in policy.yaml",
        f"{scen / 'consents.csv'}:5: topic 'old_topic' is not one of the policy's topics (promotions, newsletter, "
        "sms_flash); its consents (1 row) match no campaign: fix the topic or add it to topics in policy.yaml",
    )
