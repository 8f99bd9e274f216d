"""Deferrable waiting: the triggerer polls the store until a cycle's batches are ready.

The trigger carries only the cycle time, the awaited (campaign, interval end) pairs and
the deadline — never a database URL or password; it resolves the store itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent


class BatchesReadyTrigger(BaseTrigger):
    """Waits, in the triggerer, for the candidate batches a cycle expects: fires ``ready`` when every
    expected campaign's batch is in, or ``deadline`` (with what is missing) when the wait ends."""

    def __init__(
        self, cycle_at: str, expected: dict[str, str], deadline: str, poll_interval: float = 15.0
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.cycle_at = cycle_at
        self.expected = expected
        self.deadline = deadline
        self.poll_interval = poll_interval

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """The trigger's import path and arguments, to be rebuilt in the triggerer."""
        return (
            "baton.airflow.triggers.BatchesReadyTrigger",
            {
                "cycle_at": self.cycle_at,
                "expected": self.expected,
                "deadline": self.deadline,
                "poll_interval": self.poll_interval,
            },
        )

    def _check(self) -> tuple[list[str], list[str]]:
        from baton.airflow.hooks.store import store_engine
        from baton.arbitration.cycle import batch_readiness

        expected = {k: datetime.fromisoformat(v) for k, v in self.expected.items()}
        return batch_readiness(store_engine(), datetime.fromisoformat(self.cycle_at), expected)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Poll the store every ``poll_interval`` seconds until the batches are ready or the deadline passes."""
        deadline = datetime.fromisoformat(self.deadline)
        while True:
            ready, missing = await asyncio.to_thread(self._check)
            if not missing:
                yield TriggerEvent({"status": "ready", "ready": ready, "missing": []})  # type: ignore[no-untyped-call]
                return
            if datetime.now(UTC) >= deadline:
                yield TriggerEvent(  # type: ignore[no-untyped-call]
                    {"status": "deadline", "ready": ready, "missing": missing}
                )
                return
            self.log.info("cycle %s waits for %s", self.cycle_at, ", ".join(missing))
            await asyncio.sleep(self.poll_interval)
