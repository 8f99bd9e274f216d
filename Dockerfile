# Airflow 3 with Baton's pinned dependencies, for docker-compose.yml (the production shape).
# The compose file mounts dags/, plugins/ and include/ over the copies baked in here, so
# code changes need no rebuild; dependency changes do (docker compose build).
FROM apache/airflow:3.3.2-python3.11

# runtime dependencies only: the development/test tools at the end of requirements.txt
# (and pgserver, the embedded database for laptops) stay out of the image.  The base
# image already ships the Celery, Redis and FAB providers that the compose file uses.
COPY --chown=airflow:root requirements.txt constraints.txt /opt/baton/
RUN sed -e '/^# development and tests/,$d' -e '/^pgserver==/d' /opt/baton/requirements.txt \
        > /opt/baton/requirements-runtime.txt \
    && pip install --no-cache-dir \
        -r /opt/baton/requirements-runtime.txt \
        -c /opt/baton/constraints.txt

COPY --chown=airflow:root include/ /opt/airflow/include/
COPY --chown=airflow:root dags/ /opt/airflow/dags/
COPY --chown=airflow:root plugins/ /opt/airflow/plugins/

ENV PYTHONPATH=/opt/airflow/include
