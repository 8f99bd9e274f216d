"""The central arbitration DAG: decides, per person and cycle, which candidates go (SPEC §3–4).

Thin on purpose: ``baton.airflow.dags.arbitration`` builds it from dags/policy.yaml (cadence,
wait, caps) and the campaign files (its inlets).  No database access at parse time.
"""

from __future__ import annotations

from pathlib import Path

from baton.airflow.dags.arbitration import build_arbitration_dag

dag = build_arbitration_dag(Path(__file__).resolve().parent)
