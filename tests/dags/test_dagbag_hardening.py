"""Broken files in a dags folder never take DAGs down: each becomes its own placeholder, the rest stay.

An invalid ``policy.yaml`` keeps every campaign DAG and turns ``baton_arbitration`` into a
placeholder (tagged ``invalid``, no retries, failing with the policy's errors); a campaign
entry that is no readable YAML file (a folder, a dangling link, binary data) or whose topic
the policy does not list becomes the placeholder ``campaign__<stem>``.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from parse_guard import guarded_dagbag

pytestmark = pytest.mark.dags

ROOT = Path(__file__).resolve().parents[2]
CAMPAIGNS = sorted(p.stem for p in (ROOT / "dags" / "campaigns").glob("*.yaml"))


@pytest.fixture()
def dags(tmp_path: Path) -> Path:
    folder = tmp_path / "dags"
    shutil.copytree(ROOT / "dags", folder, ignore=shutil.ignore_patterns("__pycache__"))
    return folder


def _assert_campaign_dags_real(bag: Any, stems: list[str]) -> None:
    for stem in stems:
        dag = bag.dags.get(f"campaign__{stem}")
        assert dag is not None, f"campaign__{stem} is missing"
        assert "invalid" not in dag.tags, dag.doc_md
        assert dag.get_task("build_candidates").retries >= 2


def _break(policy: Path, how: str) -> str:
    """Break *policy* in one of several ways; returns the start of the expected first issue."""
    if how == "value":
        policy.write_text(
            policy.read_text().replace("global_control_percent: 5", "global_control_percent: 60")
        )
        return f"{policy}:"
    if how == "yaml":
        policy.write_text("caps: [{name: daily\n")
        return f"{policy}:2: (file): invalid YAML"
    if how == "binary":
        policy.write_bytes(b"\x00\x01\x02\xff")
        return f"{policy}:1: (file): the file holds NUL bytes"
    if how == "impossible_date":
        policy.write_text("holdout_salt: 2026-02-30\n")
        return f"{policy}:1: holdout_salt: '2026-02-30' cannot be read as a date or time"
    if how == "folder":
        policy.unlink()
        policy.mkdir()
        return f"{policy}:1: (file): is a directory, not a YAML file"
    if how == "dangling_link":
        policy.unlink()
        policy.symlink_to(policy.parent / "moved_away.yaml")
        return f"{policy}:1: (file): is a link to"
    if how == "deep":
        policy.write_text("caps: " + "[" * 3000 + "]" * 3000 + "\n")
        return f"{policy}:1: (file): the YAML nests more than 32 levels deep"
    if how == "renamed_yml":  # Airflow would run on the defaults: no caps, no quiet hours
        policy.rename(policy.with_name("policy.yml"))
        return f"{policy.with_name('policy.yml')}:1: (file): is not read: Baton reads the policy from policy.yaml only"
    if how == "utf16":
        policy.write_bytes(policy.read_text().encode("utf-16"))
        return f"{policy}:1: (file): the file is saved as UTF-16"
    if how == "never_fires":
        policy.write_text('cycle: {schedule: "0 0 31 4 *"}\n')
        return f"{policy}:1: cycle.schedule: the schedule '0 0 31 4 *' never fires"
    raise AssertionError(how)


@pytest.mark.parametrize(
    "how",
    [
        "value",
        "yaml",
        "binary",
        "impossible_date",
        "folder",
        "dangling_link",
        "deep",
        "renamed_yml",
        "utf16",
        "never_fires",
    ],
)
def test_invalid_policy_keeps_every_campaign_dag(dags: Path, how: str) -> None:
    from airflow.sdk.exceptions import AirflowFailException

    expected = _break(dags / "policy.yaml", how)
    bag = guarded_dagbag(dags)
    assert bag.import_errors == {}
    _assert_campaign_dags_real(bag, CAMPAIGNS)
    arbitration = bag.dags["baton_arbitration"]
    assert "invalid" in arbitration.tags
    assert expected in arbitration.doc_md
    assert arbitration.timetable.can_be_scheduled  # every blocked cycle is a failed run someone sees
    assert arbitration.task_ids == ["invalid_policy_file"]
    task = arbitration.get_task("invalid_policy_file")
    assert task.retries == 0
    with pytest.raises(AirflowFailException) as info:
        task.python_callable()
    assert expected in str(info.value)


@pytest.mark.parametrize("kind", ["folder", "dangling_link", "binary", "not_utf8", "empty"])
def test_broken_campaign_entry_is_its_own_placeholder(dags: Path, kind: str) -> None:
    from airflow.sdk.exceptions import AirflowFailException

    entry = dags / "campaigns" / "spring_sale.yaml"
    if kind == "folder":
        entry.mkdir()
        expected = f"{entry}:1: (file): is a directory, not a YAML file"
    elif kind == "dangling_link":
        entry.symlink_to(dags / "campaigns" / "deleted.yaml")
        expected = (
            f"{entry}:1: (file): is a link to {dags / 'campaigns' / 'deleted.yaml'}, which does not exist"
        )
    elif kind == "binary":
        entry.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
        expected = f"{entry}:3: (file): the file holds NUL bytes"
    elif kind == "not_utf8":
        entry.write_bytes(b"id: spring_sale\nname: Fr\xfchling\n")
        expected = f"{entry}:2: (file): not UTF-8 text"
    else:
        entry.write_bytes(b"")
        expected = f"{entry}:1: (file): the file is empty"
    bag = guarded_dagbag(dags)
    assert bag.import_errors == {}
    _assert_campaign_dags_real(bag, CAMPAIGNS)
    assert "invalid" not in bag.dags["baton_arbitration"].tags
    placeholder = bag.dags["campaign__spring_sale"]
    assert "invalid" in placeholder.tags
    assert expected in placeholder.doc_md
    task = placeholder.get_task("invalid_campaign_file")
    assert task.retries == 0
    with pytest.raises(AirflowFailException):
        task.python_callable()


def test_campaign_with_unlisted_topic_is_a_placeholder(dags: Path) -> None:
    path = dags / "campaigns" / "win_back.yaml"
    text = path.read_text()
    assert "topic: promotions" in text
    path.write_text(text.replace("topic: promotions", "topic: promotion", 1))
    bag = guarded_dagbag(dags)
    assert bag.import_errors == {}
    _assert_campaign_dags_real(bag, [s for s in CAMPAIGNS if s != "win_back"])
    placeholder = bag.dags["campaign__win_back"]
    assert "invalid" in placeholder.tags
    assert "topic: topic 'promotion' is not one of the policy's topics" in placeholder.doc_md
    assert "(did you mean 'promotions'?)" in placeholder.doc_md
    inlets = {a.uri for a in bag.dags["baton_arbitration"].get_task("wait_for_campaigns").inlets}
    assert "baton://candidates/win_back" not in inlets  # the cycle does not wait for it
    assert "baton://candidates/price_drop" in inlets


def test_every_invalid_file_gets_a_placeholder_of_its_own(dags: Path) -> None:
    """Files whose placeholder ids collide (abandoned-cart.yaml and 'abandoned cart.yaml' beside the valid
    abandoned_cart.yaml), a link under another name, a name Airflow would skip (upper.YAML) and a link to
    the campaigns folder itself (a loop for Airflow's folder walk, which dags/.airflowignore keeps out):
    every DAG stays and every bad file shows its own errors."""
    campaigns = dags / "campaigns"
    (campaigns / "abandoned-cart.yaml").write_text("id: [\n")
    (campaigns / "abandoned cart.yaml").write_text("id: x\n")
    (campaigns / "alias.yaml").symlink_to(campaigns / "abandoned_cart.yaml")
    shutil.copy(campaigns / "win_back.yaml", campaigns / "upper.YAML")
    (campaigns / "loop.yml").symlink_to(campaigns)
    bag = guarded_dagbag(dags)
    assert bag.import_errors == {}
    _assert_campaign_dags_real(bag, CAMPAIGNS)
    shown = {
        dag_id: dag.doc_md
        for dag_id, dag in bag.dags.items()
        if "invalid" in dag.tags and dag_id != "baton_arbitration"
    }
    assert len(shown) == 5, sorted(shown)
    expected = {
        "abandoned-cart.yaml": "invalid YAML",
        "abandoned cart.yaml": "id 'x' must equal the file name stem 'abandoned cart'",
        "alias.yaml": "id 'abandoned_cart' must equal the file name stem 'alias'",
        "upper.YAML": "is not read: Baton reads files ending in .yaml or .yml, in lower case",
        "loop.yml": "is a directory, not a YAML file",
    }
    for name, message in expected.items():
        docs = [doc for doc in shown.values() if f"{campaigns / name}:" in doc]
        assert len(docs) == 1 and message in docs[0], (name, sorted(shown))


def test_a_yml_campaign_names_its_own_file(dags: Path) -> None:
    (dags / "campaigns" / "win_back.yaml").rename(dags / "campaigns" / "win_back.yml")
    bag = guarded_dagbag(dags)
    assert "invalid" not in bag.dags["campaign__win_back"].tags
    assert str(dags / "campaigns" / "win_back.yml") in bag.dags["campaign__win_back"].doc_md
