"""Reading scenario directories and writing decisions.csv (SPEC.md §5, ``baton simulate``)."""

from __future__ import annotations

import dataclasses
import shutil
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from baton.arbitration.scenario import (
    MAX_ID_LENGTH,
    CandidateRow,
    ConsentRow,
    CustomerRow,
    Decision,
    ExclusionRow,
    HistoryRow,
    IdentifierRow,
    Scenario,
    SuppressionRow,
    decisions_key,
    format_utc,
    load_scenario,
    parse_at,
    write_decisions_csv,
)
from baton.errors import BatonError, InputError
from baton.identity.normalize import MAX_VALUE_LENGTH
from strategies import ScenarioParts, identity_scenario_parts, scenario_parts, write_scenario_dir

pytestmark = pytest.mark.unit

BASIC = Path(__file__).parent / "scenarios" / "basic"


@pytest.fixture()
def scen(tmp_path: Path) -> Path:
    """A writable copy of the basic scenario."""
    target = tmp_path / "scen"
    shutil.copytree(BASIC, target)
    return target


def write(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")


def load_error(directory: Path) -> str:
    with pytest.raises(InputError) as info:
        load_scenario(directory)
    assert isinstance(info.value, BatonError)
    return str(info.value)


# ------------------------------------------------------------------------- loading


def test_load_basic() -> None:
    s = load_scenario(BASIC)
    assert sorted(s.campaigns) == [
        "abandoned_cart",
        "newsletter",
        "order_confirmation",
        "price_drop",
        "sms_flash",
    ]
    assert s.policy.default_timezone == "America/New_York"
    assert [c.name for c in s.policy.caps] == ["daily_total", "weekly_email", "one_promo_a_day"]
    assert s.customers[0] == CustomerRow(
        "c1", "Ann@Example.com", "+15550001", "tokA", None, "America/New_York"
    )
    assert s.customers[1] == CustomerRow(
        "c2", "bob@example.com", None, None, None, "Europe/Berlin"
    )  # trimmed
    assert s.customers[2].email is None and s.customers[2].postal_address == "1 Main St"
    assert len(s.customers) == 4
    assert s.candidates[0] == CandidateRow(0, "abandoned_cart", "c1", 12.5, None, None)
    assert s.candidates[2].score == 0.0  # empty score is 0
    assert s.candidates[3].channel == "email"
    assert s.candidates[4].expires_at == datetime(2026, 3, 2, 13, 0, tzinfo=UTC)
    assert [c.seq for c in s.candidates] == list(range(13))
    assert s.consents == (
        ConsentRow("c1", "sms", "", "opt_in"),
        ConsentRow("c2", "email", "newsletter", "opt_out"),
    )
    assert s.suppressions == (SuppressionRow("email", "DEE@Example.com"),)
    assert s.history == (
        HistoryRow("c1", "newsletter", "email", datetime(2026, 3, 1, 20, 0, tzinfo=UTC), ("news",), True),
        # naive time = UTC; tags default to the campaign's; counts given
        HistoryRow(
            "c1",
            "abandoned_cart",
            "email",
            datetime(2026, 2, 28, 12, 0, tzinfo=UTC),
            ("cart", "promo"),
            False,
        ),
    )


def test_optional_files(scen: Path) -> None:
    for name in ("consents.csv", "suppressions.csv", "history.csv"):
        (scen / name).unlink()
    s = load_scenario(scen)
    assert s.consents == s.suppressions == s.history == s.identifiers == s.exclusions == ()
    assert len(s.candidates) == 13


def test_identifiers_and_exclusions(scen: Path) -> None:
    write(
        scen / "identifiers.csv",
        "customer_id,kind,value,first_seen\n"
        "c1,login, Ann ,\n"
        "c2,phone,+1 (555) 010-0199,2026-03-01T10:00:00+01:00\n"
        "nobody,device,dev-1,2026-03-01\n"  # no profile: kept, and ignored when deciding
        "c1,login,Ann,2026-03-05T00:00:00Z\n",  # a duplicate is no error
    )
    write(scen / "exclusions.csv", "value,kind\nFrontDesk@Shop.test ,email\nguest,login\n")
    s = load_scenario(scen)
    assert s.identifiers == (
        IdentifierRow("c1", "login", "Ann"),  # trimmed like every cell; empty first_seen: always known
        IdentifierRow("c2", "phone", "+1 (555) 010-0199", datetime(2026, 3, 1, 9, 0, tzinfo=UTC)),
        IdentifierRow("nobody", "device", "dev-1", datetime(2026, 3, 1, 0, 0, tzinfo=UTC)),
        IdentifierRow("c1", "login", "Ann", datetime(2026, 3, 5, 0, 0, tzinfo=UTC)),
    )
    assert s.exclusions == (ExclusionRow("email", "FrontDesk@Shop.test"), ExclusionRow("login", "guest"))


def test_identifiers_first_seen_is_optional(scen: Path) -> None:
    write(scen / "identifiers.csv", "customer_id,kind,value\nc1,cookie,ck-1\n")
    assert load_scenario(scen).identifiers == (IdentifierRow("c1", "cookie", "ck-1"),)


def test_identifier_values_up_to_the_limit_are_accepted(scen: Path) -> None:
    value = "d" * MAX_VALUE_LENGTH
    write(scen / "identifiers.csv", f"customer_id,kind,value\nc1,device,{value}\n")
    write(scen / "exclusions.csv", f"kind,value\ndevice,{value}\n")
    s = load_scenario(scen)
    assert s.identifiers[0].value == s.exclusions[0].value == value


def test_history_defaults(scen: Path) -> None:
    write(
        scen / "history.csv",
        "customer_id,campaign_id,channel,decided_at\n"
        "c1,order_confirmation,sms,2026-03-01T10:00:00+01:00\n"
        "c1,gone_campaign,push,2026-03-01T10:00:00Z\n",
    )
    s = load_scenario(scen)
    assert s.history == (
        HistoryRow("c1", "order_confirmation", "sms", datetime(2026, 3, 1, 9, 0, tzinfo=UTC), (), False),
        HistoryRow("c1", "gone_campaign", "push", datetime(2026, 3, 1, 10, 0, tzinfo=UTC), (), True),
    )
    write(
        scen / "history.csv",
        "customer_id,campaign_id,channel,decided_at,tags,counts\n"
        "c1,order_confirmation,sms,2026-03-01T10:00:00Z,promo; news ;,TRUE\n",
    )
    assert load_scenario(scen).history[0].tags == ("promo", "news")
    assert load_scenario(scen).history[0].counts is True


def test_columns_in_any_order_crlf_bom_and_blank_lines(scen: Path) -> None:
    (scen / "customers.csv").write_bytes(
        "\ufefftimezone,customer_id,email,phone,push_token,postal_address\r\n"
        "UTC,c1,a@b.c,,,\r\n"
        "\r\n"
        ",c2,,,,\r\n".encode()
    )
    s = load_scenario(scen)
    assert s.customers == (CustomerRow("c1", "a@b.c", timezone="UTC"), CustomerRow("c2"))


def test_template_folder_is_used(scen: Path) -> None:
    shutil.rmtree(scen / "templates")
    message = load_error(scen)
    assert "abandoned_cart.yaml" in message and "abandoned_cart.html.j2" in message


# -------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("file", "text", "where", "words"),
    [
        (
            "customers.csv",
            "customer_id,email,phone,push_token,postal_address\nc1,,,,\n",
            "customers.csv:1",
            ["missing column", "timezone"],
        ),
        (
            "customers.csv",
            "customer_id,email,phone,push_token,postal_address,timezone,vip\n",
            "customers.csv:1",
            ["unknown column", "vip"],
        ),
        (
            "customers.csv",
            "customer_id,email,phone,push_token,postal_address,timezone,email\n",
            "customers.csv:1",
            ["twice", "email"],
        ),
        ("customers.csv", "", "customers.csv:1", ["empty", "header"]),
        (
            "customers.csv",
            "customer_id,email,phone,push_token,postal_address,timezone\nc1,,,,,\nc2,,,,,\nc1,,,,,\n",
            "customers.csv:4",
            ["c1", "line 2"],
        ),
        (
            "customers.csv",
            "customer_id,email,phone,push_token,postal_address,timezone\n,a@b.c,,,,\n",
            "customers.csv:2",
            ["customer_id", "empty"],
        ),
        (
            "customers.csv",
            "customer_id,email,phone,push_token,postal_address,timezone\nc1,,,,\n",
            "customers.csv:2",
            ["5 cells", "6"],
        ),
        (
            "candidates.csv",
            "campaign_id,customer_id,score,channel\nnewsletter,c1,,\n",
            "candidates.csv:1",
            ["missing column", "expires_at"],
        ),
        (
            "candidates.csv",
            "campaign_id,customer_id,score,channel,expires_at\nnewsletter,c1,,,\nnewsletter,c2,,,soon\n",
            "candidates.csv:3",
            ["expires_at", "'soon'", "ISO 8601"],
        ),
        (
            "candidates.csv",
            "campaign_id,customer_id,score,channel,expires_at\nnewsletter,c1,high,,\n",
            "candidates.csv:2",
            ["score", "'high'", "number"],
        ),
        (
            "candidates.csv",
            "campaign_id,customer_id,score,channel,expires_at\nnewsletter,c1,nan,,\n",
            "candidates.csv:2",
            ["score", "number"],
        ),
        (
            "candidates.csv",
            "campaign_id,customer_id,score,channel,expires_at\nnewsletter,c1,,fax,\n",
            "candidates.csv:2",
            ["unknown channel", "'fax'", "email, sms, push, audience, direct_mail"],
        ),
        (
            "candidates.csv",
            "campaign_id,customer_id,score,channel,expires_at\nnewsletter,c1,,,\nwinback,c1,,,\n",
            "candidates.csv:3",
            ["unknown campaign", "'winback'", "campaigns/winback.yaml"],
        ),
        (
            "candidates.csv",
            "campaign_id,customer_id,score,channel,expires_at\nnewsletter,c1,,sms,\n",
            "candidates.csv:2",
            ["'newsletter' has no channel 'sms'", "email"],
        ),
        (
            "candidates.csv",
            "campaign_id,customer_id,score,channel,expires_at\nnewsletter,,,,\n",
            "candidates.csv:2",
            ["customer_id", "empty"],
        ),
        (
            "consents.csv",
            "customer_id,channel,topic,status\nc1,email,,maybe\n",
            "consents.csv:2",
            ["status", "'maybe'", "opt_in or opt_out"],
        ),
        (
            "consents.csv",
            "customer_id,channel,topic,status\nc1,email,,\n",
            "consents.csv:2",
            ["status", "opt_in"],
        ),
        (
            "consents.csv",
            "customer_id,channel,topic,status\nc1,pigeon,,opt_in\n",
            "consents.csv:2",
            ["unknown channel", "'pigeon'"],
        ),
        (
            "consents.csv",
            "customer_id,channel,topic,status\nc1,email,,opt_in\nc1,email,,opt_out\n",
            "consents.csv:3",
            ["already", "line 2"],
        ),
        (
            "suppressions.csv",
            "channel,address\nEMAIL,a@b.c\n",
            "suppressions.csv:2",
            ["unknown channel", "'EMAIL'"],
        ),
        ("suppressions.csv", "channel,address\nemail,\n", "suppressions.csv:2", ["address", "empty"]),
        (
            "history.csv",
            "customer_id,campaign_id,channel,decided_at\nc1,newsletter,email,yesterday\n",
            "history.csv:2",
            ["decided_at", "'yesterday'"],
        ),
        (
            "history.csv",
            "customer_id,campaign_id,channel,decided_at\nc1,newsletter,email,\n",
            "history.csv:2",
            ["decided_at", "empty"],
        ),
        (
            "history.csv",
            "customer_id,campaign_id,channel,decided_at,counts\nc1,newsletter,email,2026-03-01,yes\n",
            "history.csv:2",
            ["counts", "'yes'", "true or false"],
        ),
        (
            "history.csv",
            "customer_id,campaign_id,channel,decided_at\nc1,newsletter,telex,2026-03-01\n",
            "history.csv:2",
            ["unknown channel", "'telex'"],
        ),
        (
            "history.csv",
            "customer_id,campaign_id,decided_at\n",
            "history.csv:1",
            ["missing column", "channel"],
        ),
        (
            "identifiers.csv",
            "customer_id,kind,value\nc1,login,ann\nc1,Email,ann@x.test\n",
            "identifiers.csv:3",
            [
                "unknown kind",
                "'Email'",
                "did you mean 'email'",
                "email, phone, login, cookie, device, push_token",
            ],
        ),
        (
            "identifiers.csv",
            "customer_id,kind,value\nc1,fax,123\n",
            "identifiers.csv:2",
            ["unknown kind", "'fax'", "email, phone, login, cookie, device, push_token"],
        ),
        (
            "identifiers.csv",
            "customer_id,kind,value\nc1,,123\n",
            "identifiers.csv:2",
            ["kind is empty", "email, phone"],
        ),
        (
            "identifiers.csv",
            "customer_id,kind,value\nc1,login, \t \n",
            "identifiers.csv:2",
            ["value is empty"],
        ),
        (
            "identifiers.csv",
            "customer_id,kind,value\n,login,ann\n",
            "identifiers.csv:2",
            ["customer_id is empty"],
        ),
        (
            "identifiers.csv",
            f"customer_id,kind,value\nc1,cookie,{'x' * (MAX_VALUE_LENGTH + 1)}\n",
            "identifiers.csv:2",
            [f"{MAX_VALUE_LENGTH + 1} characters", f"more than {MAX_VALUE_LENGTH}"],
        ),
        (
            "identifiers.csv",
            "customer_id,kind,value,first_seen\nc1,login,ann,last week\n",
            "identifiers.csv:2",
            ["first_seen", "'last week'", "ISO 8601"],
        ),
        (
            "identifiers.csv",
            "customer_id,kind\nc1,login\n",
            "identifiers.csv:1",
            ["missing column", "value"],
        ),
        (
            "identifiers.csv",
            "customer_id,kind,value,source\nc1,login,ann,crm\n",
            "identifiers.csv:1",
            ["unknown column", "'source'", "customer_id,kind,value,first_seen"],
        ),
        (
            "exclusions.csv",
            "kind,value\nemail,a@b.c\nEMAIL,x@y.z\n",
            "exclusions.csv:3",
            ["unknown kind", "'EMAIL'", "did you mean 'email'"],
        ),
        ("exclusions.csv", "kind,value\nlogin,\n", "exclusions.csv:2", ["value is empty"]),
        ("exclusions.csv", "kind,value\n,guest\n", "exclusions.csv:2", ["kind is empty"]),
        (
            "exclusions.csv",
            f"kind,value\nlogin,{'g' * (MAX_VALUE_LENGTH + 1)}\n",
            "exclusions.csv:2",
            [f"more than {MAX_VALUE_LENGTH}"],
        ),
        ("exclusions.csv", "value\nguest\n", "exclusions.csv:1", ["missing column", "kind"]),
        # found by tests/fuzz/test_fuzz_scenarios.py: each reached the database (a NUL, an index entry
        # too large) or raised OverflowError
        (
            "customers.csv",
            "customer_id,email,phone,push_token,postal_address,timezone\nc1,,,,,\nc\x002,,,,,\n",
            "customers.csv:3",
            ["NUL character"],
        ),
        ("suppressions.csv", 'channel,address\nemail,"a@b.c\n\x00"\n', "suppressions.csv:2", ["NUL"]),
        (
            "customers.csv",
            f"customer_id,email,phone,push_token,postal_address,timezone\n{'c' * (MAX_ID_LENGTH + 1)},,,,,\n",
            "customers.csv:2",
            [f"customer_id is {MAX_ID_LENGTH + 1} characters long, more than {MAX_ID_LENGTH}"],
        ),
        (
            "customers.csv",
            f"customer_id,email,phone,push_token,postal_address,timezone\nc1,{'e' * (MAX_VALUE_LENGTH + 1)},,,,\n",
            "customers.csv:2",
            [f"email is {MAX_VALUE_LENGTH + 1} characters long"],
        ),
        (
            "customers.csv",
            f"customer_id,email,phone,push_token,postal_address,timezone\nc1,,,{'t' * (MAX_VALUE_LENGTH + 1)},,\n",
            "customers.csv:2",
            ["push_token is"],
        ),
        (
            "consents.csv",
            f"customer_id,channel,topic,status\nc1,email,{'t' * (MAX_ID_LENGTH + 1)},opt_in\n",
            "consents.csv:2",
            ["topic is", f"more than {MAX_ID_LENGTH}"],
        ),
        (
            "candidates.csv",
            f"campaign_id,customer_id,score,channel,expires_at\nnewsletter,{'c' * (MAX_ID_LENGTH + 1)},,,\n",
            "candidates.csv:2",
            ["customer_id is"],
        ),
        (
            "history.csv",
            "customer_id,campaign_id,channel,decided_at\nc1,newsletter,email,0001-01-01T00:00:00+01:00\n",
            "history.csv:2",
            ["decided_at '0001-01-01T00:00:00+01:00' is not a time"],
        ),
        (
            "candidates.csv",
            "campaign_id,customer_id,score,channel,expires_at\nnewsletter,c1,,,9999-12-31T23:59:59-01:00\n",
            "candidates.csv:2",
            ["expires_at", "is not a time"],
        ),
    ],
)
def test_bad_input_names_file_and_row(scen: Path, file: str, text: str, where: str, words: list[str]) -> None:
    write(scen / file, text)
    message = load_error(scen)
    assert where in message
    for word in words:
        assert word in message


def test_ids_and_addresses_up_to_the_limits_are_accepted(scen: Path) -> None:
    cid, email = "c" * MAX_ID_LENGTH, "e" * MAX_VALUE_LENGTH
    write(
        scen / "customers.csv",
        f"customer_id,email,phone,push_token,postal_address,timezone\n{cid},{email},,,,\n",
    )
    write(scen / "candidates.csv", f"campaign_id,customer_id,score,channel,expires_at\nnewsletter,{cid},,,\n")
    write(
        scen / "consents.csv", f"customer_id,channel,topic,status\n{cid},email,{'t' * MAX_ID_LENGTH},opt_in\n"
    )
    s = load_scenario(scen)
    assert s.customers == (CustomerRow(cid, email),)
    assert s.consents[0].topic == "t" * MAX_ID_LENGTH


@pytest.mark.parametrize("target", ["consents.csv", "nowhere.csv", "customers.csv"])
def test_a_broken_symlink_is_named_not_skipped(scen: Path, target: str) -> None:
    """Found by tests/fuzz/test_fuzz_scenarios.py: a consents.csv linking to itself raised RuntimeError
    (Path.resolve), and one linking to nothing was skipped as if there were no consents."""
    (scen / "consents.csv").unlink()
    (scen / "consents.csv").symlink_to(target)
    if target == "customers.csv":  # a working link is read
        assert load_error(scen).startswith(f"{scen / 'consents.csv'}:1: unknown column 'email'")
    else:
        assert load_error(scen).startswith(f"{scen / 'consents.csv'}: cannot be read")


def test_line_numbers_count_blank_and_multiline_rows(scen: Path) -> None:
    write(
        scen / "customers.csv",
        "customer_id,email,phone,push_token,postal_address,timezone\n"
        'c1,,,,"1 Main St\nSpringfield",UTC\n'
        "\n"
        "c1,,,,,\n",
    )
    message = load_error(scen)
    assert "customers.csv:5" in message and "line 2" in message


@pytest.mark.parametrize("name", ["customers.csv", "candidates.csv", "policy.yaml"])
def test_missing_required_file(scen: Path, name: str) -> None:
    (scen / name).unlink()
    message = load_error(scen)
    assert name in message and "missing" in message


def test_missing_campaigns_folder(scen: Path) -> None:
    shutil.rmtree(scen / "campaigns")
    message = load_error(scen)
    assert "campaigns" in message and "missing" in message


def test_missing_directory(tmp_path: Path) -> None:
    message = load_error(tmp_path / "nope")
    assert "nope" in message and "not a directory" in message


def test_bad_campaign_yaml_names_file_line_and_field(scen: Path) -> None:
    path = scen / "campaigns" / "newsletter.yaml"
    write(path, path.read_text().replace("priority: 20", "priority: 200"))
    message = load_error(scen)
    assert "newsletter.yaml:6" in message and "priority" in message


def test_bad_policy_yaml_names_file_and_line(scen: Path) -> None:
    path = scen / "policy.yaml"
    write(path, path.read_text().replace("window: 24h", "window: 24 hours"))
    message = load_error(scen)
    assert "policy.yaml:6" in message and "window" in message


def test_empty_policy_means_defaults(scen: Path) -> None:
    write(scen / "policy.yaml", "")
    assert load_scenario(scen).policy.default_timezone == "UTC"


# ---------------------------------------------------------------------------- times


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-03-02T12:00:00Z", datetime(2026, 3, 2, 12, 0, tzinfo=UTC)),
        ("2026-03-02T12:00:00z", datetime(2026, 3, 2, 12, 0, tzinfo=UTC)),
        ("2026-03-02T12:00:00", datetime(2026, 3, 2, 12, 0, tzinfo=UTC)),
        ("2026-03-02 12:00", datetime(2026, 3, 2, 12, 0, tzinfo=UTC)),
        ("2026-03-02T13:00:00+01:00", datetime(2026, 3, 2, 12, 0, tzinfo=UTC)),
        (" 2026-03-02T12:00:00.5Z ", datetime(2026, 3, 2, 12, 0, 0, 500000, tzinfo=UTC)),
    ],
)
def test_parse_at(text: str, expected: datetime) -> None:
    got = parse_at(text)
    assert got == expected and got.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    "text",
    ["", "now", "2026-13-01T00:00:00Z", "12:00", "0001-01-01T00:00:00+01:00", "9999-12-31T23:00:00-01:00"],
)
def test_parse_at_rejects(text: str) -> None:
    with pytest.raises(InputError, match="--at"):
        parse_at(text)


@pytest.mark.parametrize("text", ["0001-01-01T00:00:00Z", "1969-12-31T23:59:59Z", "9999-12-31T00:00:00Z"])
def test_parse_at_rejects_decision_times_no_cap_window_fits_around(text: str) -> None:
    # the engine shifts T by cap windows and periods: year 1 and 9999 overflowed as tracebacks
    with pytest.raises(InputError, match="out of range; give a decision time from 1970 to 8999"):
        parse_at(text)
    assert parse_at("8999-12-31T23:00:00Z").year == 8999 and parse_at("1970-01-01T00:00:00Z").year == 1970


def test_format_utc() -> None:
    assert format_utc(datetime(2026, 3, 1, 21, 0, tzinfo=UTC)) == "2026-03-01T21:00:00Z"
    assert (
        format_utc(datetime(2026, 3, 1, 22, 0, tzinfo=timezone(timedelta(hours=1)))) == "2026-03-01T21:00:00Z"
    )
    assert format_utc(datetime(2026, 3, 1, 21, 0)) == "2026-03-01T21:00:00Z"
    assert format_utc(datetime(2026, 3, 1, 21, 0, 0, 250000, tzinfo=UTC)) == "2026-03-01T21:00:00.250000Z"


# ---------------------------------------------------------------------------- output


def test_write_decisions_csv(tmp_path: Path) -> None:
    at = datetime(2026, 3, 1, 21, 0, tzinfo=UTC)
    decisions = [
        Decision("a1", "promo", "sms", "selected", None, at, "a1"),
        Decision("B3", "promo", "email", "capped", "daily_total", None, "B3"),
        Decision(
            "ä5",
            "promo",
            "email",
            "selected",
            None,
            datetime(2026, 3, 2, 9, 0, tzinfo=timezone(timedelta(hours=-5))),
        ),
        Decision("a1", "promo", "email", "channel_alternative", None, None, "a1"),
        Decision("Z", "b_x", "push", "no_consent", None, None, "B3"),
        Decision("Z", "a,b", "push", "expired", None, None, "B3"),
        Decision("_x", "promo", "email", "selected", None, at, "_x,y"),
        Decision("a1", "newsletter", "email", "holdout_global", None, None, "a1"),
        Decision("ghost", "promo", "email", "unknown_customer"),
    ]
    out = tmp_path / "decisions.csv"
    assert write_decisions_csv(decisions, out) == len(decisions)
    assert out.read_text(encoding="utf-8") == (
        "customer_id,campaign_id,channel,outcome,reason,send_at,person_id\n"
        "B3,promo,email,capped,daily_total,,B3\n"
        'Z,"a,b",push,expired,,,B3\n'
        "Z,b_x,push,no_consent,,,B3\n"
        '_x,promo,email,selected,,2026-03-01T21:00:00Z,"_x,y"\n'
        "a1,newsletter,email,holdout_global,,,a1\n"
        "a1,promo,email,channel_alternative,,,a1\n"
        "a1,promo,sms,selected,,2026-03-01T21:00:00Z,a1\n"
        "ghost,promo,email,unknown_customer,,,\n"
        "ä5,promo,email,selected,,2026-03-02T14:00:00Z,\n"
    )


def test_write_decisions_csv_empty(tmp_path: Path) -> None:
    out = tmp_path / "d.csv"
    assert write_decisions_csv([], out) == 0
    assert out.read_text() == "customer_id,campaign_id,channel,outcome,reason,send_at,person_id\n"


def test_write_decisions_csv_bad_path(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cannot write"):
        write_decisions_csv([], tmp_path / "missing" / "d.csv")


def test_decisions_key_is_byte_order() -> None:
    ds = [Decision(c, "x", "email", "selected") for c in ["b", "a", "B", "é", "z", "_"]]
    assert [d.customer_id for d in sorted(ds, key=decisions_key)] == ["B", "_", "a", "b", "z", "é"]
    same = [Decision("a", "x", ch, "selected") for ch in ["sms", "email", "direct_mail"]]
    assert [d.channel for d in sorted(same, key=decisions_key)] == ["direct_mail", "email", "sms"]


# ----------------------------------------------------------------------- round trip


def _as_loaded(parts: ScenarioParts, s: Scenario) -> Scenario:
    """What load_scenario gives for ``parts`` written as files: cells trimmed, blank = missing."""

    def cell(v: str | None) -> str | None:
        return None if v is None or not v.strip() else v.strip()

    customers = tuple(
        CustomerRow(
            c.customer_id,
            cell(c.email),
            cell(c.phone),
            cell(c.push_token),
            cell(c.postal_address),
            cell(c.timezone),
        )
        for c in parts.customers
    )
    suppressions = tuple(SuppressionRow(x.channel, x.address.strip()) for x in parts.suppressions)
    identifiers = tuple(dataclasses.replace(i, value=i.value.strip()) for i in parts.identifiers)
    exclusions = tuple(dataclasses.replace(e, value=e.value.strip()) for e in parts.exclusions)
    history = []
    for h in parts.history:
        campaign = s.campaigns.get(h.campaign_id)
        tags = h.tags or (tuple(campaign.tags) if campaign is not None else ())
        history.append(dataclasses.replace(h, tags=tags))
    return dataclasses.replace(
        s,
        customers=customers,
        suppressions=suppressions,
        history=tuple(history),
        identifiers=identifiers,
        exclusions=exclusions,
    )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(parts=scenario_parts())
def test_round_trip_through_files(tmp_path_factory: pytest.TempPathFactory, parts: ScenarioParts) -> None:
    directory = tmp_path_factory.mktemp("rt")
    write_scenario_dir(parts, directory)
    built = parts.build()
    loaded = load_scenario(directory)
    assert loaded == _as_loaded(parts, built)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(parts=identity_scenario_parts())
def test_round_trip_through_files_with_identity(
    tmp_path_factory: pytest.TempPathFactory, parts: ScenarioParts
) -> None:
    """identifiers.csv and exclusions.csv (blanks and tabs around values, junk, first_seen) and the
    policy's identity keys come back as written, cells trimmed."""
    directory = tmp_path_factory.mktemp("rt")
    write_scenario_dir(parts, directory)
    built = parts.build()
    loaded = load_scenario(directory)
    assert loaded == _as_loaded(parts, built)
    assert loaded.policy.identity == built.policy.identity


@pytest.mark.parametrize(
    ("entry", "hint"),
    [
        ("consent.csv", "did you mean 'consents.csv'"),
        ("identifier.csv", "did you mean 'identifiers.csv'"),
        ("exclusion.csv", "did you mean 'exclusions.csv'"),
        ("Customers.csv", "did you mean 'customers.csv'"),
        ("notes.txt", "baton simulate reads only"),
        ("campaign/", "did you mean 'campaigns'"),
    ],
)
def test_unknown_entry_is_an_error(scen: Path, entry: str, hint: str) -> None:
    path = scen / entry.rstrip("/")
    if entry.endswith("/"):
        path.mkdir()
    else:
        write(path, "customer_id,channel,topic,status\nc1,email,,opt_out\n")
    message = load_error(scen)
    assert f"{path}: unknown" in message and hint in message


def test_hidden_entries_and_the_output_file_are_not_scenario_files(scen: Path) -> None:
    write(scen / ".DS_Store", "x")
    (scen / ".git").mkdir()
    write(scen / "decisions.csv", "customer_id\n")
    assert load_scenario(scen, ignore=[scen / "decisions.csv"]).customers
    assert "decisions.csv: unknown file" in load_error(scen)
