"""Pydantic models of campaign files (SPEC §1) and the policy file (SPEC §2).

The models validate on their own (``Campaign.model_validate(data)``); the loaders in
:mod:`baton.spec.loader` add the file name and line to every problem.  All models are
frozen and reject unknown keys.  Scalars are strict: ``priority: "80"`` or
``enabled: "yes"`` are errors, not silently converted values.

Two checks need to know where the file lives and are only made when the validation
context provides it (the loaders always do):

- ``{"file_stem": "abandoned_cart"}``: the campaign ``id`` must equal the file stem;
- ``{"templates_dir": Path("dags/templates")}``: an email ``template`` must be a file
  there that parses as Jinja.

Errors raised here are ``PydanticCustomError`` of type ``"baton"`` whose context holds
the ``message`` (what is wrong and what to do), optionally ``at`` (a location below the
failing field, e.g. ``(1, "name")``) and ``template_line`` (the line of a Jinja syntax
error inside the string).
"""

from __future__ import annotations

import difflib
import functools
import re
import zoneinfo
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Self

from jinja2 import TemplateSyntaxError, nodes
from jinja2.sandbox import SandboxedEnvironment
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    ModelWrapValidatorHandler,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import CoreSchema, InitErrorDetails, PydanticCustomError, core_schema

from baton.spec.durations import parse_duration
from baton.spec.enums import DEFAULT_CONSENT, Category, Channel, ConsentMode, IdentifierKind, Period
from baton.spec.schedule import PRESETS, check_schedule

ERROR_TYPE = "baton"
"""The pydantic error type of every check written in this package."""

CAMPAIGN_FREQUENCY = "campaign_frequency"
"""The name of a campaign's own frequency cap (reserved: no policy cap may use it)."""

ID_PATTERN = re.compile(r"[a-z][a-z0-9_]{0,62}")
"""A campaign id (matched whole: ``ID_PATTERN.fullmatch``)."""

MAX_COUNT = 1_000_000
"""The largest cap ``limit`` and ``max_profiles_per_value`` (the store keeps them as 32-bit integers)."""

MIN_RATE, MAX_RATE = 0.001, 1_000_000.0
"""The range of a channel's ``rate_per_second`` (one message per 1,000 s up to a million a second)."""

MAX_TEMPLATE_BYTES = 1024 * 1024
"""The largest email template file read (1 MiB)."""

MAX_TAG_LENGTH = 100
"""The longest campaign tag (Airflow's limit for DAG tags)."""

MAX_LABEL_LENGTH = 200
"""The longest campaign ``name`` and ``owner`` (shown on the DAG; Airflow stores at most 2000 characters)."""

_JINJA = SandboxedEnvironment()

_SECRET_KEY = re.compile(
    r"(^|[_\-.])(password|passwd|pwd|secret|token|api_?key|apikey|access_?key|private_?key|credentials?)($|[_\-.])",
    re.IGNORECASE,
)


def looks_like_secret(key: object) -> bool:
    """Whether a YAML key looks like it holds a secret (password, token, api_key, secret, …)."""
    return isinstance(key, str) and _SECRET_KEY.search(key) is not None


SECRET_HOW = (
    "secrets do not belong in campaign or policy files: keep them in an Airflow Connection "
    "(a channel's `connection:` names it) or in an environment variable, and remove this key"
)


def fail(
    message: str, *, at: tuple[str | int, ...] = (), template_line: int | None = None
) -> PydanticCustomError:
    """A validation error with Baton's *message*, optionally *at* a location below the current field."""
    context: dict[str, Any] = {"message": message}
    if at:
        context["at"] = at
    if template_line is not None:
        context["template_line"] = template_line
    return PydanticCustomError(ERROR_TYPE, "{message}", context)


def number_text(value: float) -> str:
    """*value* for a message: ``1.5``, ``120``, ``1e+400`` as ``inf``, an integer of 400 digits cut short."""
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            text = str(value)
        except ValueError:  # more digits than Python converts
            return "an integer of more than 4300 digits"
        return text if len(text) <= 20 else f"{text[:12]}... ({len(text.lstrip('-'))} digits)"
    return f"{value:g}"


def _error(loc: tuple[str | int, ...], value: Any, message: str) -> InitErrorDetails:
    return InitErrorDetails(type=fail(message), loc=loc, input=value)


def _reraised(exc: ValidationError) -> list[InitErrorDetails]:
    """The errors of *exc* in a form that ``ValidationError.from_exception_data`` accepts again."""
    details: list[InitErrorDetails] = []
    for err in exc.errors(include_url=False):
        ctx = err.get("ctx")
        details.append(
            InitErrorDetails(
                type=PydanticCustomError(err["type"], err["msg"], ctx),
                loc=err["loc"],
                input=err.get("input"),
            )
        )
    return details


# --------------------------------------------------------------------------- scalar types


def _non_empty(value: str) -> str:
    if not value.strip():
        raise fail("must not be empty: write a value or remove the key")
    return value


def _jinja_message(exc: TemplateSyntaxError) -> str:
    return (exc.message or "invalid syntax").strip().rstrip(".")


_TOO_DEEP = "the template nests too deeply (brackets or blocks inside each other): simplify it"


def _unknown_name(tree: nodes.Template) -> tuple[str, int] | None:
    """The first filter or test *tree* uses that Jinja does not have (``| defualt``), as a message.

    Jinja reports an unknown filter only when the template compiles, and one inside an ``{% if %}``
    only when that branch renders — message by message at send time."""
    for node, kind, known in ((nodes.Filter, "filter", _JINJA.filters), (nodes.Test, "test", _JINJA.tests)):
        for use in tree.find_all(node):
            name = getattr(use, "name", None)
            if isinstance(name, str) and name not in known:
                close = difflib.get_close_matches(name, sorted(known), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                return f"no {kind} named {name!r}{hint}", use.lineno
    return None


def template_includes(tree: nodes.Template) -> list[tuple[str, int]]:
    """The files *tree* includes, extends or imports by a constant name, with their lines."""
    found: list[tuple[str, int]] = []
    for ref in tree.find_all((nodes.Include, nodes.Extends, nodes.Import, nodes.FromImport)):
        target = getattr(ref, "template", None)
        if isinstance(target, nodes.Const) and isinstance(target.value, str):
            found.append((target.value, ref.lineno))
    return found


def _check_tree(tree: nodes.Template, templates_dir: Path | None, seen: set[str], where: str) -> None:
    """Fail when *tree* (or a file it includes, recursively) uses an unknown filter or test, or includes a
    file the templates folder does not have; *where* names the template in the message."""
    inline = not where  # an inline field: the line in the template maps onto the file's line
    problem = _unknown_name(tree)
    if problem is not None:
        message, line = problem
        raise fail(
            f"{where}line {line}: {message}: fix the name (Jinja's filters and tests are listed in its docs)",
            template_line=line if inline else None,
        )
    if templates_dir is None:
        return
    for name, line in template_includes(tree):
        if name in seen:
            continue
        seen.add(name)
        file = templates_dir / name
        if ".." in PurePosixPath(name).parts or not file.is_file():
            raise fail(
                f"{where}line {line}: includes {name!r}, which is not a file of {templates_dir}: "
                "create it or fix the name",
                template_line=line if inline else None,
            )
        try:
            included = _JINJA.parse(file.read_text(encoding="utf-8"), name=name)
        except (OSError, UnicodeDecodeError, TemplateSyntaxError) as exc:
            raise fail(f"{where}line {line}: the included {name!r} does not load ({exc}): fix it") from None
        _check_tree(included, templates_dir, seen, f"{where}line {line}: included {name!r}, ")


def _templates_dir(info: ValidationInfo | None) -> Path | None:
    context = info.context if info is not None and isinstance(info.context, dict) else {}
    folder = context.get("templates_dir")
    return folder if isinstance(folder, Path) else None


def _jinja(value: str, info: ValidationInfo) -> str:
    try:
        tree = _JINJA.parse(value)
        _check_tree(tree, _templates_dir(info), set(), "")
    except RecursionError:
        raise fail(_TOO_DEEP) from None
    except TemplateSyntaxError as exc:
        where = f" (line {exc.lineno} of the template)" if "\n" in value.strip("\n") else ""
        raise fail(
            f"Jinja syntax error: {_jinja_message(exc)}{where}: fix the template "
            "(expressions are written {{ name }}, statements {% if ... %} ... {% endif %})",
            template_line=exc.lineno,
        ) from None
    return value


def _duration(value: Any) -> Any:
    if isinstance(value, timedelta):
        if value <= timedelta(0):
            raise fail(f"bad duration {value}: a duration must be greater than zero")
        return value
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise fail(str(exc)) from None


def _utc_datetime(value: Any) -> Any:
    how = "write a date (2026-01-01) or a date and time (2026-01-01T08:00:00Z; without a zone it is UTC)"
    if isinstance(value, str):
        text = value.strip()
        try:
            value = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text)
        except ValueError:
            raise fail(f"bad date {value!r}: {how}") from None
    try:
        if isinstance(value, datetime):
            return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        if isinstance(value, date):
            return datetime(value.year, value.month, value.day, tzinfo=UTC)
    except (OverflowError, ValueError):  # 0001-01-01T00:00:00+01:00 is before the first UTC time Python has
        raise fail(
            f"date {value.isoformat()} is out of range: write a date between 0001-01-02 and 9999-12-30"
        ) from None
    raise fail(f"bad date {value!r}: {how}")


_CLOCK = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")


def _clock_time(value: Any) -> Any:
    if isinstance(value, time):
        return value
    if isinstance(value, str):
        match = _CLOCK.match(value.strip())
        if match:
            return time(int(match.group(1)), int(match.group(2)))
        raise fail(f'bad time {value!r}: write a 24-hour time "HH:MM" between "00:00" and "23:59"')
    if isinstance(value, int) and not isinstance(value, bool):
        raise fail(
            f'bad time {value!r}: write the time in quotes, e.g. "21:00" '
            "(YAML reads an unquoted 21:00 as the number 1260)"
        )
    raise fail(f'bad time {value!r}: write a 24-hour time in quotes, e.g. "21:00"')


def _schedule(value: str) -> str:
    try:
        check_schedule(value)
    except ValueError as exc:
        raise fail(str(exc)) from None
    return value


_NOT_ZONES = frozenset({"localtime", "Factory", "posixrules"})
"""Files of the zoneinfo folder that are no IANA zone: the host's own zone, a placeholder, a rule file
(PostgreSQL knows none of them, and ``localtime`` would mean whatever the worker's host is set to)."""


@functools.cache
def iana_zones() -> frozenset[str]:
    """The IANA time zone names (what PostgreSQL's ``pg_timezone_names`` holds too)."""
    return frozenset(zoneinfo.available_timezones()) - _NOT_ZONES


def _timezone(value: str) -> str:
    if value not in iana_zones():
        close = difflib.get_close_matches(value, sorted(iana_zones()), n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise fail(
            f"unknown time zone {value!r}: use an IANA name such as 'UTC' or 'America/New_York'{hint}"
        ) from None
    return value


@dataclass(frozen=True)
class Shape:
    """How a value is written, in the words of the reference docs (``python -m baton_dev.docs``).

    Documentation only: validation ignores it; the docs show ``text`` as the field's type.
    """

    text: str


@dataclass(frozen=True)
class Between:
    """A check that a number lies from ``low`` to ``high`` (inclusive); the docs show the range from it."""

    low: float
    high: float
    kind: str

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        """Validate as *source*, then check the range."""
        return core_schema.no_info_after_validator_function(self._check, handler(source))

    def _check(self, value: float) -> float:
        if not self.low <= value <= self.high:
            raise fail(
                f"{number_text(value)} is out of range: use {self.kind} from {self.low:g} to {self.high:g}"
            )
        return value


def _between(low: float, high: float, kind: str) -> Between:
    return Between(low, high, kind)


def _not_negative(value: int) -> int:
    if value < 0:
        raise fail(
            f"{number_text(value)} is not allowed: use an integer 0 or greater (0 blocks every message the cap applies to)"
        )
    if value > MAX_COUNT:
        raise fail(
            f"{number_text(value)} is too large: use an integer up to {MAX_COUNT:,}, or remove the cap for no limit"
        )
    return value


def _rate(value: float) -> float:
    if not MIN_RATE <= value <= MAX_RATE:  # also NaN and infinity
        raise fail(
            f"{number_text(value)} is not allowed: use a number from {MIN_RATE:g} to {MAX_RATE:,.0f} "
            "(messages per second), or remove the key for no limit"
        )
    return value


NonEmptyStr = Annotated[StrictStr, AfterValidator(_non_empty), Shape("text (not empty)")]
JinjaStr = Annotated[
    StrictStr, AfterValidator(_non_empty), AfterValidator(_jinja), Shape("Jinja template (text)")
]
Duration = Annotated[
    timedelta,
    BeforeValidator(_duration),
    Shape("duration: an integer and a unit `m`, `h`, `d` or `w` (`90m`, `24h`, `7d`, `2w`)"),
]
UtcDatetime = Annotated[
    datetime,
    BeforeValidator(_utc_datetime),
    Shape("date (`2026-01-01`, midnight UTC) or date and time (`2026-01-01T08:00:00Z`; no zone: UTC)"),
]
ClockTime = Annotated[time, BeforeValidator(_clock_time), Shape('24-hour time in quotes, `"HH:MM"`')]
Schedule = Annotated[
    StrictStr,
    AfterValidator(_schedule),
    Shape(f"five-field cron expression (in UTC) or one of {', '.join(f'`{p}`' for p in PRESETS)}"),
]
Percent = Annotated[StrictFloat, _between(0, 50, "a percentage")]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------- caps


class Cap(_Model):
    """A frequency cap: at most ``limit`` counting messages per ``window`` (rolling) or ``period`` (calendar).

    Exactly one of ``window`` and ``period`` is set.  ``channel`` and ``tag`` narrow the
    messages the cap applies to.  A campaign's ``frequency`` is a cap named
    ``campaign_frequency`` (see :data:`CAMPAIGN_FREQUENCY`).
    """

    name: NonEmptyStr = Field(
        description="Unique name of the cap; it is the `reason` of a `capped` outcome. "
        f"`{CAMPAIGN_FREQUENCY}` is reserved for campaigns' own `frequency` caps."
    )
    limit: Annotated[StrictInt, AfterValidator(_not_negative), Shape(f"integer from 0 to {MAX_COUNT:,}")] = (
        Field(
            description="How many counting messages a person may have in the window or period; "
            "0 blocks every message the cap applies to."
        )
    )
    window: Duration | None = Field(
        default=None,
        description="A rolling window: the cap counts the person's messages decided in `(T − window, T]`, "
        "T being the cycle's decision time. Give exactly one of `window` and `period`.",
    )
    period: Period | None = Field(
        default=None,
        description="A calendar period in the person's local time: the `day`, `week` (weeks start on Monday) "
        "or `month` that contains the decision time T; the cap counts the person's messages decided from "
        "its start up to T. Give exactly one of `window` and `period`.",
    )
    channel: Channel | None = Field(
        default=None,
        description="Only messages on this channel count toward the cap and are limited by it "
        "(none: every channel).",
    )
    tag: NonEmptyStr | None = Field(
        default=None,
        description="Only messages of campaigns that have this tag in their `tags` count toward the cap "
        "and are limited by it (none: every campaign).",
    )

    @model_validator(mode="after")
    def _window_or_period(self) -> Self:
        label = "frequency" if self.name == CAMPAIGN_FREQUENCY else f"cap {self.name!r}"
        if self.window is not None and self.period is not None:
            raise fail(
                f"{label} has both window and period: keep exactly one "
                "(window: a rolling duration like 24h, period: day, week or month)"
            )
        if self.window is None and self.period is None:
            raise fail(
                f"{label} has neither window nor period: add one "
                "(window: a rolling duration like 24h, or period: day, week or month)"
            )
        return self


# --------------------------------------------------------------------------- campaign


class Audience(_Model):
    """The audience query: SQL over the marketing store, a Jinja template whose expressions become bound parameters."""

    sql: JinjaStr = Field(
        description="The query, run against the marketing store once per campaign run; "
        "it returns one row per candidate (columns below)."
    )


def _template_name(value: str, info: ValidationInfo) -> str:
    pure = PurePosixPath(value)
    if pure.is_absolute() or "\\" in value or ".." in pure.parts or re.match(r"^[A-Za-z]:", value):
        raise fail(
            f"template {value!r} must be a file name relative to the templates folder, "
            "without an absolute path or '..': e.g. template: abandoned_cart.html.j2"
        )
    templates_dir = _templates_dir(info)
    if templates_dir is None:
        return value
    file = templates_dir / value
    try:
        found = file.is_file()
        size = file.stat().st_size if found else 0
    except OSError as exc:  # a name too long for the file system, ...
        raise fail(
            f"template {value!r} cannot be looked up ({exc.strerror or exc}): use a short file name, "
            "e.g. template: abandoned_cart.html.j2"
        ) from None
    if found and size > MAX_TEMPLATE_BYTES:
        raise fail(
            f"template {value!r} is larger than {MAX_TEMPLATE_BYTES // 1024 // 1024} MiB: "
            "an email template is a few kilobytes; check that it is the right file"
        )
    if not found:
        known = (
            sorted(p.relative_to(templates_dir).as_posix() for p in templates_dir.rglob("*") if p.is_file())
            if templates_dir.is_dir()
            else []
        )
        close = difflib.get_close_matches(value, known, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise fail(f"template {value!r} not found in {templates_dir}: create the file or fix the name{hint}")
    try:
        source = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise fail(f"template {value!r} cannot be read ({exc}): make it a readable UTF-8 file") from None
    try:
        _check_tree(_JINJA.parse(source, name=value), templates_dir, {value}, f"template {value!r}, ")
    except RecursionError:
        raise fail(f"template {value!r}: {_TOO_DEEP}") from None
    except TemplateSyntaxError as exc:
        raise fail(
            f"template {value!r} does not parse: {_jinja_message(exc)} (line {exc.lineno} of {file}): fix the template"
        ) from None
    return value


TemplateName = Annotated[
    StrictStr,
    AfterValidator(_non_empty),
    AfterValidator(_template_name),
    Shape("file name relative to `dags/templates/`"),
]


class EmailMessage(_Model):
    """An email: a ``subject`` and exactly one of ``html`` (inline) or ``template`` (a file), optional ``text``."""

    subject: JinjaStr = Field(description="The subject line.")
    html: JinjaStr | None = Field(
        default=None, description="The HTML body, written inline. Give exactly one of `html` and `template`."
    )
    template: TemplateName | None = Field(
        default=None,
        description="The HTML body as a template file under `dags/templates/` (e.g. `abandoned_cart.html.j2`, "
        "no absolute path, no `..`); the file must exist and parse as Jinja. "
        "Give exactly one of `html` and `template`.",
    )
    text: JinjaStr | None = Field(
        default=None, description="An optional plain-text part, sent alongside the HTML."
    )

    @model_validator(mode="after")
    def _one_body(self) -> Self:
        if self.html is not None and self.template is not None:
            raise fail(
                "has both html and template: keep exactly one (html: inline Jinja, template: a file name)"
            )
        if self.html is None and self.template is None:
            raise fail("has no body: add html (inline Jinja) or template (a file in the templates folder)")
        return self


class SmsMessage(_Model):
    """A text message."""

    text: JinjaStr = Field(description="The text of the message.")


class PushMessage(_Model):
    """A push notification: ``title``, ``body`` and an optional ``url`` to open."""

    title: JinjaStr = Field(description="The notification's title.")
    body: JinjaStr = Field(description="The notification's text.")
    url: JinjaStr | None = Field(default=None, description="An optional link the notification opens.")


class AudienceMessage(_Model):
    """An ad-platform audience membership: ``list`` is the audience's name."""

    list: JinjaStr = Field(description="The name of the ad-platform audience the person is added to.")


class DirectMailMessage(_Model):
    """A printed piece: ``creative`` is the print piece's code."""

    creative: JinjaStr = Field(description="The code of the print piece to send.")


MessageBlock = EmailMessage | SmsMessage | PushMessage | AudienceMessage | DirectMailMessage
"""Any one channel's message block."""

_BLOCK_EXAMPLE: dict[Channel, str] = {
    Channel.email: "{subject: ..., template: ...}",
    Channel.sms: "{text: ...}",
    Channel.push: "{title: ..., body: ...}",
    Channel.audience: "{list: ...}",
    Channel.direct_mail: "{creative: ...}",
}


class MessageBlocks(_Model):
    """One message block per channel of the campaign, and none for other channels."""

    email: EmailMessage | None = Field(
        default=None, description="The email; required when `channels` lists `email`, not allowed otherwise."
    )
    sms: SmsMessage | None = Field(
        default=None,
        description="The text message; required when `channels` lists `sms`, not allowed otherwise.",
    )
    push: PushMessage | None = Field(
        default=None,
        description="The push notification; required when `channels` lists `push`, not allowed otherwise.",
    )
    audience: AudienceMessage | None = Field(
        default=None,
        description="The ad-platform audience; required when `channels` lists `audience`, not allowed otherwise.",
    )
    direct_mail: DirectMailMessage | None = Field(
        default=None,
        description="The printed piece; required when `channels` lists `direct_mail`, not allowed otherwise.",
    )

    def block(self, channel: Channel) -> MessageBlock | None:
        """The block of *channel*, or None."""
        result: MessageBlock | None = getattr(self, Channel(channel).value)
        return result


def _channel_names(values: Any) -> list[str]:
    if not isinstance(values, list | tuple):
        return []
    known = {c.value for c in Channel}
    return [str(v) for v in values if isinstance(v, str) and v in known]


def _block_names(message: Any) -> set[str] | None:
    if isinstance(message, MessageBlocks):
        return {c.value for c in Channel if message.block(c) is not None}
    if isinstance(message, dict):
        return {str(k) for k, v in message.items() if v is not None}
    return None


class Campaign(_Model):
    """One campaign file (SPEC §1).

    Defaults: ``enabled`` true, ``category`` marketing, ``topic`` the ``id``, ``priority``
    50 (the middle of 0..100; SPEC leaves it open), no ``tags``, ``holdout_percent`` 0,
    no ``frequency`` cap, ``expires_after`` 24h, ``counts_toward_caps`` true for marketing
    and false for transactional campaigns, empty ``params``.  ``start_date`` and
    ``end_date`` are UTC datetimes (a date means its midnight UTC).
    """

    id: Annotated[StrictStr, Shape(f"identifier matching `^{ID_PATTERN.pattern}$`")] = Field(
        description="The campaign's identifier: lowercase letters, digits and `_`, starting with a letter, "
        "at most 63 characters. It must equal the file name without `.yaml` "
        "(`dags/campaigns/abandoned_cart.yaml` has `id: abandoned_cart`)."
    )
    name: NonEmptyStr = Field(description="The campaign's name, for people.")
    owner: NonEmptyStr = Field(description="Who owns the campaign (a team or a person); shown on its DAG.")
    description: StrictStr | None = Field(
        default=None, description="What the campaign does, in a few sentences."
    )
    enabled: StrictBool = Field(
        default=True,
        description="`false` switches the campaign off: it gets no DAG (so no runs) and arbitration "
        "cycles do not wait for it.",
    )
    schedule: Schedule = Field(
        description="When the audience query runs. Each run covers its data interval `[start, end)` and feeds "
        "the first arbitration cycle whose decision time is at or after the interval's end."
    )
    start_date: UtcDatetime = Field(description="When the schedule starts.")
    end_date: UtcDatetime | None = Field(
        default=None, description="When the schedule ends (after `start_date`); none: it does not end."
    )
    category: Category = Field(
        default=Category.marketing,
        description="`marketing` messages are subject to consent, quiet hours, control groups and caps; "
        "`transactional` messages (an order confirmation) skip all four.",
    )
    topic: NonEmptyStr = Field(
        default="",
        description="The subscription topic checked against consent: an opt-out of the channel "
        "for this topic blocks the campaign's messages there.",
        json_schema_extra={"doc_default": "the campaign's `id`"},
    )
    priority: Annotated[StrictInt, _between(0, 100, "an integer")] = Field(
        default=50,
        description="Rank among the campaigns that compete for one person: higher wins "
        "(ties: the higher score, then the campaign id in byte order).",
    )
    tags: tuple[NonEmptyStr, ...] = Field(
        default=(),
        description="Free labels; a policy cap with a `tag` applies only to campaigns that have it.",
    )
    channels: tuple[Channel, ...] = Field(
        description="The channels the campaign may use, in order of preference, each at most once (1 to 5). "
        "Each needs its block under `message`. A person gets the message on the first channel that passes "
        "the checks for them; the others are `channel_alternative`."
    )
    holdout_percent: Percent = Field(
        default=0.0,
        description="The campaign's control group: this percentage of people never gets the campaign's "
        "messages (outcome `holdout_campaign`), as the baseline of measurement. Must be 0 for a "
        "transactional campaign.",
    )
    frequency: Cap | None = Field(
        default=None,
        description="The campaign's own cap, `{limit: N, window: DURATION}` or `{limit: N, period: PERIOD}` "
        f"(no other keys): at most N of its messages per person on any channel. It is the cap named "
        f"`{CAMPAIGN_FREQUENCY}`, checked after the policy's caps, and counts every message of the "
        "campaign, even when the campaign does not count toward caps. Not allowed for a transactional "
        "campaign.",
    )
    expires_after: Duration = Field(
        default=timedelta(hours=24),
        description="How long a candidate stays valid after the decision time of the cycle it feeds "
        "(its `expires_at`).",
    )
    counts_toward_caps: StrictBool = Field(
        default=True,
        description="Whether the campaign's messages count toward the policy's caps (use up their room). "
        "Its own `frequency` cap counts them either way.",
        json_schema_extra={"doc_default": "`true` for marketing, `false` for transactional"},
    )
    params: dict[str, Any] = Field(
        default_factory=dict,
        description="Constants for the audience query, used there as `{{ params.<name> }}`. A key that "
        "looks like a secret (`password`, `token`, `api_key`, …) is refused: keep secrets in Airflow "
        "Connections or environment variables.",
    )
    audience: Audience = Field(description="Who gets a candidate message: the audience query.")
    message: MessageBlocks = Field(
        description="The message, one block per channel in `channels` (and none for other channels)."
    )

    @field_validator("id")
    @classmethod
    def _id(cls, value: str, info: ValidationInfo) -> str:
        if not ID_PATTERN.fullmatch(value):
            raise fail(
                f"id {value!r} is not allowed: use 1 to 63 characters, lowercase letters, digits and _, "
                "starting with a letter (e.g. abandoned_cart)"
            )
        context = info.context if isinstance(info.context, dict) else {}
        stem = context.get("file_stem")
        if isinstance(stem, str) and value != stem:
            raise fail(
                f"id {value!r} must equal the file name stem {stem!r}: rename the file or change the id"
            )
        return value

    @field_validator("name", "owner")
    @classmethod
    def _label_length(cls, value: str, info: ValidationInfo) -> str:
        if len(value) > MAX_LABEL_LENGTH:
            raise fail(
                f"{info.field_name} is {len(value)} characters long, more than {MAX_LABEL_LENGTH}: "
                "shorten it (put details in description)"
            )
        return value

    @field_validator("tags")
    @classmethod
    def _tag_length(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for i, tag in enumerate(value):
            if len(tag) > MAX_TAG_LENGTH:
                raise fail(
                    f"tag {tag[:20]!r}... is {len(tag)} characters long, more than {MAX_TAG_LENGTH}: "
                    "use a short label",
                    at=(i,),
                )
        return value

    @field_validator("channels")
    @classmethod
    def _channels(cls, value: tuple[Channel, ...]) -> tuple[Channel, ...]:
        every = ", ".join(c.value for c in Channel)
        if not value:
            raise fail(f"no channel given: list 1 to 5 of {every} in order of preference, e.g. [email]")
        if len(value) > len(Channel):
            raise fail(
                f"{len(value)} channels given, at most {len(Channel)}: list each of {every} at most once"
            )
        seen: set[Channel] = set()
        for i, channel in enumerate(value):
            if channel in seen:
                raise fail(f"channel {channel.value!r} is listed twice: list each channel once", at=(i,))
            seen.add(channel)
        return value

    @field_validator("frequency", mode="before")
    @classmethod
    def _frequency(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        allowed = ("limit", "window", "period")
        for key in value:
            if key in allowed:
                continue
            if looks_like_secret(key):
                raise fail(f"{key!r} looks like a secret: {SECRET_HOW}", at=(key,))
            if key in ("name", "channel", "tag"):
                raise fail(
                    f"{key!r} is not allowed in frequency: a campaign's frequency cap is always named "
                    f"{CAMPAIGN_FREQUENCY!r} and counts this campaign's messages on every channel; "
                    "keep only limit and window or period",
                    at=(key,),
                )
            close = difflib.get_close_matches(str(key), allowed, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise fail(f"unknown key {key!r}: allowed keys are {', '.join(allowed)}{hint}", at=(key,))
        return {**value, "name": CAMPAIGN_FREQUENCY}

    @field_validator("params")
    @classmethod
    def _params(cls, value: dict[str, Any]) -> dict[str, Any]:
        def walk(node: Any, at: tuple[str | int, ...]) -> None:
            if isinstance(node, dict):
                for key, child in node.items():
                    if looks_like_secret(key):
                        raise fail(f"{key!r} looks like a secret: {SECRET_HOW}", at=(*at, key))
                    walk(child, (*at, key))
            elif isinstance(node, list):
                for i, child in enumerate(node):
                    walk(child, (*at, i))

        walk(value, ())
        return value

    @model_validator(mode="wrap")
    @classmethod
    def _whole(cls, data: Any, handler: ModelWrapValidatorHandler[Campaign]) -> Campaign:
        """Fill the defaults that depend on other keys, and check keys against each other.

        Cross-key problems are reported together with the field errors, so that one run of
        ``baton validate`` shows every problem of the file.
        """
        if not isinstance(data, dict):
            return handler(data)
        data = dict(data)
        if "topic" not in data and isinstance(data.get("id"), str):
            data["topic"] = data["id"]
        if "counts_toward_caps" not in data:
            data["counts_toward_caps"] = data.get("category") != Category.transactional.value
        cross = cls._cross_checks(data)
        try:
            campaign = handler(data)
        except ValidationError as exc:
            raise ValidationError.from_exception_data(exc.title, [*_reraised(exc), *cross]) from None
        if campaign.end_date is not None and campaign.end_date <= campaign.start_date:
            cross.append(
                _error(
                    ("end_date",),
                    data.get("end_date"),
                    f"end_date {campaign.end_date.isoformat()} is not after start_date "
                    f"{campaign.start_date.isoformat()}: set a later end_date or remove it",
                )
            )
        if cross:
            raise ValidationError.from_exception_data(cls.__name__, cross)
        return campaign

    @staticmethod
    def _cross_checks(data: dict[str, Any]) -> list[InitErrorDetails]:
        errors: list[InitErrorDetails] = []
        listed = _channel_names(data.get("channels"))
        blocks = _block_names(data.get("message"))
        if blocks is not None and listed:
            for name in listed:
                if name not in blocks:
                    example = _BLOCK_EXAMPLE[Channel(name)]
                    errors.append(
                        _error(
                            ("message", name),
                            data.get("message"),
                            f"channel {name!r} has no message block: add message.{name} ({name}: {example})",
                        )
                    )
            for name in sorted(
                blocks & {c.value for c in Channel}, key=lambda n: list(Channel).index(Channel(n))
            ):
                if name not in listed:
                    errors.append(
                        _error(
                            ("message", name),
                            data.get("message"),
                            f"message.{name} is given but {name!r} is not in channels: "
                            f"add {name} to channels or remove this block",
                        )
                    )
        transactional = data.get("category") == Category.transactional.value
        holdout = data.get("holdout_percent")
        if (
            transactional
            and isinstance(holdout, int | float)
            and not isinstance(holdout, bool)
            and holdout > 0
        ):
            errors.append(
                _error(
                    ("holdout_percent",),
                    holdout,
                    "transactional campaigns have no holdout: set holdout_percent to 0 "
                    "or make the campaign category marketing",
                )
            )
        if transactional and data.get("frequency") is not None:
            errors.append(
                _error(
                    ("frequency",),
                    data.get("frequency"),
                    "transactional campaigns are never capped: remove frequency or make the campaign category marketing",
                )
            )
        return errors


# --------------------------------------------------------------------------- policy


class CycleSettings(_Model):
    """The arbitration cycle: its cron ``schedule``, how long it ``wait_for`` late campaigns, and ``max_send_delay``."""

    schedule: Schedule = Field(
        default="0 * * * *",
        description="When the arbitration DAG decides. A cycle's decision time T is its run's data interval "
        "end, never the wall clock, so a rerun or a backfill decides the same way.",
    )
    wait_for: Duration = Field(
        default=timedelta(minutes=30),
        description="How long a cycle waits for the campaigns expected to feed it; then it decides with the "
        "batches that are ready and records the late campaigns (their batches go to the next cycle).",
    )
    max_send_delay: Duration = Field(
        default=timedelta(hours=2),
        description="A message whose cycle's decision time is older than this when delivery reaches it is "
        "marked `expired` instead of sent (backfills recompute history, they do not spam), unless the "
        "run was started with `allow_late_send: true`.",
    )


class QuietHours(_Model):
    """Local times between which a channel is quiet; ``start > end`` wraps midnight."""

    start: ClockTime = Field(description="When the quiet hours start, in the person's local time.")
    end: ClockTime = Field(
        description="When they end: quiet while `start` ≤ local time < `end`. When `start` is later than "
        '`end` they wrap midnight: `{start: "21:00", end: "09:00"}` is quiet from 21:00 until 09:00 the next '
        "morning. `start` and `end` must differ."
    )

    @model_validator(mode="after")
    def _not_empty(self) -> Self:
        if self.start == self.end:
            raise fail(
                f"start and end are both {self.start:%H:%M}, so the quiet hours are empty: "
                "set different times or remove the entry"
            )
        return self


class ChannelSettings(_Model):
    """Consent mode, Airflow connection id and optional send rate of one channel."""

    consent: ConsentMode = Field(
        description="`opt_out`: marketing may be sent unless the person opted out; `opt_in`: only with an "
        "opt-in for the channel (or for the channel and the campaign's topic). An opt-out always wins.",
        json_schema_extra={
            "doc_default": ", ".join(f"`{mode.value}` for {ch.value}" for ch, mode in DEFAULT_CONSENT.items())
        },
    )
    connection: NonEmptyStr = Field(
        description="The Airflow Connection holding the channel's delivery settings and credentials.",
        json_schema_extra={"doc_default": "`baton_<channel>`, e.g. `baton_email`"},
    )
    rate_per_second: (
        Annotated[StrictFloat, AfterValidator(_rate), Shape(f"number from {MIN_RATE:g} to {MAX_RATE:,.0f}")]
        | None
    ) = Field(
        default=None,
        description="At most this many messages per second on the channel, across all delivery workers "
        "(none: no limit).",
    )


class IdentityPolicy(_Model):
    """How profiles are linked into persons (SPEC §6): which identifier kinds link, how widely shared a
    value may be before it links no one, and values that never identify anyone."""

    link_on: tuple[IdentifierKind, ...] = Field(
        default=(IdentifierKind.email, IdentifierKind.phone, IdentifierKind.login, IdentifierKind.device),
        description="The identifier kinds whose shared values link profiles into one person. Values of the "
        "other kinds are kept but link no one. An empty list links no one: every profile is a person.",
    )
    max_profiles_per_value: Annotated[StrictInt, Shape(f"integer from 1 to {MAX_COUNT:,}")] = Field(
        default=10,
        description="A value held by more than this many profiles (at the decision time) links no one: a "
        "shop's front-desk address or a family tablet is not a person.",
    )
    blocked_values: tuple[NonEmptyStr, ...] = Field(
        default=(),
        description="Values that identify no one, in addition to the built-in ones (empty, only `0 - . x X`, "
        "`null`, `none`, `unknown`, `anonymous`, `undefined`, `n/a`). Each is normalised as the identifier's "
        "kind and compared case-insensitively, e.g. `test@example.com` or `+1 555 000 0000`.",
    )

    @field_validator("link_on")
    @classmethod
    def _unique_kinds(cls, value: tuple[IdentifierKind, ...]) -> tuple[IdentifierKind, ...]:
        first: dict[IdentifierKind, int] = {}
        for i, kind in enumerate(value):
            if kind in first:
                raise fail(
                    f"{kind.value!r} is listed twice (already link_on[{first[kind]}]): list each kind once",
                    at=(i,),
                )
            first[kind] = i
        return value

    @field_validator("max_profiles_per_value")
    @classmethod
    def _at_least_one(cls, value: int) -> int:
        if value < 1:
            raise fail(
                "a value must be allowed on at least 1 profile: use an integer 1 or greater "
                "(1: no value links anyone; the default is 10)"
            )
        if value > MAX_COUNT:
            raise fail(
                f"{number_text(value)} is too large: use an integer from 1 to {MAX_COUNT:,} (the default is 10)"
            )
        return value


class Policy(_Model):
    """The deployment's policy (SPEC §2); every key is optional and ``Policy()`` is all defaults."""

    cycle: CycleSettings = Field(
        default=CycleSettings(), description="The arbitration cycle: when it decides and how long it waits."
    )
    default_timezone: Annotated[
        StrictStr, AfterValidator(_timezone), Shape("IANA time zone name (`America/New_York`)")
    ] = Field(
        default="UTC",
        description="The local time zone of people without a valid IANA time zone of their own "
        "(for quiet hours and calendar periods).",
    )
    global_control_percent: Percent = Field(
        default=0.0,
        description="The global control group: this percentage of people gets no marketing at all "
        "(outcome `holdout_global`), as the baseline of measurement.",
    )
    holdout_salt: NonEmptyStr = Field(
        default="baton",
        description="Mixed into the hash that picks the global control group: changing it puts other "
        "people in it. (Campaign holdouts hash the campaign id instead.)",
    )
    caps: tuple[Cap, ...] = Field(
        default=(),
        description="Frequency caps. All apply together, checked in file order; the first without room "
        "is the `reason` of a `capped` outcome.",
    )
    quiet_hours: dict[Channel, QuietHours] = Field(
        default_factory=dict,
        description="Per channel, the hours of the person's local time in which no marketing message is "
        "sent: a message decided then waits until they end (or, if it would expire before, is not sent: "
        "`quiet_hours`).",
    )
    channels: dict[Channel, ChannelSettings] = Field(
        default_factory=dict,
        description="Per channel, the consent mode and delivery settings. A channel left out, or a key "
        "left out, takes the defaults below.",
    )
    identity: IdentityPolicy = Field(
        default=IdentityPolicy(),
        description="How profiles are linked into persons (SPEC §6); caps, control groups and the ranking "
        "are per person.",
    )
    topics: tuple[NonEmptyStr, ...] | None = Field(
        default=None,
        description="The deployment's subscription topics, each listed once. When given, a marketing "
        "campaign whose `topic` (or, without one, whose `id`) is not listed is invalid: a misspelt topic "
        "would otherwise bypass every opt-out of the real one. Transactional campaigns are not checked.",
        json_schema_extra={"doc_default": "none: topics are not checked"},
    )

    def channel(self, ch: Channel) -> ChannelSettings:
        """The settings of *ch*: as configured, else consent default, connection ``baton_<channel>``, no rate limit."""
        ch = Channel(ch)
        configured = self.channels.get(ch)
        if configured is not None:
            return configured
        return ChannelSettings(consent=DEFAULT_CONSENT[ch], connection=f"baton_{ch.value}")

    @field_validator("caps")
    @classmethod
    def _unique_caps(cls, value: tuple[Cap, ...]) -> tuple[Cap, ...]:
        first: dict[str, int] = {}
        for i, cap in enumerate(value):
            if cap.name == CAMPAIGN_FREQUENCY:
                raise fail(
                    f"the name {CAMPAIGN_FREQUENCY!r} is reserved for campaigns' frequency caps: choose another name",
                    at=(i, "name"),
                )
            if cap.name in first:
                raise fail(
                    f"duplicate cap name {cap.name!r} (already used by caps[{first[cap.name]}]): "
                    "give every cap a unique name",
                    at=(i, "name"),
                )
            first[cap.name] = i
        return value

    @field_validator("topics")
    @classmethod
    def _unique_topics(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is None:
            return value
        if not value:
            raise fail(
                "no topic listed: list the deployment's subscription topics, e.g. [promotions, newsletter], "
                "or remove topics to leave campaigns' topics unchecked"
            )
        first: dict[str, int] = {}
        for i, topic in enumerate(value):
            if topic in first:
                raise fail(
                    f"topic {topic!r} is listed twice (already topics[{first[topic]}]): list each topic once",
                    at=(i,),
                )
            first[topic] = i
        return value

    @field_validator("channels", mode="before")
    @classmethod
    def _channel_defaults(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        filled: dict[Any, Any] = {}
        for key, settings in value.items():
            if isinstance(key, str) and key in Channel.__members__ and isinstance(settings, dict):
                channel = Channel(key)
                settings = {
                    "consent": DEFAULT_CONSENT[channel],
                    "connection": f"baton_{channel.value}",
                    **settings,
                }
            filled[key] = settings
        return filled
