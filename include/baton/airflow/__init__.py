"""Everything that imports Airflow, laid out by role as Airflow's providers are.

* :mod:`baton.airflow.hooks` — Airflow Connections mapped to what the product needs: the
  store's engine (connection ``baton_db``) and the channels' :class:`ConnectionInfo`;
* :mod:`baton.airflow.operators` and :mod:`baton.airflow.triggers` — the deferrable wait
  of a cycle for its campaigns;
* :mod:`baton.airflow.tasks` — the bodies of the tasks (campaign batch, cycle, delivery),
  kept out of the DAG files so that parsing stays cheap;
* :mod:`baton.airflow.dags` — the DAG builders the thin files in ``dags/`` call.

Dependencies point one way: ``dags`` → ``tasks``/``operators`` → ``hooks``; nothing here
imports a DAG builder.  The rest of ``baton`` runs without Airflow (the CLI, tests,
``baton simulate``).
"""
