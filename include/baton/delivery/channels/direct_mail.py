"""Direct mail: a print vendor's CSV batch.

Each batch becomes one file ``{base_path}/direct_mail/{batch_id}.csv`` with the header
``name,postal_address,creative,message_id`` — the addressee (first and last name,
``Current Resident`` when unknown), the postal address as stored (multi-line
addresses stay one quoted cell), the print piece's code (the rendered
``direct_mail.creative``) and Baton's message id, by which the vendor can drop a
duplicate row.  A person without a postal address is terminal.  Files are written
atomically and named after the message ids (idempotent by file name); the provider
id is the file's path under ``base_path``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from baton.delivery.base import FileChannelAdapter, OutboundMessage, Outcomes, SendResult, batch_id, csv_bytes
from baton.errors import DeliveryError, TerminalDeliveryError

HEADER = ("name", "postal_address", "creative", "message_id")
NO_NAME = "Current Resident"


class DirectMailAdapter(FileChannelAdapter):
    """Print-vendor CSV, one file per batch."""

    channel: ClassVar[str] = "direct_mail"
    address_field: str | None = "postal_address"

    def send_batch(self, msgs: Sequence[OutboundMessage], *, interval: float = 0.0) -> Outcomes:
        """Write one CSV for the batch; yield its messages once it is written (unusable ones first)."""
        rows: list[tuple[OutboundMessage, tuple[str, str, str, str]]] = []
        for msg in msgs:
            address = (msg.recipient.postal_address or "").strip()
            creative = msg.content.get("creative", "").strip()
            if not address:
                yield msg, TerminalDeliveryError(f"message {msg.message_id}: no postal address")
            elif not creative:
                yield msg, TerminalDeliveryError(f"message {msg.message_id}: the creative code is empty")
            else:
                name = msg.recipient.full_name or NO_NAME
                rows.append((msg, (name, address, creative, str(msg.message_id))))
        if rows:
            name = f"{batch_id(m.message_id for m, _ in rows)}.csv"
            written = self._write(self.root() / "direct_mail", name, csv_bytes(HEADER, (r for _, r in rows)))
            for msg, _ in rows:
                yield (
                    msg,
                    (
                        written
                        if isinstance(written, DeliveryError)
                        else SendResult(msg.message_id, f"direct_mail/{written}")
                    ),
                )


__all__ = ["HEADER", "NO_NAME", "DirectMailAdapter"]
