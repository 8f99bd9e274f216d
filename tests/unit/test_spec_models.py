"""Valid campaign and policy files load with the documented defaults; durations parse."""

from __future__ import annotations

import pickle
import subprocess
import sys
from datetime import UTC, datetime, time, timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from baton.errors import BatonError, SpecError
from baton.spec import (
    Audience,
    Campaign,
    Cap,
    Category,
    Channel,
    ChannelSettings,
    ConsentMode,
    CycleSettings,
    EmailMessage,
    MessageBlocks,
    Outcome,
    Period,
    Policy,
    QuietHours,
    SmsMessage,
    SpecIssue,
    SpecValidationError,
    load_campaign,
    load_campaigns,
    load_policy,
    parse_duration,
)

pytestmark = pytest.mark.unit

VALID = Path(__file__).parent / "valid"


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


MINIMAL = """\
id: {id}
name: Minimal
owner: crm-team
schedule: "0 6 * * *"
start_date: 2026-03-01
channels: [sms]
audience:
  sql: select customer_id from customers
message:
  sms: {{text: "Hi {{{{ first_name }}}}"}}
"""


# --------------------------------------------------------------------------- campaigns


def test_full_campaign_loads() -> None:
    c = load_campaign(VALID / "campaigns" / "abandoned_cart.yaml")
    assert c.id == "abandoned_cart"
    assert c.name == "Abandoned cart reminder"
    assert c.owner == "crm-team"
    assert c.enabled is True
    assert c.schedule == "@hourly"
    assert c.start_date == datetime(2026, 1, 1, tzinfo=UTC)
    assert c.end_date is None
    assert c.category is Category.marketing
    assert c.topic == "promotions"
    assert c.priority == 80
    assert c.tags == ("cart", "promo")
    assert c.channels == (Channel.email, Channel.push)
    assert c.holdout_percent == 10.0
    assert c.frequency == Cap(name="campaign_frequency", limit=1, window=timedelta(days=3))
    assert c.expires_after == timedelta(hours=24)
    assert c.counts_toward_caps is True
    assert c.params == {"min_cart_value": 20}
    assert "{{ params.min_cart_value }}" in c.audience.sql
    assert c.message.email == EmailMessage(
        subject="You left {{ item_name }} behind", template="abandoned_cart.html.j2"
    )
    assert c.message.block(Channel.push) is c.message.push
    assert c.message.sms is None


def test_campaign_defaults(tmp_path: Path) -> None:
    c = load_campaign(_write(tmp_path / "campaigns" / "minimal.yaml", MINIMAL.format(id="minimal")))
    assert c.topic == "minimal"  # defaults to the id
    assert c.priority == 50
    assert c.enabled is True
    assert c.description is None
    assert c.category is Category.marketing
    assert c.counts_toward_caps is True
    assert c.holdout_percent == 0
    assert c.frequency is None
    assert c.expires_after == timedelta(hours=24)
    assert c.tags == ()
    assert c.params == {}
    assert c.start_date == datetime(2026, 3, 1, tzinfo=UTC)


def test_transactional_defaults_and_utc_start() -> None:
    c = load_campaign(VALID / "campaigns" / "order_confirmation.yaml")
    assert c.category is Category.transactional
    assert c.counts_toward_caps is False
    assert c.topic == "order_confirmation"
    assert c.start_date == datetime(2026, 1, 1, 4, 30, tzinfo=UTC)  # 06:30+02:00
    assert c.start_date.tzinfo is UTC
    assert c.message.email is not None and c.message.email.html is not None


def test_transactional_may_count_toward_caps(tmp_path: Path) -> None:
    text = MINIMAL.format(id="t") + "category: transactional\ncounts_toward_caps: true\n"
    assert load_campaign(_write(tmp_path / "t.yaml", text)).counts_toward_caps is True


def test_marketing_may_opt_out_of_caps(tmp_path: Path) -> None:
    text = MINIMAL.format(id="m") + "counts_toward_caps: false\n"
    assert load_campaign(_write(tmp_path / "m.yaml", text)).counts_toward_caps is False


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        ("2026-01-01", datetime(2026, 1, 1, tzinfo=UTC)),
        ("2026-01-01 08:15:00", datetime(2026, 1, 1, 8, 15, tzinfo=UTC)),
        ("2026-01-01T08:15:00-05:00", datetime(2026, 1, 1, 13, 15, tzinfo=UTC)),
        ('"2026-01-01T08:15:00Z"', datetime(2026, 1, 1, 8, 15, tzinfo=UTC)),
        ('"2026-01-01"', datetime(2026, 1, 1, tzinfo=UTC)),
    ],
)
def test_start_date_forms(tmp_path: Path, written: str, expected: datetime) -> None:
    text = MINIMAL.format(id="d").replace("2026-03-01", written)
    assert load_campaign(_write(tmp_path / "d.yaml", text)).start_date == expected


def test_yaml_is_safe_load_no_env_expansion(tmp_path: Path) -> None:
    text = MINIMAL.format(id="env") + 'description: "${HOME} and $USER"\n'
    assert load_campaign(_write(tmp_path / "env.yaml", text)).description == "${HOME} and $USER"


def test_templates_dir_default_is_sibling_templates_folder(tmp_path: Path) -> None:
    _write(tmp_path / "templates" / "welcome.html.j2", "<p>{{ first_name }}</p>")
    text = (
        MINIMAL.format(id="w")
        .replace("[sms]", "[email]")
        .replace('sms: {text: "Hi {{ first_name }}"}', "email: {subject: Hi, template: welcome.html.j2}")
    )
    c = load_campaign(_write(tmp_path / "campaigns" / "w.yaml", text))
    assert c.message.email is not None and c.message.email.template == "welcome.html.j2"
    with pytest.raises(SpecValidationError) as info:
        load_campaign(tmp_path / "campaigns" / "w.yaml", templates_dir=tmp_path / "elsewhere")
    assert info.value.issues[0].field == "message.email.template"


def test_subfolder_templates_are_allowed(tmp_path: Path) -> None:
    _write(tmp_path / "templates" / "emails" / "w.html.j2", "<p>hi</p>")
    text = (
        MINIMAL.format(id="w")
        .replace("[sms]", "[email]")
        .replace('sms: {text: "Hi {{ first_name }}"}', "email: {subject: Hi, template: emails/w.html.j2}")
    )
    assert load_campaign(_write(tmp_path / "campaigns" / "w.yaml", text)).message.email is not None


def test_all_problems_of_a_file_are_reported_at_once(tmp_path: Path) -> None:
    text = (
        MINIMAL.format(id="many").replace("owner: crm-team\n", "") + "priority: high\nholdout_percent: 70\n"
    )
    text = text.replace("[sms]", "[sms, push]")
    with pytest.raises(SpecValidationError) as info:
        load_campaign(_write(tmp_path / "many.yaml", text))
    assert [(i.line, i.field) for i in info.value.issues] == [
        (1, "owner"),  # a missing key is reported on its parent's line
        (8, "message.push"),
        (10, "priority"),
        (11, "holdout_percent"),
    ]


def test_programmatic_construction_validates_too() -> None:
    c = Campaign(
        id="x",
        name="X",
        owner="o",
        schedule="@daily",
        start_date=datetime(2026, 1, 1),
        channels=(Channel.sms,),
        audience=Audience(sql="select 1"),
        message=MessageBlocks(sms=SmsMessage(text="hi")),
        category=Category.transactional,
    )
    assert c.topic == "x" and c.counts_toward_caps is False
    assert c.start_date.tzinfo is UTC
    with pytest.raises(ValidationError):
        Campaign(**{**c.model_dump(), "channels": (Channel.sms, Channel.push)})
    with pytest.raises(ValidationError):
        Campaign(**{**c.model_dump(), "surprise": 1})


def test_models_are_frozen() -> None:
    policy = Policy()
    with pytest.raises(ValidationError):
        policy.holdout_salt = "other"  # type: ignore[misc]


def test_load_campaigns_bad_file_never_hides_others(tmp_path: Path) -> None:
    folder = tmp_path / "campaigns"
    _write(folder / "b_good.yaml", MINIMAL.format(id="b_good"))
    _write(folder / "a_bad.yaml", MINIMAL.format(id="a_bad") + "priority: 101\n")
    _write(folder / "c_broken.yml", "id: [unclosed\n")
    _write(folder / "d_good.yml", MINIMAL.format(id="d_good"))
    _write(folder / ".hidden.yaml", "not: a campaign\n")
    _write(folder / "notes.txt", "ignored")
    campaigns, issues = load_campaigns(folder)
    assert [c.id for c in campaigns] == ["b_good", "d_good"]
    assert [(i.file.name, i.line, i.field) for i in issues] == [
        ("a_bad.yaml", 11, "priority"),
        ("c_broken.yml", 2, "(file)"),
    ]


def test_load_campaigns_same_id_in_two_files(tmp_path: Path) -> None:
    _write(tmp_path / "dup.yaml", MINIMAL.format(id="dup"))
    _write(tmp_path / "dup.yml", MINIMAL.format(id="dup"))
    campaigns, issues = load_campaigns(tmp_path)
    assert [c.id for c in campaigns] == ["dup"]
    assert len(issues) == 1
    assert issues[0].file.name == "dup.yml" and issues[0].field == "id"
    assert "also defined in" in issues[0].message


def test_load_campaigns_missing_folder(tmp_path: Path) -> None:
    campaigns, issues = load_campaigns(tmp_path / "nope")
    assert campaigns == []
    assert [(i.line, i.field) for i in issues] == [(None, "(file)")]


def test_load_campaign_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SpecValidationError) as info:
        load_campaign(tmp_path / "ghost.yaml")
    assert str(info.value) == f"{tmp_path / 'ghost.yaml'}: (file): file not found: check the path"


def test_duplicate_yaml_key_is_reported_even_when_the_rest_is_valid(tmp_path: Path) -> None:
    with pytest.raises(SpecValidationError) as info:
        load_campaign(_write(tmp_path / "d.yaml", MINIMAL.format(id="d") + "name: Again\n"))
    assert [(i.line, i.field) for i in info.value.issues] == [(11, "name")]


def test_spec_validation_error_is_a_baton_error_and_pickles() -> None:
    issue = SpecIssue(Path("dags/campaigns/x.yaml"), 3, "priority", "bad")
    exc = SpecValidationError([issue, SpecIssue(Path("p.yaml"), None, "(file)", "empty")])
    assert isinstance(exc, SpecError) and isinstance(exc, BatonError)
    assert str(exc) == "dags/campaigns/x.yaml:3: priority: bad\np.yaml: (file): empty"
    again = pickle.loads(pickle.dumps(exc))
    assert again.issues == exc.issues


# --------------------------------------------------------------------------- policy


def test_policy_defaults(tmp_path: Path) -> None:
    policy = load_policy(tmp_path / "policy.yaml")  # missing file
    assert policy == Policy()
    assert policy.cycle == CycleSettings(
        schedule="0 * * * *", wait_for=timedelta(minutes=30), max_send_delay=timedelta(hours=2)
    )
    assert policy.default_timezone == "UTC"
    assert policy.global_control_percent == 0
    assert policy.holdout_salt == "baton"
    assert policy.caps == ()
    assert policy.quiet_hours == {}
    assert policy.channels == {}
    assert {ch: policy.channel(ch).consent for ch in Channel} == {
        Channel.email: ConsentMode.opt_out,
        Channel.sms: ConsentMode.opt_in,
        Channel.push: ConsentMode.opt_out,
        Channel.audience: ConsentMode.opt_out,
        Channel.direct_mail: ConsentMode.opt_out,
    }
    assert policy.channel(Channel.direct_mail).connection == "baton_direct_mail"
    assert policy.channel(Channel.email).rate_per_second is None


def test_empty_policy_file_is_all_defaults(tmp_path: Path) -> None:
    assert load_policy(_write(tmp_path / "policy.yaml", "# all defaults\n")) == Policy()


def test_full_policy_loads() -> None:
    policy = load_policy(VALID / "policy.yaml")
    assert policy.default_timezone == "America/New_York"
    assert policy.global_control_percent == 5
    assert policy.caps == (
        Cap(name="daily_total", limit=2, window=timedelta(hours=24)),
        Cap(name="weekly_email", limit=5, window=timedelta(days=7), channel=Channel.email),
        Cap(name="one_promo_a_day", limit=1, period=Period.day, tag="promo"),
    )
    assert policy.quiet_hours[Channel.sms] == QuietHours(start=time(21, 0), end=time(9, 0))
    assert policy.channel(Channel.email) == ChannelSettings(
        consent=ConsentMode.opt_out, connection="baton_smtp", rate_per_second=200
    )
    # an entry without consent/connection gets the channel's defaults
    assert policy.channel(Channel.push) == ChannelSettings(
        consent=ConsentMode.opt_out, connection="baton_push", rate_per_second=50
    )
    assert policy.channel(Channel.audience).connection == "baton_audience"


def test_policy_channel_entry_without_consent_gets_channel_default(tmp_path: Path) -> None:
    policy = load_policy(_write(tmp_path / "policy.yaml", "channels:\n  sms: {connection: twilio}\n"))
    assert policy.channel(Channel.sms) == ChannelSettings(consent=ConsentMode.opt_in, connection="twilio")


# --------------------------------------------------------------------------- durations and enums


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90m", timedelta(minutes=90)),
        ("24h", timedelta(hours=24)),
        ("7d", timedelta(days=7)),
        ("2w", timedelta(weeks=2)),
        ("1m", timedelta(minutes=1)),
    ],
)
def test_parse_duration(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["3x", "24", "h", "1.5h", "24 h", "", "-1h", "0m", "24H", "1d2h"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match=r"use an integer and a unit m, h, d or w \(90m, 24h, 7d, 2w\)"):
        parse_duration(text)


def test_parse_duration_message() -> None:
    with pytest.raises(ValueError) as info:
        parse_duration("3x")
    assert str(info.value) == "bad duration '3x': use an integer and a unit m, h, d or w (90m, 24h, 7d, 2w)"


def test_enums() -> None:
    assert [c.value for c in Channel] == ["email", "sms", "push", "audience", "direct_mail"]
    assert [o.value for o in Outcome] == [
        "unknown_customer",
        "expired",
        "unreachable",
        "suppressed",
        "no_consent",
        "quiet_hours",
        "holdout_global",
        "holdout_campaign",
        "channel_alternative",
        "capped",
        "selected",
    ]
    assert Channel("sms") is Channel.sms and str(Channel.sms) == "sms"
    assert [p.value for p in Period] == ["day", "week", "month"]


def test_spec_package_does_not_import_airflow() -> None:
    code = "import sys, baton.spec, baton.spec.schedule; print(any(m.split('.')[0] == 'airflow' for m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


@pytest.mark.parametrize(
    ("text", "shortest"), [("90m", "90m"), ("24h", "1d"), ("7d", "1w"), ("2w", "2w"), ("36h", "36h")]
)
def test_format_duration(text: str, shortest: str) -> None:
    from baton.spec.durations import format_duration

    assert format_duration(parse_duration(text)) == shortest
