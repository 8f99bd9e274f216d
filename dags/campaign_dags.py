"""One Airflow DAG per campaign file in dags/campaigns/ (see SPEC §1).

Thin on purpose: the builder in ``baton.airflow.dags.campaigns`` does the work, reading only
YAML at parse time.  An invalid campaign file becomes a placeholder DAG tagged
``invalid`` that shows its errors; it never hides the other campaigns.
"""

from __future__ import annotations

from pathlib import Path

from baton.airflow.dags.campaigns import build_campaign_dags

globals().update(build_campaign_dags(Path(__file__).resolve().parent))
