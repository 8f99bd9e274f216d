"""Ad-platform audiences: normalised, SHA-256-hashed emails and phones in a customer-match CSV.

Ad platforms (Google Customer Match, Meta custom audiences…) take lists of hashed
identifiers.  Each batch becomes one file per audience list::

    {base_path}/audiences/{list}/{batch_id}.csv      header: email_sha256,phone_sha256

with one row per message: the lower-case hex SHA-256 of the normalised email (trimmed,
lower-cased) and of the normalised phone (E.164: ``+`` and digits), empty when the
person has none.  A person with neither is terminal (nothing to match on).  ``list``
is the rendered ``audience.list`` of the campaign; characters other than letters,
digits, ``_``, ``-`` and ``.`` become ``_`` in the folder name.  The provider id is the
file's path under ``base_path``.  Files are written atomically (see
``baton.delivery.base.write_atomic``) and named after the message ids, so the channel
is idempotent by file name.  Uploading the files to the platform is the platform
connector's job (most poll a bucket).
"""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from collections.abc import Sequence
from typing import ClassVar

from baton.delivery.base import (
    FileChannelAdapter,
    OutboundMessage,
    Outcomes,
    SendResult,
    batch_id,
    csv_bytes,
    normalize_email,
    normalize_phone,
)
from baton.errors import DeliveryError, TerminalDeliveryError

HEADER = ("email_sha256", "phone_sha256")
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def sha256_hex(value: str | None) -> str:
    """Hex SHA-256 of the UTF-8 *value*; "" for None."""
    return hashlib.sha256(value.encode("utf-8")).hexdigest() if value else ""


def hashed_identifiers(email: str | None, phone: str | None) -> tuple[str, str]:
    """``(email_sha256, phone_sha256)`` of the normalised email and phone ("" when missing or invalid)."""
    return sha256_hex(normalize_email(email)), sha256_hex(normalize_phone(phone))


def list_folder(name: str) -> str:
    """The folder name of an audience list (path-safe)."""
    return _UNSAFE.sub("_", name.strip()).strip("._")


class AudienceAdapter(FileChannelAdapter):
    """Hashed customer-match CSVs, one per list per batch."""

    channel: ClassVar[str] = "audience"
    address_field: str | None = None  # matches on the hashed email and phone together

    def send_batch(self, msgs: Sequence[OutboundMessage], *, interval: float = 0.0) -> Outcomes:
        """Write one CSV per audience list; yield its messages once it is written (unusable ones first)."""
        groups: dict[str, list[tuple[OutboundMessage, tuple[str, str]]]] = defaultdict(list)
        for msg in msgs:
            folder = list_folder(msg.content.get("list", ""))
            if not folder:
                yield (
                    msg,
                    TerminalDeliveryError(
                        f"message {msg.message_id}: audience list name {msg.content.get('list')!r} is empty or unusable"
                    ),
                )
                continue
            row = hashed_identifiers(msg.recipient.email, msg.recipient.phone)
            if not any(row):
                yield (
                    msg,
                    TerminalDeliveryError(
                        f"message {msg.message_id}: no valid email or E.164 phone to match on"
                    ),
                )
                continue
            groups[folder].append((msg, row))
        for folder, members in groups.items():
            name = f"{batch_id(m.message_id for m, _ in members)}.csv"
            data = csv_bytes(HEADER, (row for _, row in members))
            written = self._write(self.root() / "audiences" / folder, name, data)
            for msg, _ in members:
                yield (
                    msg,
                    (
                        written
                        if isinstance(written, DeliveryError)
                        else SendResult(msg.message_id, f"audiences/{folder}/{written}")
                    ),
                )


__all__ = ["HEADER", "AudienceAdapter", "hashed_identifiers", "list_folder", "sha256_hex"]
