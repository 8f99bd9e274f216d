"""The deployment the Marketing view shows: the policy and every valid campaign of the dags folder,
read once and kept until a file changes.

Parsing the campaign and policy files (YAML, pydantic, the templates) takes ~50 ms, too much for
every page: :func:`deployment` keys its cache on the name, size and modification time of every file
under ``policy.yaml``, ``campaigns/`` and ``templates/`` (a few stat calls), so an edited file is
seen on the next request.  Disabled campaigns are kept (their past volumes are still shown, greyed);
invalid files are listed with their errors.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

from baton.spec import Campaign, Policy, SpecIssue, SpecValidationError, load_campaigns, load_policy

__all__ = ["Deployment", "deployment"]


@dataclass(frozen=True)
class Deployment:
    """The policy and campaigns of one dags folder."""

    folder: Path
    policy: Policy
    campaigns: dict[str, Campaign]  # every valid campaign (enabled or not), by id, in file order
    issues: tuple[SpecIssue, ...] = ()
    policy_error: str | None = None  # the policy file is invalid: defaults are shown meanwhile
    files: dict[str, Path] = field(default_factory=dict)  # campaign id -> its YAML file

    @property
    def enabled(self) -> dict[str, Campaign]:
        """The enabled campaigns (those with a DAG)."""
        return {k: c for k, c in self.campaigns.items() if c.enabled}

    def campaign_file(self, campaign_id: str) -> Path | None:
        """The YAML file of *campaign_id*, when it exists."""
        return self.files.get(campaign_id)


_cache: dict[Path, tuple[tuple[tuple[str, int, int], ...], Deployment]] = {}
_lock = threading.Lock()


def _signature(folder: Path) -> tuple[tuple[str, int, int], ...]:
    files: list[Path] = [folder / "policy.yaml"]
    for sub in ("campaigns", "templates"):
        d = folder / sub
        if d.is_dir():
            files += sorted(p for p in d.rglob("*") if p.is_file())
    out = []
    for p in files:
        try:
            st = p.stat()
        except OSError:
            continue
        out.append((str(p), st.st_mtime_ns, st.st_size))
    return tuple(out)


def _load(folder: Path) -> Deployment:
    policy_error = None
    try:
        policy = load_policy(folder / "policy.yaml")
    except SpecValidationError as exc:
        policy, policy_error = Policy(), str(exc)
    campaigns, issues = load_campaigns(folder / "campaigns", folder / "templates", policy=policy)
    files = {}
    for c in campaigns:
        for suffix in (".yaml", ".yml"):
            path = folder / "campaigns" / f"{c.id}{suffix}"
            if path.is_file():
                files[c.id] = path
                break
    return Deployment(
        folder, policy, {c.id: c for c in campaigns}, tuple(issues), policy_error=policy_error, files=files
    )


def deployment(folder: Path) -> Deployment:
    """The deployment of *folder* (cached until one of its files changes)."""
    folder = Path(folder).resolve()
    signature = _signature(folder)
    with _lock:
        hit = _cache.get(folder)
        if hit is not None and hit[0] == signature:
            return hit[1]
    loaded = _load(folder)
    with _lock:
        _cache[folder] = (signature, loaded)
    return loaded
