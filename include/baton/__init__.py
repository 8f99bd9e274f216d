"""Baton: marketing orchestration on Apache Airflow 3.

Campaigns only *propose* candidate messages; one arbitration cycle decides, per
person, which of them become messages.  This package holds the product; only
``baton.airflow`` imports Airflow.
"""

from __future__ import annotations

__version__ = "0.1.0"
