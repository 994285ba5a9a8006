"""docker-compose.yml: production-shaped, and valid for Compose itself.

``docker compose config`` (v2) or ``docker-compose config`` (1.x) validates
the file when either is installed; the shape the product promises is checked
here either way.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    return data


def compose_command() -> list[str] | None:
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True, timeout=30).returncode == 0:
        return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    return [legacy] if legacy else None


def test_compose_validates_the_file() -> None:
    command = compose_command()
    if command is None:
        pytest.skip("neither `docker compose` nor docker-compose is installed")
    result = subprocess.run(
        [*command, "-f", str(COMPOSE_FILE), "--project-directory", str(ROOT), "config", "-q"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr


def test_two_server_replicas_behind_nginx_with_the_backing_services() -> None:
    services = compose()["services"]
    servers = [name for name, s in services.items() if s.get("build")]
    assert len(servers) >= 2
    assert set(services["nginx"]["depends_on"]) >= set(servers)
    assert services["postgres"]["image"].startswith("postgres:16")
    assert services["redis"]["image"].startswith("redis:7")
    assert services["minio"]["image"].startswith("minio/minio")
    for name, service in services.items():
        assert "healthcheck" in service, f"{name} has no health check"
    for name in servers:
        env = services[name]["environment"]
        assert env["REDIS_URL"].startswith("redis://redis:")
        assert env["S3_ENDPOINT_URL"] == "http://minio:9000"
        assert services[name]["read_only"] is True
        assert all(condition == {"condition": "service_healthy"} for condition in services[name]["depends_on"].values())


def test_secrets_are_files_and_never_inline() -> None:
    data = compose()
    declared = data["secrets"]
    assert all(set(spec) == {"file"} for spec in declared.values())
    for name, service in data["services"].items():
        for secret in service.get("secrets", []):
            assert secret in declared, f"{name} uses an undeclared secret {secret}"
        env = service.get("environment", {})
        for key, value in env.items():
            secret_like = any(word in key for word in ("PASSWORD", "SECRET", "TOKEN", "DATABASE_URL"))
            if secret_like:
                assert key.endswith("_FILE") and str(value).startswith("/run/secrets/"), f"{name}: {key} is inline"


def test_nginx_is_websocket_aware_without_sticky_sessions() -> None:
    conf = (ROOT / "deploy" / "nginx.conf").read_text(encoding="utf-8")
    assert "proxy_set_header Upgrade $http_upgrade" in conf
    assert "ip_hash" not in conf and "sticky" not in conf


def test_the_image_runs_as_a_user_other_than_root() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    users = [line.split()[1] for line in dockerfile.splitlines() if line.startswith("USER ")]
    assert users and users[-1] not in ("root", "0")
