"""Settings from the environment and from *_FILE secrets."""

from __future__ import annotations

from pathlib import Path

import pytest

from config.settings import Settings, SettingsError


def test_defaults_run_locally() -> None:
    s = Settings.from_env({})
    assert (s.host, s.port, s.session_ttl_seconds) == ("127.0.0.1", 8080, 7200)
    assert s.database_url is None and s.redis_url is None and s.admin_token is None


def test_environment_values(tmp_path: Path) -> None:
    secret = tmp_path / "admin"
    secret.write_text("from-a-file\n")
    s = Settings.from_env(
        {
            "HOST": "0.0.0.0",  # noqa: S104
            "PORT": "9000",
            "DATABASE_URL": "postgresql+asyncpg://u:p@db/sighej",
            "REDIS_URL": "redis://r:6379/1",
            "SESSION_TTL_SECONDS": "60",
            "ALLOWED_ORIGINS": "http://localhost:3000, https://app.example",
            "ADMIN_TOKEN_FILE": str(secret),
            "DATA_DIR": "/var/lib/px",
        }
    )
    assert s.port == 9000
    assert s.database_url == "postgresql://u:p@db/sighej"
    assert s.allowed_origins == ("http://localhost:3000", "https://app.example")
    assert s.admin_token == "from-a-file"
    assert str(s.data_dir) == "/var/lib/px"
    assert "from-a-file" not in repr(s)  # secrets stay out of logs


@pytest.mark.parametrize(
    "env",
    [
        {"PORT": "eighty"},
        {"SESSION_TTL_SECONDS": "0"},
        {"ADMIN_TOKEN_FILE": "/nonexistent/secret"},
        {"WS_HEARTBEAT_SECONDS": "0"},
        {"STATS_FLUSH_INTERVAL": "nan"},
        {"SHUTDOWN_GRACE_SECONDS": "-1"},
        {"SHUTDOWN_GRACE_SECONDS": "inf"},
        {"REDIS_URL": "redis://one:6379", "REDIS_CLUSTER_URL": "redis://other:6379"},
    ],
)
def test_bad_values_are_refused(env: dict[str, str]) -> None:
    with pytest.raises(SettingsError):
        Settings.from_env(env)


def test_a_cluster_url_selects_cluster_mode() -> None:
    s = Settings.from_env({"REDIS_CLUSTER_URL": "redis://node-1:6379"})
    assert s.redis_cluster is True and s.redis_url == "redis://node-1:6379"
    assert Settings.from_env({"REDIS_URL": "redis://one:6379"}).redis_cluster is False
    assert Settings.from_env({"SHUTDOWN_GRACE_SECONDS": "0"}).shutdown_grace_seconds == 0
