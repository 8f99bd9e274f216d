"""Loading campaign and policy files, and ``baton validate``'s view of a set of paths.

Every problem is a :class:`SpecIssue` naming the file, the line and the field; the
loaders raise :class:`SpecValidationError` with all of a file's problems at once, and
:func:`load_campaigns` never lets one bad file hide the others.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from pathlib import Path

from pydantic import ValidationError

from baton.spec.explain import issues_from_error, sort_issues
from baton.spec.issues import FILE_FIELD, SpecIssue, SpecValidationError
from baton.spec.models import Campaign, Policy
from baton.spec.source import read_yaml

log = logging.getLogger(__name__)

POLICY_NAMES = ("policy.yaml", "policy.yml")
YAML_SUFFIXES = (".yaml", ".yml")


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


def _campaign(path: Path, templates_dir: Path | None) -> tuple[Campaign | None, list[SpecIssue]]:
    document, issues = read_yaml(path)
    if document is None:
        return None, issues
    if document.data is None:
        issues.append(
            SpecIssue(
                path,
                None,
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
    if issues:
        return None, sort_issues(issues)
    return campaign, []


def load_campaign(path: Path, templates_dir: Path | None = None) -> Campaign:
    """Load one campaign file; raises :class:`SpecValidationError` listing every problem.

    ``templates_dir`` defaults to ``<path's folder>/../templates`` (``dags/templates``).
    """
    campaign, issues = _campaign(Path(path), templates_dir)
    if campaign is None:
        raise SpecValidationError(issues)
    return campaign


def _yaml_files(directory: Path) -> list[Path]:
    return sorted(
        (
            p
            for p in directory.iterdir()
            if p.suffix in YAML_SUFFIXES and not p.name.startswith(".") and p.is_file()
        ),
        key=lambda p: p.name,
    )


def _load_each(files: Iterable[Path], templates_dir: Path | None) -> tuple[list[Campaign], list[SpecIssue]]:
    campaigns: list[Campaign] = []
    issues: list[SpecIssue] = []
    by_id: dict[str, Path] = {}
    for file in files:
        campaign, found = _campaign(file, templates_dir)
        issues.extend(found)
        if campaign is None:
            continue
        if campaign.id in by_id:
            issues.append(
                SpecIssue(
                    file,
                    None,
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
    others.  A missing directory is one issue.
    """
    directory = Path(directory)
    if not directory.is_dir():
        return [], [
            SpecIssue(directory, None, FILE_FIELD, "campaign folder not found: create it or fix the path")
        ]
    campaigns, issues = _load_each(_yaml_files(directory), templates_dir)
    if issues:
        log.warning("%s campaign file problem(s) in %s", len(issues), directory)
    return campaigns, issues


def _policy(path: Path) -> tuple[Policy | None, list[SpecIssue]]:
    if not path.exists():
        return Policy(), []
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
    campaigns, _issues = load_campaigns(folder / "campaigns", folder / "templates")
    return policy, [c for c in campaigns if c.enabled]


def _is_policy(path: Path) -> bool:
    return path.name in POLICY_NAMES


def validate_paths(paths: list[Path]) -> list[SpecIssue]:
    """Every problem of the campaign and policy files at *paths* (``baton validate``).

    A directory means its ``policy.yaml`` (or ``policy.yml``) when present, the campaigns
    in its ``campaigns/`` folder when that exists, and the other ``*.yaml``/``*.yml`` files
    directly in it, read as campaigns.  A file is a policy when named ``policy.yaml`` or
    ``policy.yml`` and a campaign otherwise.  A path that does not exist is an issue.
    """
    issues: list[SpecIssue] = []
    campaign_files: list[Path] = []
    seen: set[Path] = set()

    def once(path: Path) -> bool:
        key = path.resolve()
        if key in seen:
            return False
        seen.add(key)
        return True

    for raw in paths:
        path = Path(raw)
        if not path.exists():
            issues.append(SpecIssue(path, None, FILE_FIELD, "no such file or directory: check the path"))
        elif path.is_dir():
            for name in POLICY_NAMES:
                if (path / name).is_file() and once(path / name):
                    issues.extend(_policy(path / name)[1])
            folder = path / "campaigns"
            if folder.is_dir():
                campaign_files.extend(f for f in _yaml_files(folder) if once(f))
            campaign_files.extend(f for f in _yaml_files(path) if not _is_policy(f) and once(f))
        elif once(path):
            if _is_policy(path):
                issues.extend(_policy(path)[1])
            else:
                campaign_files.append(path)
    issues.extend(_load_each(campaign_files, None)[1])
    return issues
