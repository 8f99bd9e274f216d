"""Baton's triggers (run in the triggerer).

``baton.airflow.triggers.BatchesReadyTrigger`` stays importable here: it is the class path
that deferred tasks of earlier versions serialised.
"""

from __future__ import annotations

from baton.airflow.triggers.batches import BatchesReadyTrigger

__all__ = ["BatchesReadyTrigger"]
