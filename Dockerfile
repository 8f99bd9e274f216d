# Airflow 3 with Baton's pinned dependencies, for docker-compose.yml (the production shape).
# The compose file mounts dags/, plugins/ and include/ over the copies baked in here, so
# code changes need no rebuild; dependency changes do (docker compose build).
FROM apache/airflow:3.3.2-python3.11

# runtime dependencies only (requirements.txt) and the CeleryExecutor the compose file uses
# (requirements-celery.txt: the Celery provider, Celery below 5.6 with its kombu, billiard,
# vine, amqp and redis client, all pinned in constraints.txt, so the image runs the versions
# the tests run, whatever the base image shipped).  The development and test tools, and
# pgserver (the embedded database of laptops), are in requirements-dev.txt and stay out.
# The base image already ships the Redis and FAB providers that the compose file uses.
COPY --chown=airflow:root requirements.txt requirements-celery.txt constraints.txt /opt/baton/
RUN pip install --no-cache-dir -r /opt/baton/requirements.txt -r /opt/baton/requirements-celery.txt \
        -c /opt/baton/constraints.txt \
    && python -c "import airflow.providers.celery.executors.celery_executor_utils"

COPY --chown=airflow:root include/ /opt/airflow/include/
COPY --chown=airflow:root dags/ /opt/airflow/dags/
COPY --chown=airflow:root plugins/ /opt/airflow/plugins/

ENV PYTHONPATH=/opt/airflow/include
