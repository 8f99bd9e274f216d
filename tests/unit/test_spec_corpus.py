"""The malformed-file corpus: every file under corpus/ gives exactly the expected issues.

Each case lists the exact ``line: field: message`` of every issue the file produces
(paths are relative to tests/unit, where these tests run).  Every corpus file must have
a case, so a new file cannot be forgotten.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from baton.spec import SpecIssue, SpecValidationError, load_campaign, load_policy

pytestmark = pytest.mark.unit

HERE = Path(__file__).parent
TEMPLATES = Path("corpus/templates")


@pytest.fixture(autouse=True)
def _in_tests_unit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(HERE)


def _lines(issues: list[SpecIssue]) -> list[str]:
    return [f"{issue.line}: {issue.field}: {issue.message}" for issue in issues]


CAMPAIGN_CASES: list[tuple[str, list[str]]] = [
    (
        "Bad-Id",
        [
            "1: id: id 'Bad-Id' is not allowed: use 1 to 63 characters, lowercase letters, digits and _, starting with a letter (e.g. abandoned_cart)",
        ],
    ),
    (
        "audience_sql_jinja",
        [
            "11: audience.sql: Jinja syntax error: unexpected '}' (line 3 of the template): fix the template (expressions are written {{ name }}, statements {% if ... %} ... {% endif %})",
        ],
    ),
    (
        "bad_category",
        [
            "6: category: unknown category 'promo': use one of marketing, transactional",
        ],
    ),
    (
        "bad_cron",
        [
            "4: schedule: bad cron expression '61 * * * *': use a five-field cron expression (minute hour day-of-month month day-of-week, e.g. '0 * * * *') or one of @hourly, @daily, @midnight, @weekly, @monthly, @yearly, @annually",
        ],
    ),
    (
        "bad_duration",
        [
            "6: expires_after: bad duration '3x': use an integer and a unit m, h, d or w (90m, 24h, 7d, 2w)",
        ],
    ),
    (
        "bad_preset",
        [
            "4: schedule: unknown schedule preset '@often': use a five-field cron expression (minute hour day-of-month month day-of-week, e.g. '0 * * * *') or one of @hourly, @daily, @midnight, @weekly, @monthly, @yearly, @annually",
        ],
    ),
    (
        "bad_start_date",
        [
            "5: start_date: bad date 'next monday': write a date (2026-01-01) or a date and time (2026-01-01T08:00:00Z; without a zone it is UTC)",
        ],
    ),
    (
        "broken_template",
        [
            "10: message.email.template: template 'broken.html.j2' does not parse: Unexpected end of template. Jinja was looking for the following tags: 'elif' or 'else' or 'endif'. The innermost block that needs to be closed is 'if' (line 2 of corpus/templates/broken.html.j2): fix the template",
        ],
    ),
    (
        "duplicate_channel",
        [
            "6: channels[1]: channel 'email' is listed twice: list each channel once",
        ],
    ),
    (
        "duplicate_key",
        [
            "7: priority: duplicate key 'priority' (also on line 6): keep only one; YAML would use the last",
        ],
    ),
    (
        "email_without_body",
        [
            "10: message.email: has no body: add html (inline Jinja) or template (a file in the templates folder)",
        ],
    ),
    (
        "empty",
        [
            "1: (file): the file is empty: write a campaign (id, name, owner, schedule, start_date, channels, audience, message)",
        ],
    ),
    (
        "empty_sql",
        [
            "8: audience.sql: must not be empty: write a value or remove the key",
        ],
    ),
    (
        "end_before_start",
        [
            "6: end_date: end_date 2025-12-31T00:00:00+00:00 is not after start_date 2026-01-01T00:00:00+00:00: set a later end_date or remove it",
        ],
    ),
    (
        "frequency_transactional",
        [
            "7: frequency: transactional campaigns are never capped: remove frequency or make the campaign category marketing",
        ],
    ),
    (
        "frequency_window_and_period",
        [
            "6: frequency: frequency has both window and period: keep exactly one (window: a rolling duration like 24h, period: day, week or month)",
        ],
    ),
    (
        "frequency_with_name",
        [
            "6: frequency.name: 'name' is not allowed in frequency: a campaign's frequency cap is always named 'campaign_frequency' and counts this campaign's messages on every channel; keep only limit and window or period",
        ],
    ),
    (
        "holdout_too_high",
        [
            "6: holdout_percent: 60 is out of range: use a percentage from 0 to 50",
        ],
    ),
    (
        "holdout_transactional",
        [
            "7: holdout_percent: transactional campaigns have no holdout: set holdout_percent to 0 or make the campaign category marketing",
        ],
    ),
    (
        "html_and_template",
        [
            "10: message.email: has both html and template: keep exactly one (html: inline Jinja, template: a file name)",
        ],
    ),
    (
        "id_mismatch",
        [
            "1: id: id 'something_else' must equal the file name stem 'id_mismatch': rename the file or change the id",
        ],
    ),
    (
        "jinja_subject",
        [
            "10: message.email.subject: Jinja syntax error: unexpected end of template, expected 'end of print statement': fix the template (expressions are written {{ name }}, statements {% if ... %} ... {% endif %})",
        ],
    ),
    (
        "missing_block",
        [
            "9: message.sms: channel 'sms' has no message block: add message.sms (sms: {text: ...})",
        ],
    ),
    (
        "missing_message",
        [
            "1: message: required key 'message' is missing: add message: one block per channel, e.g. {email: {subject: ..., template: ...}}",
        ],
    ),
    (
        "missing_required",
        [
            "1: owner: required key 'owner' is missing: add owner: crm-team",
        ],
    ),
    (
        "missing_template",
        [
            "10: message.email.template: template 'good.htm.j2' not found in corpus/templates: create the file or fix the name (did you mean 'good.html.j2'?)",
        ],
    ),
    (
        "no_channels",
        [
            "6: channels: no channel given: list 1 to 5 of email, sms, push, audience, direct_mail in order of preference, e.g. [email]",
        ],
    ),
    (
        "priority_out_of_range",
        [
            "6: priority: 120 is out of range: use an integer from 0 to 100",
        ],
    ),
    (
        "python_tag",
        [
            "6: (file): could not determine a constructor for the tag 'tag:yaml.org,2002:python/object/apply:os.system': YAML tags are not allowed here; write plain values",
        ],
    ),
    (
        "secret_in_params",
        [
            "9: params.auth.password: 'password' looks like a secret: secrets do not belong in campaign or policy files: keep them in an Airflow Connection (a channel's `connection:` names it) or in an environment variable, and remove this key",
        ],
    ),
    (
        "secret_key",
        [
            "6: api_key: 'api_key' looks like a secret: secrets do not belong in campaign or policy files: keep them in an Airflow Connection (a channel's `connection:` names it) or in an environment variable, and remove this key",
        ],
    ),
    (
        "six_channels",
        [
            "6: channels: 6 channels given, at most 5: list each of email, sms, push, audience, direct_mail at most once",
            "9: message.sms: channel 'sms' has no message block: add message.sms (sms: {text: ...})",
            "9: message.push: channel 'push' has no message block: add message.push (push: {title: ..., body: ...})",
            "9: message.audience: channel 'audience' has no message block: add message.audience (audience: {list: ...})",
            "9: message.direct_mail: channel 'direct_mail' has no message block: add message.direct_mail (direct_mail: {creative: ...})",
        ],
    ),
    (
        "tags_not_a_list",
        [
            "6: tags: must be a list, e.g. [a, b], not the string 'promo'",
        ],
    ),
    (
        "template_outside",
        [
            "10: message.email.template: template '../secrets.j2' must be a file name relative to the templates folder, without an absolute path or '..': e.g. template: abandoned_cart.html.j2",
        ],
    ),
    (
        "top_level_list",
        [
            "1: (file): the file holds a list: it must be a mapping of keys, e.g. id: abandoned_cart",
        ],
    ),
    (
        "unknown_channel",
        [
            "6: channels[1]: unknown channel 'fax': use one of email, sms, push, audience, direct_mail",
        ],
    ),
    (
        "unknown_key",
        [
            "6: priorty: unknown key 'priorty' (did you mean 'priority'?): allowed keys are id, name, owner, description, enabled, schedule, start_date, end_date, category, topic, priority, tags, channels, holdout_percent, frequency, expires_after, counts_toward_caps, params, audience, message",
        ],
    ),
    (
        "unlisted_block",
        [
            "11: message.push: message.push is given but 'push' is not in channels: add push to channels or remove this block",
        ],
    ),
    (
        "unquoted_preset",
        [
            "4: (file): invalid YAML: found character '@' that cannot start any token (while scanning for the next token): fix the YAML syntax (check indentation and colons; quote values that start with {, [, @, *, & or % and values that contain ': ')",
        ],
    ),
    (
        "wrong_type_enabled",
        [
            "6: enabled: must be true or false, not the string 'yes': write true or false without quotes",
        ],
    ),
    (
        "wrong_type_name",
        [
            "2: name: must be a string, not the integer 2024: put the value in quotes",
        ],
    ),
    (
        "wrong_type_priority",
        [
            "6: priority: must be an integer, not the string 'high'",
        ],
    ),
    (
        "yaml_bad_indent",
        [
            "8: (file): invalid YAML: expected <block end>, but found '<block sequence start>' (while parsing a block mapping): fix the YAML syntax (check indentation and colons; quote values that start with {, [, @, *, & or % and values that contain ': ')",
        ],
    ),
    (
        "yaml_syntax",
        [
            "6: (file): invalid YAML: mapping values are not allowed here: fix the YAML syntax (check indentation and colons; quote values that start with {, [, @, *, & or % and values that contain ': ')",
        ],
    ),
    (
        # the quoted string runs on until the next quote; YAML notices the problem there
        "yaml_unterminated_quote",
        [
            "11: (file): invalid YAML: expected <block end>, but found '<scalar>' (while parsing a block mapping): fix the YAML syntax (check indentation and colons; quote values that start with {, [, @, *, & or % and values that contain ': ')",
        ],
    ),
    (
        "zero_duration",
        [
            "6: expires_after: bad duration '0h': a duration must be greater than zero; use an integer and a unit m, h, d or w (90m, 24h, 7d, 2w)",
        ],
    ),
    (
        "yaml11_numbers",
        [
            "6: priority: 010 is read by YAML as the octal number 8: write 10 without the leading zero, or put it in quotes ('010') if it is text such as a code",
            "9: params.country: NO is read by YAML as false: write true or false, or put it in quotes ('NO') if it is text (a country code such as NO, say)",
            "10: params.zip: 02134 is read by YAML as the octal number 1116: write 2134 without the leading zero, or put it in quotes ('02134') if it is text such as a code",
            "11: params.at: 12:30 is read by YAML as the base-60 number 750: put it in quotes ('12:30') if it is a time or text",
        ],
    ),
    (
        "set_channels",
        [
            "6: channels: a set (!!set) is not allowed: write a plain list [a, b], mapping or text",
        ],
    ),
    (
        "never_fires",
        [
            "4: schedule: the schedule '0 0 30 2 *' never fires (no such date, e.g. February 30th or April 31st): fix the day or the month",
        ],
    ),
    (
        "random_cron",
        [
            "4: schedule: bad cron expression 'R * * * *': the minute field uses croniter's R or H, which give another time on every evaluation; write fixed values: use a five-field cron expression (minute hour day-of-month month day-of-week, e.g. '0 * * * *') or one of @hourly, @daily, @midnight, @weekly, @monthly, @yearly, @annually",
        ],
    ),
    (
        "unknown_filter",
        [
            "10: message.email.subject: line 1: no filter named 'defualt' (did you mean 'default'?): fix the name (Jinja's filters and tests are listed in its docs)",
            "14: message.sms.text: line 2: no filter named 'nosuch': fix the name (Jinja's filters and tests are listed in its docs)",
        ],
    ),
    (
        "missing_include",
        [
            "10: message.email.subject: line 1: includes 'footer.j2', which is not a file of corpus/templates: create it or fix the name",
        ],
    ),
    (
        "frequency_too_large",
        [
            "7: frequency.limit: 99999999999 is too large: use an integer up to 1,000,000, or remove the cap for no limit",
        ],
    ),
]

POLICY_CASES: list[tuple[str, list[str]]] = [
    (
        "bad_consent",
        [
            "2: channels.sms.consent: unknown consent mode 'opt_maybe': use one of opt_in, opt_out",
        ],
    ),
    (
        "bad_quiet_hours",
        [
            '2: quiet_hours.sms.start: bad time \'25:00\': write a 24-hour time "HH:MM" between "00:00" and "23:59"',
        ],
    ),
    (
        "bad_timezone",
        [
            "1: default_timezone: unknown time zone 'America/New_Yrok': use an IANA name such as 'UTC' or 'America/New_York' (did you mean 'America/New_York'?)",
        ],
    ),
    (
        "cap_bad_period",
        [
            "2: caps[0].period: unknown period 'year': use one of day, week, month",
        ],
    ),
    (
        "cap_bad_window",
        [
            "2: caps[0].window: bad duration '24hours': use an integer and a unit m, h, d or w (90m, 24h, 7d, 2w)",
        ],
    ),
    (
        "cap_missing_name",
        [
            "2: caps[0].name: required key 'name' is missing: add name: daily_total",
        ],
    ),
    (
        "cap_negative_limit",
        [
            "2: caps[0].limit: -1 is not allowed: use an integer 0 or greater (0 blocks every message the cap applies to)",
        ],
    ),
    (
        "cap_neither",
        [
            "2: caps[0]: cap 'daily' has neither window nor period: add one (window: a rolling duration like 24h, or period: day, week or month)",
        ],
    ),
    (
        "cap_reserved_name",
        [
            "2: caps[0].name: the name 'campaign_frequency' is reserved for campaigns' frequency caps: choose another name",
        ],
    ),
    (
        "cap_window_and_period",
        [
            "2: caps[0]: cap 'daily' has both window and period: keep exactly one (window: a rolling duration like 24h, period: day, week or month)",
        ],
    ),
    (
        "cycle_bad_cron",
        [
            "2: cycle.schedule: bad cron expression 'every hour': use a five-field cron expression (minute hour day-of-month month day-of-week, e.g. '0 * * * *') or one of @hourly, @daily, @midnight, @weekly, @monthly, @yearly, @annually",
        ],
    ),
    (
        "cycle_unknown_key",
        [
            "3: cycle.wait: unknown key 'wait' (did you mean 'wait_for'?): allowed keys are schedule, wait_for, max_send_delay",
        ],
    ),
    (
        "duplicate_cap_name",
        [
            "4: caps[2].name: duplicate cap name 'daily_total' (already used by caps[0]): give every cap a unique name",
        ],
    ),
    (
        "empty_quiet_hours",
        [
            "2: quiet_hours.push: start and end are both 08:00, so the quiet hours are empty: set different times or remove the entry",
        ],
    ),
    (
        "global_control_60",
        [
            "1: global_control_percent: 60 is out of range: use a percentage from 0 to 50",
        ],
    ),
    (
        "quiet_hours_unknown_channel",
        [
            "2: quiet_hours.fax: unknown channel 'fax': use one of email, sms, push, audience, direct_mail",
        ],
    ),
    (
        "secret_key",
        [
            "4: channels.email.password: 'password' looks like a secret: secrets do not belong in campaign or policy files: keep them in an Airflow Connection (a channel's `connection:` names it) or in an environment variable, and remove this key",
        ],
    ),
    (
        "top_level_list",
        [
            "1: (file): the file holds a list: it must be a mapping of keys, e.g. global_control_percent: 5",
        ],
    ),
    (
        "unquoted_quiet_hours",
        [
            "3: quiet_hours.sms.start: 21:00 is read by YAML as the base-60 number 1260: put it in quotes ('21:00') if it is a time or text",
        ],
    ),
    (
        "yaml_syntax",
        [
            "3: (file): invalid YAML: expected ',' or '}', but got '<stream end>' (while parsing a flow mapping): fix the YAML syntax (check indentation and colons; quote values that start with {, [, @, *, & or % and values that contain ': ')",
        ],
    ),
    (
        "zero_rate",
        [
            "2: channels.email.rate_per_second: 0 is not allowed: use a number from 0.001 to 1,000,000 (messages per second), or remove the key for no limit",
        ],
    ),
    (
        "localtime_zone",
        [
            "1: default_timezone: unknown time zone 'localtime': use an IANA name such as 'UTC' or 'America/New_York'",
        ],
    ),
    (
        "nan_rate",
        [
            "2: channels.email.rate_per_second: nan is not allowed: use a number from 0.001 to 1,000,000 (messages per second), or remove the key for no limit",
        ],
    ),
    (
        "huge_cap",
        [
            "2: caps[0].limit: 3000000000 is too large: use an integer up to 1,000,000, or remove the cap for no limit",
        ],
    ),
    (
        "reversed_cycle_range",
        [
            "2: cycle.schedule: bad cron expression '50-10 * * * *': the minute range 50-10 runs backwards; write it from low to high, or as two ranges (50-59,0-10)",
        ],
    ),
]


@pytest.mark.parametrize(("stem", "expected"), CAMPAIGN_CASES, ids=[c[0] for c in CAMPAIGN_CASES])
def test_bad_campaign(stem: str, expected: list[str]) -> None:
    path = Path("corpus/campaigns") / f"{stem}.yaml"
    with pytest.raises(SpecValidationError) as info:
        load_campaign(path)
    assert _lines(info.value.issues) == expected
    assert all(issue.file == path for issue in info.value.issues)
    assert str(info.value) == "\n".join(str(issue) for issue in info.value.issues)


@pytest.mark.parametrize(("stem", "expected"), POLICY_CASES, ids=[c[0] for c in POLICY_CASES])
def test_bad_policy(stem: str, expected: list[str]) -> None:
    path = Path("corpus/policies") / f"{stem}.yaml"
    with pytest.raises(SpecValidationError) as info:
        load_policy(path)
    assert _lines(info.value.issues) == expected
    assert all(issue.file == path for issue in info.value.issues)


def test_every_corpus_file_has_a_case() -> None:
    campaigns = sorted(p.stem for p in Path("corpus/campaigns").glob("*.yaml"))
    policies = sorted(p.stem for p in Path("corpus/policies").glob("*.yaml"))
    assert campaigns == sorted(stem for stem, _ in CAMPAIGN_CASES)
    assert policies == sorted(stem for stem, _ in POLICY_CASES)
    assert len(campaigns) + len(policies) >= 30


def test_issue_str_has_file_line_field_message() -> None:
    with pytest.raises(SpecValidationError) as info:
        load_campaign(Path("corpus/campaigns/priority_out_of_range.yaml"))
    assert [str(i) for i in info.value.issues] == [
        "corpus/campaigns/priority_out_of_range.yaml:6: priority: 120 is out of range: use an integer from 0 to 100"
    ]
    with pytest.raises(SpecValidationError) as info:
        load_campaign(Path("corpus/campaigns/empty.yaml"))
    assert str(info.value).startswith("corpus/campaigns/empty.yaml:1: (file): the file is empty")


def test_explicit_templates_dir_is_used() -> None:
    with pytest.raises(SpecValidationError) as info:
        load_campaign(Path("corpus/campaigns/unknown_key.yaml"), templates_dir=Path("valid/templates"))
    fields = [issue.field for issue in info.value.issues]
    assert fields == ["priorty", "message.email.template"]
    assert info.value.issues[1].message.startswith("template 'good.html.j2' not found in valid/templates")


def test_corpus_templates() -> None:
    assert (TEMPLATES / "good.html.j2").is_file()
    assert (TEMPLATES / "broken.html.j2").is_file()
