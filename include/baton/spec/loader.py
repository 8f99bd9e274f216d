"""Loading campaign and policy files, and ``baton validate``'s view of a set of paths.

Every problem is a :class:`SpecIssue` naming the file, the line and the field; the
loaders raise :class:`SpecValidationError` with all of a file's problems at once, and
:func:`load_campaigns` never lets one bad file hide the others.
"""

from __future__ import annotations

import difflib
import logging
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar

from pydantic import ValidationError

from baton.spec.enums import Category
from baton.spec.explain import clip, issues_from_error, sort_issues
from baton.spec.issues import FILE_FIELD, SpecIssue, SpecValidationError, shown_path
from baton.spec.models import Campaign, Policy
from baton.spec.source import LineIndex, read_yaml, shorten

log = logging.getLogger(__name__)

POLICY_FILE = "policy.yaml"
"""The policy of a deployment: ``dags/policy.yaml`` (a ``policy.yml`` is reported, never read)."""
POLICY_NAMES = (POLICY_FILE, "policy.yml")
YAML_SUFFIXES = (".yaml", ".yml")

INTERNAL_ERROR = "the file could not be checked"
"""The start of the message of an unexpected failure while checking a file (a bug in Baton)."""

_T = TypeVar("_T")


def default_templates_dir(campaign_file: Path) -> Path:
    """``<campaign file's folder>/../templates``, i.e. ``dags/templates`` for ``dags/campaigns/x.yaml``.

    When that folder does not exist but ``<campaign file's folder>/templates`` does (a
    campaign lying directly in ``dags/``), that one is used.
    """
    default = Path(os.path.normpath(campaign_file.parent / ".." / "templates"))
    beside = campaign_file.parent / "templates"
    if not default.is_dir() and beside.is_dir():
        return beside
    return default


def _not_a_mapping(file: Path, line: int, data: object, example: str) -> SpecIssue:
    kind = "a list" if isinstance(data, list) else f"a single value ({type(data).__name__})"
    return SpecIssue(
        file, line, FILE_FIELD, f"the file holds {kind}: it must be a mapping of keys, e.g. {example}"
    )


def _guarded(
    file: Path, check: Callable[[], tuple[_T | None, list[SpecIssue]]]
) -> tuple[_T | None, list[SpecIssue]]:
    """Run *check* on *file*; whatever it raises becomes an issue of *file*, never a traceback."""
    try:
        return check()
    except RecursionError:
        return None, [SpecIssue(file, 1, FILE_FIELD, "the file nests too deeply: simplify it")]
    except Exception as exc:  # last resort: one file never takes the others (or the caller) down
        log.debug("checking %s failed", file, exc_info=True)
        reason = shorten(str(exc).split("\n", 1)[0], 160)
        return None, [
            SpecIssue(
                file,
                1,
                FILE_FIELD,
                f"{INTERNAL_ERROR} ({type(exc).__name__}: {reason}): simplify the unusual value, "
                "and report this to the Baton maintainers with the file",
            )
        ]


def _topic_issue(path: Path, campaign: Campaign, index: LineIndex, policy: Policy | None) -> SpecIssue | None:
    """The issue of a marketing campaign whose topic the policy does not list (SPEC §2 ``topics``)."""
    if policy is None or policy.topics is None or campaign.category is not Category.marketing:
        return None
    topics = policy.topics
    if campaign.topic in topics:
        return None
    close = difflib.get_close_matches(campaign.topic, topics, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    listed = ", ".join(topics)
    topic = repr(shorten(campaign.topic))
    if ("topic",) in index.lines:
        return SpecIssue(
            path,
            index.line_of(("topic",)),
            "topic",
            clip(
                f"topic {topic} is not one of the policy's topics ({listed}){hint}: "
                "use a listed topic, or add it to topics in policy.yaml"
            ),
        )
    return SpecIssue(
        path,
        index.line_of(("id",)),
        "topic",
        clip(
            f"the campaign has no topic, so its topic is its id {topic}, which is not one of the "
            f"policy's topics ({listed}): add topic: <a listed topic>{hint}, or add {topic} to "
            "topics in policy.yaml"
        ),
    )


def _campaign_unguarded(
    path: Path, templates_dir: Path | None, policy: Policy | None, id_line: list[int]
) -> tuple[Campaign | None, list[SpecIssue]]:
    document, issues = read_yaml(path)
    if document is None:
        return None, issues
    if document.data is None:
        issues.append(
            SpecIssue(
                path,
                1,
                FILE_FIELD,
                "the file is empty: write a campaign (id, name, owner, schedule, start_date, channels, audience, message)",
            )
        )
        return None, issues
    if not isinstance(document.data, dict):
        issues.append(_not_a_mapping(path, document.index.root_line, document.data, "id: abandoned_cart"))
        return None, issues
    context = {
        "file_stem": path.stem,
        "templates_dir": templates_dir if templates_dir is not None else default_templates_dir(path),
    }
    try:
        campaign = Campaign.model_validate(document.data, context=context)
    except ValidationError as exc:
        issues.extend(issues_from_error(exc, path, document.index, Campaign))
        return None, sort_issues(issues)
    id_line[0] = document.index.line_of(("id",))
    topic = _topic_issue(path, campaign, document.index, policy)
    if topic is not None:
        issues.append(topic)
    if issues:
        return None, sort_issues(issues)
    return campaign, []


def _campaign(
    path: Path, templates_dir: Path | None, policy: Policy | None = None, id_line: list[int] | None = None
) -> tuple[Campaign | None, list[SpecIssue]]:
    """The campaign of *path* or its issues; *id_line*, when given, receives the line of ``id``."""
    line = id_line if id_line is not None else [1]
    return _guarded(path, lambda: _campaign_unguarded(path, templates_dir, policy, line))


def load_campaign(path: Path, templates_dir: Path | None = None, *, policy: Policy | None = None) -> Campaign:
    """Load one campaign file; raises :class:`SpecValidationError` listing every problem.

    ``templates_dir`` defaults to ``<path's folder>/../templates`` (``dags/templates``).
    With a *policy* that lists ``topics``, a marketing campaign's topic must be one of them.
    """
    campaign, issues = _campaign(Path(path), templates_dir, policy)
    if campaign is None:
        raise SpecValidationError(issues)
    return campaign


def _yaml_files(directory: Path) -> tuple[list[Path], list[SpecIssue]]:
    """The ``*.yaml``/``*.yml`` entries of *directory* (not hidden), sorted by name.

    Every such entry is returned, also a directory or a dangling link: reading it reports
    what is wrong instead of silently leaving the campaign out.
    """
    try:
        names = sorted(os.listdir(directory))
    except OSError as exc:
        return [], [
            SpecIssue(
                directory,
                None,
                FILE_FIELD,
                f"cannot list the folder ({exc.strerror or type(exc).__name__}): check its permissions",
            )
        ]
    files: list[Path] = []
    issues: list[SpecIssue] = []
    for name in names:
        if name.startswith("."):
            continue
        suffix = os.path.splitext(name)[1]
        if suffix in YAML_SUFFIXES:
            files.append(directory / name)
        elif os.path.splitext(name.strip())[1].lower() in YAML_SUFFIXES:  # x.YAML, "x.yaml ", x.Yml
            stem, right = os.path.splitext(name.strip())
            issues.append(
                SpecIssue(
                    directory / name,
                    1,
                    FILE_FIELD,
                    f"is not read: Baton reads files ending in .yaml or .yml, in lower case and with nothing "
                    f"after it; rename it to {stem.strip()}{right.lower()}",
                )
            )
    return files, issues


def _load_each(
    files: Iterable[Path], templates_dir: Path | None, policy_of: Callable[[Path], Policy | None]
) -> tuple[list[Campaign], list[SpecIssue]]:
    campaigns: list[Campaign] = []
    issues: list[SpecIssue] = []
    by_id: dict[str, Path] = {}
    for file in files:
        id_line = [1]
        campaign, found = _campaign(file, templates_dir, policy_of(file), id_line)
        issues.extend(found)
        if campaign is None:
            continue
        if campaign.id in by_id:
            issues.append(
                SpecIssue(
                    file,
                    id_line[0],
                    "id",
                    f"campaign {campaign.id!r} is also defined in {by_id[campaign.id]}: keep only one of the files",
                )
            )
            continue
        by_id[campaign.id] = file
        campaigns.append(campaign)
    return campaigns, issues


def load_campaigns(
    directory: Path, templates_dir: Path | None = None, *, policy: Policy | None = None
) -> tuple[list[Campaign], list[SpecIssue]]:
    """Load every ``*.yaml``/``*.yml`` file of *directory* (sorted by name; hidden files are skipped).

    Returns the valid campaigns and the issues of the others: a bad file never hides the
    others, and no file makes this function raise.  A missing directory is one issue.  With
    a *policy* that lists ``topics``, a marketing campaign whose topic is not listed is invalid.
    """
    directory = Path(directory)
    if not directory.is_dir():
        return [], [
            SpecIssue(directory, None, FILE_FIELD, "campaign folder not found: create it or fix the path")
        ]
    files, issues = _yaml_files(directory)
    campaigns, found = _load_each(files, templates_dir, lambda _file: policy)
    issues.extend(found)
    if issues:
        log.warning("%s campaign file problem(s) in %s", len(issues), directory)
    return campaigns, issues


def _policy_unguarded(path: Path) -> tuple[Policy | None, list[SpecIssue]]:
    document, issues = read_yaml(path)
    if document is None:
        return None, issues
    data = {} if document.data is None else document.data
    if not isinstance(data, dict):
        issues.append(_not_a_mapping(path, document.index.root_line, data, "global_control_percent: 5"))
        return None, issues
    try:
        policy = Policy.model_validate(data)
    except ValidationError as exc:
        issues.extend(issues_from_error(exc, path, document.index, Policy))
        return None, sort_issues(issues)
    if issues:
        return None, sort_issues(issues)
    return policy, []


def _exists(path: Path) -> bool:
    """Whether anything is at *path*, a dangling link included."""
    return os.path.lexists(path)


def _stray_policy(path: Path) -> SpecIssue | None:
    """A ``policy.yml``: Airflow and every command read ``policy.yaml`` only, so it would be ignored."""
    stray = path if path.name == "policy.yml" else path.with_name("policy.yml")
    if not _exists(stray):
        return None
    how = (
        "merge what it holds into policy.yaml and remove it"
        if _exists(stray.with_name(POLICY_FILE))
        else "rename it to policy.yaml"
    )
    return SpecIssue(
        stray, 1, FILE_FIELD, f"is not read: Baton reads the policy from policy.yaml only; {how}"
    )


def _policy(path: Path) -> tuple[Policy | None, list[SpecIssue]]:
    stray = _stray_policy(path) if path.name in POLICY_NAMES else None
    if stray is not None:
        return None, [stray]
    if not _exists(path):
        return Policy(), []
    return _guarded(path, lambda: _policy_unguarded(path))


def load_policy(path: Path) -> Policy:
    """Load the policy file; a missing (or empty) file is ``Policy()``, all defaults.

    Raises :class:`SpecValidationError` listing every problem.
    """
    policy, issues = _policy(Path(path))
    if policy is None:
        raise SpecValidationError(issues)
    return policy


def load_deployment(dags_folder: Path) -> tuple[Policy, list[Campaign]]:
    """The deployment of *dags_folder*: its policy and its valid, enabled campaigns.

    Raises :class:`SpecValidationError` when the policy is invalid; invalid campaign files are
    left out (their DAGs are placeholders that show the errors).
    """
    folder = Path(dags_folder)
    policy = load_policy(folder / "policy.yaml")
    campaigns, _issues = load_campaigns(folder / "campaigns", folder / "templates", policy=policy)
    return policy, [c for c in campaigns if c.enabled]


def _is_policy(path: Path) -> bool:
    return path.name in POLICY_NAMES


def default_policy_file(campaign_file: Path) -> Path:
    """The policy a lone campaign file is checked against: ``<its folder>/../policy.yaml``
    (``dags/policy.yaml`` for ``dags/campaigns/x.yaml``), or ``<its folder>/policy.yaml`` when
    only that one exists (a campaign lying directly in ``dags/``)."""
    default = Path(os.path.normpath(campaign_file.parent / ".." / "policy.yaml"))
    beside = campaign_file.parent / "policy.yaml"
    if not _exists(default) and _exists(beside):
        return beside
    return default


def validate_paths(paths: list[Path]) -> list[SpecIssue]:
    """Every problem of the campaign and policy files at *paths* (``baton validate``); see
    :func:`validated_campaigns`."""
    return validated_campaigns(paths)[1]


class _Paths:
    """The campaign and policy files that ``baton validate`` paths name (see :func:`validated_campaigns`):
    each file once, each policy loaded once, the problems found on the way."""

    def __init__(self) -> None:
        self.issues: list[SpecIssue] = []
        self.campaign_files: list[Path] = []
        self.policy_files: dict[Path, Path] = {}  # campaign file -> the policy file it is checked against
        self.seen: set[str] = set()
        self.policies: dict[str, Policy | None] = {}

    def add(self, path: Path) -> None:
        """A path given on the command line: a directory, a policy file or a campaign file."""
        if not _exists(path):
            self.issues.append(SpecIssue(path, None, FILE_FIELD, "no such file or directory: check the path"))
        elif path.is_dir():
            self.add_dir(path)
        elif _is_policy(path):
            self.load_policy(path)
        else:
            self.add_campaign(path, default_policy_file(path))

    def add_dir(self, path: Path) -> None:
        """A directory: its policy, the campaigns in its ``campaigns/`` and the other YAML files in it."""
        policy_file = path / POLICY_FILE
        self.load_policy(policy_file)
        found_files: list[Path] = []
        folder = path / "campaigns"
        directly, problems = _yaml_files(path)
        self.issues.extend(problems)
        directly = [f for f in directly if not _is_policy(f)]
        if folder.is_dir():  # a deployment's dags folder: Airflow reads campaigns/ only
            in_folder, problems = _yaml_files(folder)
            self.issues.extend(problems)
            found_files.extend(in_folder)
            self.issues.extend(
                SpecIssue(
                    file,
                    1,
                    FILE_FIELD,
                    f"is not read: campaigns live in {shown_path(folder)}/ (Airflow reads no other folder); "
                    "move it there, or remove it",
                )
                for file in directly
            )
        else:  # a folder of campaign files
            found_files.extend(directly)
        for file in found_files:
            self.add_campaign(file, policy_file)

    def add_campaign(self, file: Path, policy_file: Path) -> None:
        """A campaign file, checked against *policy_file*, unless already added by the same path
        (a link under another name is read as that name, as Airflow does)."""
        key = os.path.abspath(file)
        if key in self.seen:
            return
        self.seen.add(key)
        self.campaign_files.append(file)
        self.policy_files[file] = policy_file

    def load_policy(self, path: Path) -> Policy | None:
        """A policy file given (or found in a directory given): loaded once, its problems reported."""
        key = os.path.realpath(path)
        if key not in self.policies:
            policy, found = _policy(path)
            self.policies[key] = policy
            self.issues.extend(found)
        return self.policies[key]

    def policy_of(self, file: Path) -> Policy | None:
        """The valid policy a campaign file is checked against, or None."""
        policy_file = self.policy_files.get(file)
        if policy_file is None or not _exists(policy_file):
            return None
        key = os.path.realpath(policy_file)
        if key not in self.policies:  # a lone campaign file's policy: used, not reported
            self.policies[key] = _policy(policy_file)[0]
        return self.policies[key]


def validated_campaigns(
    paths: list[Path],
) -> tuple[list[tuple[Campaign, Path, Policy | None]], list[SpecIssue]]:
    """The valid campaigns at *paths* (each with its file and the policy it was checked against) and
    every problem of the campaign and policy files there.

    A directory means its ``policy.yaml`` (or ``policy.yml``) when present, the campaigns
    in its ``campaigns/`` folder when that exists, and the other ``*.yaml``/``*.yml`` files
    directly in it, read as campaigns.  A file is a policy when named ``policy.yaml`` or
    ``policy.yml`` and a campaign otherwise.  A path that does not exist is an issue.

    Campaigns are checked against the policy's ``topics``: the policy of the directory given,
    or for a campaign file given alone the one :func:`default_policy_file` finds.  An invalid
    policy reports its own problems; the campaigns are then not checked against it.
    """
    found = _Paths()
    for raw in paths:
        found.add(Path(raw))
    campaigns, problems = _load_each(found.campaign_files, None, found.policy_of)
    issues = found.issues + problems
    file_of = {f.stem: f for f in found.campaign_files}
    return [(c, file_of[c.id], found.policy_of(file_of[c.id])) for c in campaigns], issues
