"""File-based arbitration scenarios for ``baton simulate`` (SPEC.md §5).

A scenario directory holds ``policy.yaml``, ``campaigns/*.yaml`` and CSV files for
customers, candidates and (optionally) consents, suppressions, history, identifiers and
exclusions (SPEC §6).  This module reads such a directory into plain, frozen rows
(:class:`Scenario`), parses the ``--at`` option and writes the resulting :class:`Decision`
rows as ``decisions.csv``.

It knows nothing about Airflow or the database: the SQL engine
(:mod:`baton.arbitration.simulate`) loads a :class:`Scenario` into the store, and the
plain-Python reference in ``tests/reference_arbitration.py`` decides it directly.

Conventions, shared by every CSV file:

* UTF-8 (a byte-order mark is accepted); the first line is the header; line numbers in
  error messages count the header as line 1.
* Columns may come in any order; a missing column or an unknown column is an error
  (only ``tags`` and ``counts`` of ``history.csv`` and ``first_seen`` of
  ``identifiers.csv`` may be left out).
* Cells are trimmed; an empty cell means *missing*.  Blank lines are skipped.
* Times are ISO 8601; a time without an offset is UTC; a trailing ``Z`` is accepted.
  Every time is returned as an aware UTC ``datetime``.

Beyond SPEC §5's list, these are errors too: a duplicate ``customer_id``, two consent
rows for one (customer, channel, topic), an empty suppression address, an identifier or
exclusion value (or a customer's email, phone or push_token) longer than
``baton.identity.normalize.MAX_VALUE_LENGTH``, a ``customer_id`` or
consent ``topic`` longer than ``MAX_ID_LENGTH``, a NUL character in a CSV cell, and a campaign or
policy file that ``baton validate`` would reject (its ``file:line: field: message``
lines are passed on).  Unknown people in consents, history or identifiers and unknown
campaigns in history are not errors: they simply never match (an identifier of a
``customer_id`` that is no profile links no one).  Duplicate identifier or exclusion rows
are not errors either: an identifier is known from the earliest ``first_seen`` of its
rows.  Campaign files are validated with the scenario's own ``templates/`` folder, so a
campaign whose email uses ``template:`` needs that file there.

Every problem raises :class:`baton.errors.InputError` with ``file:line: problem; what
to do`` so that the CLI can print it and exit with status 2.
"""

from __future__ import annotations

import csv
import difflib
import io
import math
import stat
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from baton.errors import BatonError, InputError
from baton.identity.normalize import KINDS, MAX_VALUE_LENGTH, PROFILE_COLUMNS
from baton.spec.enums import Channel, Outcome

if TYPE_CHECKING:
    from baton.spec import Campaign, Policy

__all__ = [
    "CHANNELS",
    "DECISION_COLUMNS",
    "MAX_ID_LENGTH",
    "OUTCOMES",
    "TIME_RANGE",
    "CandidateRow",
    "ConsentRow",
    "CustomerRow",
    "Decision",
    "ExclusionRow",
    "HistoryRow",
    "IdentifierRow",
    "Scenario",
    "SuppressionRow",
    "campaign_channels",
    "campaign_counts_toward_caps",
    "campaign_tags",
    "campaign_topic",
    "decisions_key",
    "format_utc",
    "load_scenario",
    "parse_at",
    "parse_time",
    "write_decisions_csv",
]

#: The channels of SPEC §1, in the order the SPEC lists them.
CHANNELS: tuple[str, ...] = tuple(c.value for c in Channel)

#: Every outcome of SPEC §3, in check order.
OUTCOMES: tuple[str, ...] = tuple(o.value for o in Outcome)

#: The header of ``decisions.csv``.
DECISION_COLUMNS: tuple[str, ...] = (
    "customer_id",
    "campaign_id",
    "channel",
    "outcome",
    "reason",
    "send_at",
    "person_id",
)

CONSENT_STATUSES: tuple[str, ...] = ("opt_in", "opt_out")

CUSTOMER_COLUMNS = ("customer_id", "email", "phone", "push_token", "postal_address", "timezone")
CANDIDATE_COLUMNS = ("campaign_id", "customer_id", "score", "channel", "expires_at")
CONSENT_COLUMNS = ("customer_id", "channel", "topic", "status")
SUPPRESSION_COLUMNS = ("channel", "address")
HISTORY_COLUMNS = ("customer_id", "campaign_id", "channel", "decided_at")
HISTORY_OPTIONAL_COLUMNS = ("tags", "counts")
IDENTIFIER_COLUMNS = ("customer_id", "kind", "value")
IDENTIFIER_OPTIONAL_COLUMNS = ("first_seen",)
EXCLUSION_COLUMNS = ("kind", "value")
MAX_ID_LENGTH = 128
"""The longest ``customer_id`` (in any file) and consent ``topic``: PostgreSQL indexes them, with an
identifier value of up to ``MAX_VALUE_LENGTH`` characters, and an index entry holds at most 2704 bytes."""
_HEADERS = {
    "customers.csv": ",".join(CUSTOMER_COLUMNS),
    "candidates.csv": ",".join(CANDIDATE_COLUMNS),
}


# ---------------------------------------------------------------------------- rows


@dataclass(frozen=True)
class CustomerRow:
    """One person of ``customers.csv``; a missing address or timezone is ``None``."""

    customer_id: str
    email: str | None = None
    phone: str | None = None
    push_token: str | None = None
    postal_address: str | None = None
    timezone: str | None = None


@dataclass(frozen=True)
class CandidateRow:
    """One row of ``candidates.csv``.

    ``seq`` is the row's position in the file (0 for the first data row): among several
    rows for one (campaign, customer) with the same score, the lowest ``seq`` wins.
    ``channel`` is ``None`` for "every channel of the campaign".
    """

    seq: int
    campaign_id: str
    customer_id: str
    score: float = 0.0
    channel: str | None = None
    expires_at: datetime | None = None


@dataclass(frozen=True)
class ConsentRow:
    """One consent record; ``topic`` is ``""`` for the whole channel."""

    customer_id: str
    channel: str
    topic: str
    status: str  # "opt_in" | "opt_out"


@dataclass(frozen=True)
class SuppressionRow:
    """An address the channel must never receive messages for (as written in the file)."""

    channel: str
    address: str


@dataclass(frozen=True)
class HistoryRow:
    """A message decided in an earlier cycle.

    ``tags`` and ``counts`` are resolved at load: a missing cell takes the campaign's
    ``tags`` / ``counts_toward_caps``; for a campaign the scenario does not define, no
    tags and ``counts=True``.
    """

    customer_id: str
    campaign_id: str
    channel: str
    decided_at: datetime
    tags: tuple[str, ...] = ()
    counts: bool = True


@dataclass(frozen=True)
class IdentifierRow:
    """An identifier seen on a profile (``identifiers.csv``, SPEC §6): *value* as written; ``first_seen``
    ``None`` means always known.  A row whose ``customer_id`` is no profile is kept and never links."""

    customer_id: str
    kind: str
    value: str
    first_seen: datetime | None = None


@dataclass(frozen=True)
class ExclusionRow:
    """An identifier value that links no one (``exclusions.csv``), as written."""

    kind: str
    value: str


@dataclass(frozen=True)
class Scenario:
    """Everything one simulated cycle decides from."""

    policy: Policy
    campaigns: dict[str, Campaign]
    customers: tuple[CustomerRow, ...] = ()
    candidates: tuple[CandidateRow, ...] = ()
    consents: tuple[ConsentRow, ...] = ()
    suppressions: tuple[SuppressionRow, ...] = ()
    history: tuple[HistoryRow, ...] = ()
    identifiers: tuple[IdentifierRow, ...] = ()
    exclusions: tuple[ExclusionRow, ...] = ()
    warnings: tuple[str, ...] = ()
    """Problems that do not stop the decision, ``file:line: ...`` (a consent topic the policy does not list)."""


@dataclass(frozen=True)
class Decision:
    """The outcome of one alternative (one candidate on one channel), SPEC §3."""

    customer_id: str
    campaign_id: str
    channel: str
    outcome: str
    reason: str | None = None
    send_at: datetime | None = None
    person_id: str | None = None
    """The person decided for (SPEC §6); ``None`` when ``customer_id`` is no profile."""


def decisions_key(d: Decision) -> tuple[bytes, bytes, bytes]:
    """Sort key of ``decisions.csv``: customer_id, campaign_id, channel in byte order."""
    return (d.customer_id.encode(), d.campaign_id.encode(), d.channel.encode())


# ---------------------------------------------------------------- campaign helpers


def _value(x: Any) -> str:
    """The plain string of an enum member (or of a string)."""
    return str(x.value) if isinstance(x, Enum) else str(x)


def campaign_channels(campaign: Campaign) -> tuple[str, ...]:
    """The campaign's channels as plain strings, in preference order."""
    return tuple(_value(c) for c in campaign.channels)


def campaign_tags(campaign: Campaign) -> tuple[str, ...]:
    """The campaign's tags as a tuple of strings."""
    return tuple(str(t) for t in (campaign.tags or ()))


def campaign_topic(campaign: Campaign) -> str:
    """The subscription topic checked against consent (default: the campaign id)."""
    return str(campaign.topic or campaign.id)


def _is_transactional(campaign: Campaign) -> bool:
    return _value(campaign.category) == "transactional"


def campaign_counts_toward_caps(campaign: Campaign) -> bool:
    """Whether the campaign's messages count toward caps (default per category)."""
    counts = getattr(campaign, "counts_toward_caps", None)
    if counts is None:
        return not _is_transactional(campaign)
    return bool(counts)


# ------------------------------------------------------------------------- times


def parse_time(text: str) -> datetime:
    """Parse an ISO 8601 time: naive means UTC, a trailing ``Z`` is accepted.

    Returns an aware UTC datetime; raises ``ValueError`` when ``text`` is not a time.
    """
    s = text.strip()
    if not s:
        raise ValueError("empty time")
    if s[-1] in "zZ":
        s = s[:-1] + "+00:00"
    dt = datetime.fromisoformat(s)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    try:
        return dt.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00:00+01:00 is before the first datetime in UTC
        raise ValueError("out of range in UTC") from None


TIME_RANGE = (datetime(1970, 1, 1, tzinfo=UTC), datetime(9000, 1, 1, tzinfo=UTC))
"""The times Baton takes from a user — ``baton simulate --at``, the Marketing view's and ``baton why``'s
times — as ``[from, to)``: far enough from the ends of PostgreSQL's and Python's times that every cap
window, calendar period and view's range around them exists."""


def parse_at(text: str) -> datetime:
    """Parse the ``--at`` option of ``baton simulate`` (ISO 8601; without an offset, UTC), 1970..8999."""
    try:
        at = parse_time(text)
    except ValueError:
        raise InputError(
            f"--at: cannot read {text!r} as a time; give ISO 8601 in UTC, e.g. 2026-03-02T12:00:00Z"
        ) from None
    if not TIME_RANGE[0] <= at < TIME_RANGE[1]:
        raise InputError(f"--at: {text!r} is out of range; give a decision time from 1970 to 8999")
    return at


def format_utc(dt: datetime) -> str:
    """ISO 8601 in UTC with a ``Z`` and seconds: ``2026-03-01T21:00:00Z``.

    Fractions of a second are written only when present.  A naive ``dt`` is taken as UTC.
    """
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    u = dt.astimezone(UTC)
    spec = "%Y-%m-%dT%H:%M:%S.%f" if u.microsecond else "%Y-%m-%dT%H:%M:%S"
    return u.strftime(spec) + "Z"


# --------------------------------------------------------------------------- CSV


MAX_CSV_BYTES = 4 * 1024**3
"""The largest CSV file read (4 GiB; a 1M-customer scenario is a few hundred MB)."""


def read_csv_text(path: Path) -> str:
    """The text of the CSV file *path* (UTF-8, a byte-order mark dropped), or an :class:`InputError`
    saying what keeps it from being read: not a regular file (a pipe or a link to a device would block
    or never end), larger than :data:`MAX_CSV_BYTES`, unreadable or not UTF-8."""
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            raise InputError(
                f"{path}: is not a regular file (a directory, pipe, socket or device): give a CSV file"
            )
        if info.st_size > MAX_CSV_BYTES:
            raise InputError(
                f"{path}: is larger than {MAX_CSV_BYTES // 1024**3} GiB: split it or check the file"
            )
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise InputError(f"{path}: is not UTF-8 text; save it as UTF-8 CSV") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot be read ({exc.strerror or exc})") from None


class _CsvFile:
    """Reads one scenario CSV file, row by row, with line numbers for errors."""

    def __init__(self, path: Path, required: Sequence[str], optional: Sequence[str] = ()) -> None:
        self.path = path
        self.required = tuple(required)
        self.optional = tuple(optional)

    def fail(self, line: int, message: str) -> InputError:
        return InputError(f"{self.path}:{line}: {message}")

    def rows(self) -> Iterator[tuple[int, dict[str, str | None]]]:
        """Yield ``(line number, {column: trimmed cell or None})`` for every data row."""
        reader = csv.reader(io.StringIO(self._text(), newline=""), strict=True)
        header = self._header(reader)
        last = reader.line_num
        while True:
            start = last + 1
            try:
                cells = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                raise self.fail(start, f"is not valid CSV ({exc})") from None
            last = reader.line_num
            if not any(c.strip() for c in cells):
                continue  # a blank line
            if any("\x00" in c for c in cells):
                raise self.fail(start, "contains a NUL character; remove it (is the file binary?)")
            if len(cells) != len(header):
                raise self.fail(
                    start,
                    f"has {len(cells)} cells but the header has {len(header)}; "
                    "give one cell per column (an empty cell for a missing value)",
                )
            yield start, {col: (cell.strip() or None) for col, cell in zip(header, cells, strict=True)}

    def _text(self) -> str:
        """The file's text (UTF-8, a byte-order mark dropped); a clear error when it cannot be read."""
        return read_csv_text(self.path)

    def _header(self, reader: Any) -> list[str]:
        """The header's column names, trimmed: each known and once, every required column present."""
        expected = ",".join(self.required + self.optional)
        try:
            header_cells = next(reader, None)
        except csv.Error as exc:
            raise self.fail(1, f"is not valid CSV ({exc})") from None
        if header_cells is None or not any(c.strip() for c in header_cells):
            raise self.fail(1, f"the file is empty; its first line must be the header: {expected}")
        header = [c.strip() for c in header_cells]
        seen: set[str] = set()
        for column in header:
            if column in seen:
                raise self.fail(1, f"column {column!r} appears twice in the header; keep one")
            seen.add(column)
            if column not in self.required and column not in self.optional:
                raise self.fail(1, f"unknown column {column!r}; the columns are: {expected}")
        for column in self.required:
            if column not in seen:
                raise self.fail(1, f"missing column {column!r}; the header must be: {expected}")
        return header

    # -- cell readers -------------------------------------------------------

    def required_text(self, line: int, row: dict[str, str | None], column: str) -> str:
        value = row.get(column)
        if value is None:
            raise self.fail(line, f"{column} is empty; every row needs a {column}")
        return value

    def key(self, line: int, row: dict[str, str | None], column: str) -> str:
        """A required cell that the database keys on (customer_id, topic): at most MAX_ID_LENGTH characters."""
        value = self.required_text(line, row, column)
        if len(value) > MAX_ID_LENGTH:
            raise self.fail(
                line,
                f"{column} is {len(value)} characters long, more than {MAX_ID_LENGTH}: "
                f"a {column} is a short key; check the column",
            )
        return value

    def time(self, line: int, row: dict[str, str | None], column: str) -> datetime | None:
        value = row.get(column)
        if value is None:
            return None
        try:
            return parse_time(value)
        except ValueError:
            raise self.fail(
                line,
                f"{column} {value!r} is not a time; write ISO 8601, e.g. 2026-03-01T21:00:00Z (no offset means UTC)",
            ) from None

    def channel(self, line: int, row: dict[str, str | None], column: str = "channel") -> str | None:
        value = row.get(column)
        if value is None:
            return None
        if value not in CHANNELS:
            raise self.fail(line, f"unknown channel {value!r}; use one of: {', '.join(CHANNELS)}")
        return value


# ------------------------------------------------------------------------ loading


def _load_policy(path: Path) -> Policy:
    from baton.spec import load_policy

    if not path.is_file():
        raise InputError(
            f"{path}: missing; a scenario needs a policy.yaml (an empty file means all defaults)"
        )
    try:
        return load_policy(path)
    except BatonError as exc:
        raise InputError(str(exc)) from exc


def _load_campaigns(directory: Path, templates_dir: Path, policy: Policy) -> dict[str, Campaign]:
    from baton.spec import load_campaigns

    if not directory.is_dir():
        raise InputError(
            f"{directory}: missing; a scenario needs a campaigns/ folder with one <id>.yaml per campaign"
        )
    campaigns, issues = load_campaigns(directory, templates_dir=templates_dir, policy=policy)
    if issues:
        raise InputError("\n".join(str(issue) for issue in issues))
    return {c.id: c for c in campaigns}


def _load_customers(path: Path) -> tuple[CustomerRow, ...]:
    f = _CsvFile(path, CUSTOMER_COLUMNS)
    out: list[CustomerRow] = []
    first_line: dict[str, int] = {}
    for line, row in f.rows():
        cid = f.key(line, row, "customer_id")
        if cid in first_line:
            raise f.fail(
                line,
                f"customer_id {cid!r} already appears on line {first_line[cid]}; keep one row per customer",
            )
        first_line[cid] = line
        for column in PROFILE_COLUMNS:  # identifiers of the profile too: the same limit
            value = row[column]
            if value is not None and len(value) > MAX_VALUE_LENGTH:
                raise f.fail(
                    line,
                    f"{column} is {len(value)} characters long, more than {MAX_VALUE_LENGTH}: "
                    "an address is shorter; check the column",
                )
        out.append(
            CustomerRow(
                customer_id=cid,
                email=row["email"],
                phone=row["phone"],
                push_token=row["push_token"],
                postal_address=row["postal_address"],
                timezone=row["timezone"],
            )
        )
    return tuple(out)


def _load_candidates(path: Path, campaigns: dict[str, Campaign]) -> tuple[CandidateRow, ...]:
    f = _CsvFile(path, CANDIDATE_COLUMNS)
    out: list[CandidateRow] = []
    for line, row in f.rows():
        campaign_id = f.required_text(line, row, "campaign_id")
        customer_id = f.key(line, row, "customer_id")
        campaign = campaigns.get(campaign_id)
        if campaign is None:
            known = ", ".join(sorted(campaigns)) or "none"
            raise f.fail(
                line,
                f"unknown campaign {campaign_id!r}; add campaigns/{campaign_id}.yaml or use one of: {known}",
            )
        score_text = row["score"]
        score = 0.0
        if score_text is not None:
            try:
                score = float(score_text)
            except ValueError:
                score = math.nan
            if not math.isfinite(score):
                raise f.fail(
                    line,
                    f"score {score_text!r} is not a number; write a decimal such as 0.75 (empty means 0)",
                )
        channel = f.channel(line, row)
        if channel is not None and channel not in campaign_channels(campaign):
            raise f.fail(
                line,
                f"campaign {campaign_id!r} has no channel {channel!r}; use one of "
                f"{', '.join(campaign_channels(campaign))}, or leave channel empty for all of them",
            )
        out.append(
            CandidateRow(
                seq=len(out),
                campaign_id=campaign_id,
                customer_id=customer_id,
                score=score,
                channel=channel,
                expires_at=f.time(line, row, "expires_at"),
            )
        )
    return tuple(out)


def _load_consents(
    path: Path, topics: tuple[str, ...] | None = None
) -> tuple[tuple[ConsentRow, ...], tuple[str, ...]]:
    """The consent rows, and one warning per topic that *topics* (the policy's, when given) does not list."""
    f = _CsvFile(path, CONSENT_COLUMNS)
    out: list[ConsentRow] = []
    first_line: dict[tuple[str, str, str], int] = {}
    unknown: dict[str, list[int]] = {}
    for line, row in f.rows():
        customer_id = f.key(line, row, "customer_id")
        channel = f.channel(line, row)
        if channel is None:
            raise f.fail(line, f"channel is empty; use one of: {', '.join(CHANNELS)}")
        topic = f.key(line, row, "topic") if row["topic"] is not None else ""
        status = row["status"]
        if status not in CONSENT_STATUSES:
            raise f.fail(line, f"status {status or ''!r} is not valid; use opt_in or opt_out")
        key = (customer_id, channel, topic)
        if key in first_line:
            raise f.fail(
                line,
                f"consent for customer {customer_id!r}, channel {channel!r}, topic {topic!r} already appears "
                f"on line {first_line[key]}; keep one row per customer, channel and topic",
            )
        first_line[key] = line
        if topics is not None and topic and topic not in topics:
            unknown.setdefault(topic, []).append(line)
        out.append(ConsentRow(customer_id=customer_id, channel=channel, topic=topic, status=status))
    return tuple(out), tuple(
        _unknown_topic_warning(path, t, lines, topics or ()) for t, lines in unknown.items()
    )


def _unknown_topic_warning(path: Path, topic: str, lines: list[int], topics: tuple[str, ...]) -> str:
    close = difflib.get_close_matches(topic, topics, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    rows = f"{len(lines)} rows, first on line {lines[0]}" if len(lines) > 1 else "1 row"
    return (
        f"{path}:{lines[0]}: topic {topic!r} is not one of the policy's topics ({', '.join(topics)}){hint}; "
        f"its consents ({rows}) match no campaign: fix the topic or add it to topics in policy.yaml"
    )


def _load_suppressions(path: Path) -> tuple[SuppressionRow, ...]:
    f = _CsvFile(path, SUPPRESSION_COLUMNS)
    out: list[SuppressionRow] = []
    for line, row in f.rows():
        channel = f.channel(line, row)
        if channel is None:
            raise f.fail(line, f"channel is empty; use one of: {', '.join(CHANNELS)}")
        address = f.required_text(line, row, "address")
        out.append(SuppressionRow(channel=channel, address=address))
    return tuple(out)


_TRUE = ("true",)
_FALSE = ("false",)


def _load_history(path: Path, campaigns: dict[str, Campaign]) -> tuple[HistoryRow, ...]:
    f = _CsvFile(path, HISTORY_COLUMNS, HISTORY_OPTIONAL_COLUMNS)
    out: list[HistoryRow] = []
    for line, row in f.rows():
        customer_id = f.key(line, row, "customer_id")
        campaign_id = f.required_text(line, row, "campaign_id")
        channel = f.channel(line, row)
        if channel is None:
            raise f.fail(line, f"channel is empty; use one of: {', '.join(CHANNELS)}")
        decided_at = f.time(line, row, "decided_at")
        if decided_at is None:
            raise f.fail(line, "decided_at is empty; every history row needs the time it was decided")
        campaign = campaigns.get(campaign_id)
        tags_text = row.get("tags")
        if tags_text is not None:
            tags = tuple(t.strip() for t in tags_text.split(";") if t.strip())
        else:
            tags = campaign_tags(campaign) if campaign is not None else ()
        counts_text = row.get("counts")
        if counts_text is None:
            counts = campaign_counts_toward_caps(campaign) if campaign is not None else True
        elif counts_text.lower() in _TRUE:
            counts = True
        elif counts_text.lower() in _FALSE:
            counts = False
        else:
            raise f.fail(
                line,
                f"counts {counts_text!r} is not valid; write true or false (empty: the campaign's default)",
            )
        out.append(
            HistoryRow(
                customer_id=customer_id,
                campaign_id=campaign_id,
                channel=channel,
                decided_at=decided_at,
                tags=tags,
                counts=counts,
            )
        )
    return tuple(out)


def _identifier_kind(f: _CsvFile, line: int, row: dict[str, str | None]) -> str:
    kind = row.get("kind")
    if kind is None:
        raise f.fail(line, f"kind is empty; use one of: {', '.join(KINDS)}")
    if kind not in KINDS:
        close = difflib.get_close_matches(kind.lower(), KINDS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise f.fail(line, f"unknown kind {kind!r}{hint}; use one of: {', '.join(KINDS)}")
    return kind


def _identifier_value(f: _CsvFile, line: int, row: dict[str, str | None]) -> str:
    value = f.required_text(line, row, "value")
    if len(value) > MAX_VALUE_LENGTH:
        raise f.fail(
            line,
            f"value is {len(value)} characters long, more than {MAX_VALUE_LENGTH}: an identifier is an "
            "email, a phone number, a login, a cookie or device id or a push token; check the column",
        )
    return value


def _load_identifiers(path: Path) -> tuple[IdentifierRow, ...]:
    f = _CsvFile(path, IDENTIFIER_COLUMNS, IDENTIFIER_OPTIONAL_COLUMNS)
    out: list[IdentifierRow] = []
    for line, row in f.rows():
        customer_id = f.key(line, row, "customer_id")
        kind = _identifier_kind(f, line, row)
        value = _identifier_value(f, line, row)
        out.append(IdentifierRow(customer_id, kind, value, f.time(line, row, "first_seen")))
    return tuple(out)


def _load_exclusions(path: Path) -> tuple[ExclusionRow, ...]:
    f = _CsvFile(path, EXCLUSION_COLUMNS)
    out: list[ExclusionRow] = []
    for line, row in f.rows():
        kind = _identifier_kind(f, line, row)
        out.append(ExclusionRow(kind, _identifier_value(f, line, row)))
    return tuple(out)


SCENARIO_FILES: tuple[str, ...] = (
    "policy.yaml",
    "customers.csv",
    "candidates.csv",
    "consents.csv",
    "suppressions.csv",
    "history.csv",
    "identifiers.csv",
    "exclusions.csv",
)
"""The files a scenario directory may hold (besides the folders ``campaigns/`` and ``templates/``)."""
SCENARIO_FOLDERS: tuple[str, ...] = ("campaigns", "templates")


def _resolved(path: Path) -> Path:
    """*path* with its symlinks resolved; as it is when they loop."""
    try:
        return path.resolve()
    except (OSError, RuntimeError):  # RuntimeError: a symlink loop (Python < 3.13)
        return path.absolute()


def _present(path: Path) -> bool:
    """Whether the optional file *path* was given: it exists, or is a symlink (which reading then
    reports as broken, instead of deciding as if the file were not there)."""
    return path.exists() or path.is_symlink()


def _check_known_files(directory: Path, ignore: Iterable[Path]) -> None:
    """An entry of the scenario directory that ``baton simulate`` does not read is an error, not
    silently ignored: a misnamed ``consent.csv`` would otherwise decide as if nobody had opted out.
    Hidden entries (``.DS_Store``, ``.git``) and the files in *ignore* (the output) are skipped."""
    skip = {_resolved(p) for p in ignore}
    for entry in sorted(directory.iterdir()):
        if entry.name.startswith(".") or _resolved(entry) in skip:
            continue
        if entry.is_dir() and entry.name in SCENARIO_FOLDERS:
            continue
        if not entry.is_dir() and entry.name in SCENARIO_FILES:
            continue
        names = [*SCENARIO_FILES, *(f"{f}/" for f in SCENARIO_FOLDERS)]
        close = difflib.get_close_matches(entry.name, [*SCENARIO_FILES, *SCENARIO_FOLDERS], n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        kind = "folder" if entry.is_dir() else "file"
        raise InputError(
            f"{entry}: unknown {kind} in the scenario{hint}; baton simulate reads only {', '.join(names)}: "
            "rename it or move it out of the scenario folder"
        )


def load_scenario(directory: Path, *, ignore: Iterable[Path] = ()) -> Scenario:
    """Read a scenario directory (SPEC §5) into a :class:`Scenario`.

    Raises :class:`InputError` naming the file and line of the first problem found.  An entry
    the scenario format does not know is an error (files in *ignore*, e.g. the output file written
    into the folder, are skipped).
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise InputError(
            f"{directory}: not a directory; give the scenario folder (policy.yaml, campaigns/, *.csv)"
        )
    _check_known_files(directory, ignore)
    policy = _load_policy(directory / "policy.yaml")
    campaigns = _load_campaigns(directory / "campaigns", directory / "templates", policy)

    def required(name: str) -> Path:
        path = directory / name
        if not _present(path):
            raise InputError(f"{path}: missing; a scenario needs {name} (header: {_HEADERS[name]})")
        return path

    customers = _load_customers(required("customers.csv"))
    candidates = _load_candidates(required("candidates.csv"), campaigns)
    consents_path = directory / "consents.csv"
    suppressions_path = directory / "suppressions.csv"
    history_path = directory / "history.csv"
    identifiers_path = directory / "identifiers.csv"
    exclusions_path = directory / "exclusions.csv"
    consents, warnings = _load_consents(consents_path, policy.topics) if _present(consents_path) else ((), ())
    return Scenario(
        policy=policy,
        campaigns=campaigns,
        customers=customers,
        candidates=candidates,
        consents=consents,
        suppressions=_load_suppressions(suppressions_path) if _present(suppressions_path) else (),
        history=_load_history(history_path, campaigns) if _present(history_path) else (),
        identifiers=_load_identifiers(identifiers_path) if _present(identifiers_path) else (),
        exclusions=_load_exclusions(exclusions_path) if _present(exclusions_path) else (),
        warnings=warnings,
    )


# ------------------------------------------------------------------------ writing


def write_decisions_csv(decisions: Iterable[Decision], path: Path) -> int:
    """Write ``decisions.csv`` (SPEC §5); returns the number of rows written.

    Rows are sorted by customer_id, campaign_id, channel in byte order; times are
    ISO 8601 UTC with ``Z``; a missing reason, send_at or person_id is an empty cell.
    """
    rows = sorted(decisions, key=decisions_key)
    buf = io.StringIO(newline="")
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(DECISION_COLUMNS)
    for d in rows:
        writer.writerow(
            (
                d.customer_id,
                d.campaign_id,
                _value(d.channel),
                _value(d.outcome),
                "" if d.reason is None else d.reason,
                "" if d.send_at is None else format_utc(d.send_at),
                "" if d.person_id is None else d.person_id,
            )
        )
    try:
        Path(path).write_text(buf.getvalue(), encoding="utf-8", newline="")
    except OSError as exc:
        raise InputError(f"{path}: cannot write the decisions ({exc.strerror or exc})") from None
    return len(rows)
