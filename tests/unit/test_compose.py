"""docker-compose.yml has the production shape: Postgres, Redis and Airflow 3 with Celery."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"

AIRFLOW_SERVICES = {
    "airflow-apiserver": "api-server",
    "airflow-scheduler": "scheduler",
    "airflow-dag-processor": "dag-processor",
    "airflow-triggerer": "triggerer",
    "airflow-worker": "celery worker",
}
SECRETISH = re.compile(r"PASSWORD|SECRET|FERNET|JWT|^AIRFLOW_CONN_")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def command_text(service: dict[str, Any]) -> str:
    cmd = service.get("command", "")
    return " ".join(cmd) if isinstance(cmd, list) else str(cmd)


def test_every_service_exists(compose: dict[str, Any]) -> None:
    services = compose["services"]
    expected = {"postgres", "redis", "airflow-init", *AIRFLOW_SERVICES}
    assert expected <= set(services), f"missing: {sorted(expected - set(services))}"


def test_postgres_and_redis(compose: dict[str, Any]) -> None:
    postgres, redis = compose["services"]["postgres"], compose["services"]["redis"]
    assert postgres["image"].startswith("postgres:16")
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    assert redis["image"].startswith("redis:7")
    assert "healthcheck" in redis


@pytest.mark.parametrize(("name", "command"), sorted(AIRFLOW_SERVICES.items()))
def test_airflow_component_commands(compose: dict[str, Any], name: str, command: str) -> None:
    service = compose["services"][name]
    assert command_text(service).strip() == command
    assert "healthcheck" in service
    depends = service["depends_on"]
    assert depends["postgres"]["condition"] == "service_healthy"
    assert depends["redis"]["condition"] == "service_healthy"
    assert depends["airflow-init"]["condition"] == "service_completed_successfully"


def test_apiserver_publishes_8080(compose: dict[str, Any]) -> None:
    ports = [str(p) for p in compose["services"]["airflow-apiserver"]["ports"]]
    assert any(p.endswith(":8080") for p in ports)


def test_init_migrates_airflow_and_the_store(compose: dict[str, Any]) -> None:
    init = compose["services"]["airflow-init"]
    text = command_text(init)
    assert "airflow db migrate" in text
    assert re.search(r"(python -m baton|baton) db upgrade", text)
    assert text.index("airflow db migrate") < text.index("db upgrade", text.index("airflow db migrate") + 1)
    assert init.get("restart", "no") == "no"


@pytest.mark.parametrize("name", ["airflow-init", *sorted(AIRFLOW_SERVICES)])
def test_airflow_services_share_image_mounts_and_environment(compose: dict[str, Any], name: str) -> None:
    service = compose["services"][name]
    assert service.get("build") or "apache/airflow:3.3.2" in service.get("image", "")
    mounts = {v.split(":")[0].rstrip("/"): v.split(":")[1] for v in service["volumes"] if isinstance(v, str)}
    assert mounts["./dags"] == "/opt/airflow/dags"
    assert mounts["./plugins"] == "/opt/airflow/plugins"
    assert mounts["./include"] == "/opt/airflow/include"

    env = service["environment"]
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql")
    assert "@postgres:5432/airflow" in env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    assert env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://")
    assert "@redis:6379" in env["AIRFLOW__CELERY__BROKER_URL"]
    assert env["AIRFLOW__CELERY__RESULT_BACKEND"].startswith("db+postgresql://")
    assert str(env["AIRFLOW__CORE__LOAD_EXAMPLES"]).lower() == "false"
    assert env["PYTHONPATH"] == "/opt/airflow/include"
    assert env["BATON_DATABASE_URL"].startswith("postgresql://")
    assert env["BATON_DATABASE_URL"].endswith("@postgres:5432/baton")
    for conn in ("BATON_SMTP", "BATON_SMS", "BATON_PUSH"):
        assert re.fullmatch(rf"\$\{{AIRFLOW_CONN_{conn}:-[^}}]+\}}", env[f"AIRFLOW_CONN_{conn}"]), conn


def test_no_hard_coded_secrets(compose: dict[str, Any]) -> None:
    """Secret-looking settings come from ${VAR:-local default}; passwords in URLs too."""
    for name, service in compose["services"].items():
        env = service.get("environment") or {}
        for key, value in env.items():
            if SECRETISH.search(key):
                assert str(value).startswith("${"), f"{name}: {key} must come from the environment"
            for _user, password in re.findall(r"://(\$\{[^}]*\}|[^:/@]*):(\$\{[^}]*\}|[^@/]*)@", str(value)):
                assert password in ("", "${POSTGRES_PASSWORD:-airflow}"), (
                    f"{name}: {key} hard-codes a password"
                )


def test_dockerfile_pins_airflow_and_installs_requirements() -> None:
    text = DOCKERFILE.read_text(encoding="utf-8")
    assert re.search(r"^FROM apache/airflow:3\.3\.2-python3\.11\s*$", text, re.M)
    assert "-c /opt/baton/constraints.txt" in text
    assert "requirements" in text
    assert "PYTHONPATH=/opt/airflow/include" in text


def check_compose(path: Path) -> subprocess.CompletedProcess[str]:
    """Validate *path* against the Compose Specification's JSON schema (vendored by
    check-jsonschema, so nothing is downloaded); exit status 0 means valid, 1 invalid."""
    return subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_compose_file_matches_the_compose_specification() -> None:
    result = check_compose(COMPOSE)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ok -- validation done" in result.stdout


# One defect each, put into a copy of the real file: the check must reject every one, naming it.
BROKEN = {
    "an unknown key in a service": (
        "  airflow-scheduler:\n    <<: *airflow-common\n",
        "  airflow-scheduler:\n    <<: *airflow-common\n    restrat: always\n",
        "'restrat' was unexpected",
    ),
    "a depends_on condition that does not exist": (
        "condition: service_completed_successfully",
        "condition: service_finished",
        "'service_finished' is not one of",
    ),
    "a misspelt top-level key": ("\nvolumes:\n", "\nvolume:\n", "'volume' does not match"),
    "a wrong type in the shared x-airflow-common block": (
        '    AIRFLOW__CORE__LOAD_EXAMPLES: "false"\n',
        "    AIRFLOW__CORE__LOAD_EXAMPLES: [false]\n",
        "services['airflow-scheduler'].environment",
    ),
}


@pytest.mark.parametrize("defect", sorted(BROKEN))
def test_the_schema_check_rejects_a_broken_compose_file(defect: str, tmp_path: Path) -> None:
    old, new, complaint = BROKEN[defect]
    text = COMPOSE.read_text(encoding="utf-8")
    assert old in text, f"docker-compose.yml changed: update the {defect!r} case"
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(text.replace(old, new, 1), encoding="utf-8")
    result = check_compose(broken)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Schema validation errors were encountered" in result.stdout
    assert complaint in result.stdout, result.stdout
