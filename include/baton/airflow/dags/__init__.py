"""DAG builders: the thin files in ``dags/`` call :func:`.campaigns.build_campaign_dags` and
:func:`.arbitration.build_arbitration_dag`, which read only YAML at parse time."""
