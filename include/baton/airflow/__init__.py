"""Everything that imports Airflow: DAG builders, the store hook, tasks.

The rest of ``baton`` runs without Airflow (the CLI, tests, ``baton simulate``).
"""
