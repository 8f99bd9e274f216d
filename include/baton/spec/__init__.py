"""Campaign and policy files: pydantic models and YAML loading with ``file:line: field: message`` errors.

This package has no Airflow imports; it is used by the DAG builders, the arbitration
engine and ``baton validate`` alike.  See SPEC.md §1 (campaign YAML) and §2 (policy YAML).
"""

from __future__ import annotations

from baton.spec.durations import parse_duration
from baton.spec.enums import Category, Channel, ConsentMode, IdentifierKind, Outcome, Period
from baton.spec.issues import SpecIssue, SpecValidationError
from baton.spec.loader import load_campaign, load_campaigns, load_deployment, load_policy, validate_paths
from baton.spec.models import (
    Audience,
    AudienceMessage,
    Campaign,
    Cap,
    ChannelSettings,
    CycleSettings,
    DirectMailMessage,
    EmailMessage,
    IdentityPolicy,
    MessageBlocks,
    Policy,
    PushMessage,
    QuietHours,
    SmsMessage,
)

__all__ = [
    "Audience",
    "AudienceMessage",
    "Campaign",
    "Cap",
    "Category",
    "Channel",
    "ChannelSettings",
    "ConsentMode",
    "CycleSettings",
    "DirectMailMessage",
    "EmailMessage",
    "IdentifierKind",
    "IdentityPolicy",
    "MessageBlocks",
    "Outcome",
    "Period",
    "Policy",
    "PushMessage",
    "QuietHours",
    "SmsMessage",
    "SpecIssue",
    "SpecValidationError",
    "load_campaign",
    "load_campaigns",
    "load_deployment",
    "load_policy",
    "parse_duration",
    "validate_paths",
]
