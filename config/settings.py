"""Settings from the environment, with defaults that run on a laptop.

Every value can be set with an environment variable of the same name in upper
case. Secrets (``ADMIN_TOKEN``, ``DATABASE_URL``, ``REDIS_URL``,
``REDIS_CLUSTER_URL``, ``JWT_SECRET``, ``PHOTO_URL_SECRET``) may instead be read from a file named
by ``<NAME>_FILE``, the way container secrets are mounted. A variable that is set but empty counts as unset.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
DEFAULT_SESSION_TTL_SECONDS = 7200
# How long a BLE token a session rotated away from still forwards match
# reports (ones already on the air). Short: it is how long a sniffer can link
# the old token to the new one by replaying it.
DEFAULT_TOKEN_ROTATION_GRACE_SECONDS = 15.0
MAX_TOKEN_ROTATION_GRACE_SECONDS = 60.0
DEFAULT_DATA_DIR = ".data"
DEFAULT_S3_REGION = "us-east-1"
DEFAULT_JWT_ISSUER = "proximity_server"
DEFAULT_JWT_AUDIENCE = "proximity_app"
DEFAULT_RATE_LIMIT_AUTH_PER_MINUTE = 10
DEFAULT_RATE_LIMIT_API_PER_MINUTE = 100
DEFAULT_RATE_LIMIT_MESSAGES_PER_MINUTE = 60
DEFAULT_PHOTO_URL_TTL_SECONDS = 3600
DEFAULT_STATS_MIN_COUNT = 10
DEFAULT_SUGGESTIONS_PER_DAY = 10
DEFAULT_SUGGESTIONS_MAX_EXPOSURE = 50
LOG_FORMATS = ("json", "text")
PASSWORD_HASH_PROFILES = ("production", "test")
DEFAULT_PASSWORD_HASH_PROFILE = PASSWORD_HASH_PROFILES[0]


class SettingsError(ValueError):
    """A setting has a value the server cannot run with."""


def _read(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name)
    if value:
        return value
    path = env.get(f"{name}_FILE")
    if path:
        try:
            text = Path(path).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise SettingsError(f"{name}_FILE: cannot read {path!r}: {exc.strerror}") from None
        return text or None
    return None


def _int(env: Mapping[str, str], name: str, default: int, *, minimum: int = 0) -> int:
    raw = _read(env, name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise SettingsError(f"{name} must be at least {minimum}, got {value}")
    return value


def _grace(env: Mapping[str, str]) -> float:
    name = "TOKEN_ROTATION_GRACE_SECONDS"
    value = _float(env, name, DEFAULT_TOKEN_ROTATION_GRACE_SECONDS, positive=False)
    if value > MAX_TOKEN_ROTATION_GRACE_SECONDS:
        raise SettingsError(f"{name} must be at most {MAX_TOKEN_ROTATION_GRACE_SECONDS:g}, got {value:g}")
    return value


def _float(env: Mapping[str, str], name: str, default: float, *, positive: bool = True) -> float:
    """A finite number, above zero (or at least zero when not ``positive``)."""
    raw = _read(env, name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number, got {raw!r}") from None
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        bound = "above 0" if positive else "at least 0"
        raise SettingsError(f"{name} must be a finite number {bound}, got {raw!r}")
    return value


def _networks(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    """Comma-separated IPs or CIDRs, each checked (and normalised)."""
    raw = _read(env, name) or ""
    networks = []
    for item in (part.strip() for part in raw.split(",")):
        if not item:
            continue
        try:
            networks.append(str(ipaddress.ip_network(item, strict=False)))
        except ValueError:
            raise SettingsError(f"{name}: {item!r} is not an IP address or CIDR") from None
    return tuple(networks)


def _log_format(env: Mapping[str, str]) -> str | None:
    raw = _read(env, "LOG_FORMAT")
    if raw is None:
        return None
    value = raw.strip().lower()
    if value not in LOG_FORMATS:
        raise SettingsError(f"LOG_FORMAT must be one of {', '.join(LOG_FORMATS)}, got {raw!r}")
    return value


def _profile(env: Mapping[str, str]) -> str:
    profile = (_read(env, "PASSWORD_HASH_PROFILE") or DEFAULT_PASSWORD_HASH_PROFILE).lower()
    if profile not in PASSWORD_HASH_PROFILES:
        choices = ", ".join(PASSWORD_HASH_PROFILES)
        raise SettingsError(f"PASSWORD_HASH_PROFILE must be one of {choices}, got {profile!r}")
    return profile


def _emails(raw: str | None) -> frozenset[str]:
    """ADMIN_EMAILS: comma- (or newline-) separated, compared lower-case."""
    return frozenset(e.strip().lower() for e in re.split(r"[,\n]", raw or "") if e.strip())


def normalise_database_url(url: str) -> str:
    """Accept the SQLAlchemy spelling ``postgresql+asyncpg://`` as well."""
    for prefix in ("postgresql+asyncpg://", "postgres+asyncpg://"):
        if url.startswith(prefix):
            return "postgresql://" + url[len(prefix) :]
    return url


@dataclass(frozen=True, slots=True)
class Settings:
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    database_url: str | None = field(default=None, repr=False)  # may hold a password
    redis_url: str | None = field(default=None, repr=False)
    # redis_url names a node of a Redis Cluster (set by REDIS_CLUSTER_URL).
    redis_cluster: bool = False
    # Every Redis key and channel starts with this; tests give each app its own.
    redis_prefix: str = "px:"
    # PostgreSQL schema the server's tables live in (tests use one per test).
    db_schema: str = "public"
    # application_name of the server's PostgreSQL connections (pg_stat_activity).
    db_application_name: str = "proximity_server"
    session_ttl_seconds: int = DEFAULT_SESSION_TTL_SECONDS
    token_rotation_grace_seconds: float = DEFAULT_TOKEN_ROTATION_GRACE_SECONDS
    allowed_origins: tuple[str, ...] = ()
    admin_token: str | None = field(default=None, repr=False)
    data_dir: Path = Path(DEFAULT_DATA_DIR)
    # Background work.
    stats_flush_interval: float = 5.0
    ws_heartbeat_seconds: float = 30.0
    # Shutdown: how long in-flight requests get to finish.
    shutdown_grace_seconds: float = 10.0
    log_level: str = "INFO"
    # "json" or "text"; None: text on a terminal, JSON elsewhere.
    log_format: str | None = None
    access_log: bool = True
    # Photo bytes: S3-compatible storage when endpoint and bucket are set,
    # otherwise files under data_dir / "photos".
    s3_endpoint_url: str | None = None
    s3_bucket: str | None = None
    s3_region: str = DEFAULT_S3_REGION
    s3_access_key_id: str | None = field(default=None, repr=False)
    s3_secret_access_key: str | None = field(default=None, repr=False)
    # Accounts. Without a JWT secret, one is generated once under data_dir.
    jwt_secret: str | None = field(default=None, repr=False)
    jwt_issuer: str = DEFAULT_JWT_ISSUER
    jwt_audience: str = DEFAULT_JWT_AUDIENCE
    rate_limit_auth_per_minute: int = DEFAULT_RATE_LIMIT_AUTH_PER_MINUTE
    rate_limit_api_per_minute: int = DEFAULT_RATE_LIMIT_API_PER_MINUTE
    rate_limit_messages_per_minute: int = DEFAULT_RATE_LIMIT_MESSAGES_PER_MINUTE
    # Key of signed photo URLs; without one, derived from the JWT key.
    photo_url_secret: str | None = field(default=None, repr=False)
    photo_url_ttl_seconds: int = DEFAULT_PHOTO_URL_TTL_SECONDS
    # The web app's files (index.html, docs.html, static/); None: the packaged ones.
    web_root: Path | None = None
    # Peers whose X-Forwarded-For is believed (IPs or CIDRs).
    trusted_proxies: tuple[str, ...] = ()
    # "production" argon2id parameters, or cheap "test" ones for the test suite.
    password_hash_profile: str = DEFAULT_PASSWORD_HASH_PROFILE
    # Admin console: accounts whose email is listed sign in as admins.
    admin_emails: frozenset[str] = frozenset()
    # Stats cells below this count are hidden (and enough others to protect them).
    stats_min_count: int = DEFAULT_STATS_MIN_COUNT
    # Daily suggestions: list length, and how many lists a day one person may appear in.
    suggestions_per_day: int = DEFAULT_SUGGESTIONS_PER_DAY
    suggestions_max_exposure: int = DEFAULT_SUGGESTIONS_MAX_EXPOSURE

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        origins = _read(env, "ALLOWED_ORIGINS") or ""
        database_url = _read(env, "DATABASE_URL")
        redis_url = _read(env, "REDIS_URL")
        redis_cluster_url = _read(env, "REDIS_CLUSTER_URL")
        if redis_url and redis_cluster_url and redis_url != redis_cluster_url:
            raise SettingsError("set REDIS_URL (one Redis) or REDIS_CLUSTER_URL (a Redis Cluster), not both")
        return cls(
            host=_read(env, "HOST") or DEFAULT_HOST,
            port=_int(env, "PORT", DEFAULT_PORT),
            database_url=normalise_database_url(database_url) if database_url else None,
            redis_url=redis_cluster_url or redis_url,
            redis_cluster=bool(redis_cluster_url),
            redis_prefix=_read(env, "REDIS_PREFIX") or "px:",
            db_schema=_read(env, "DB_SCHEMA") or "public",
            db_application_name=_read(env, "DB_APPLICATION_NAME") or "proximity_server",
            session_ttl_seconds=_int(env, "SESSION_TTL_SECONDS", DEFAULT_SESSION_TTL_SECONDS, minimum=1),
            token_rotation_grace_seconds=_grace(env),
            allowed_origins=tuple(o.strip() for o in origins.split(",") if o.strip()),
            admin_token=_read(env, "ADMIN_TOKEN"),
            data_dir=Path(_read(env, "DATA_DIR") or DEFAULT_DATA_DIR),
            stats_flush_interval=_float(env, "STATS_FLUSH_INTERVAL", 5.0),
            ws_heartbeat_seconds=_float(env, "WS_HEARTBEAT_SECONDS", 30.0),
            shutdown_grace_seconds=_float(env, "SHUTDOWN_GRACE_SECONDS", 10.0, positive=False),
            log_level=(_read(env, "LOG_LEVEL") or "INFO").upper(),
            log_format=_log_format(env),
            access_log=(_read(env, "ACCESS_LOG") or "1").lower() not in ("0", "false", "no", "off"),
            s3_endpoint_url=_read(env, "S3_ENDPOINT_URL"),
            s3_bucket=_read(env, "S3_BUCKET"),
            s3_region=_read(env, "S3_REGION") or DEFAULT_S3_REGION,
            s3_access_key_id=_read(env, "S3_ACCESS_KEY_ID"),
            s3_secret_access_key=_read(env, "S3_SECRET_ACCESS_KEY"),
            jwt_secret=_read(env, "JWT_SECRET"),
            jwt_issuer=_read(env, "JWT_ISSUER") or DEFAULT_JWT_ISSUER,
            jwt_audience=_read(env, "JWT_AUDIENCE") or DEFAULT_JWT_AUDIENCE,
            rate_limit_auth_per_minute=_int(
                env, "RATE_LIMIT_AUTH_PER_MINUTE", DEFAULT_RATE_LIMIT_AUTH_PER_MINUTE, minimum=1
            ),
            rate_limit_api_per_minute=_int(
                env, "RATE_LIMIT_API_PER_MINUTE", DEFAULT_RATE_LIMIT_API_PER_MINUTE, minimum=1
            ),
            rate_limit_messages_per_minute=_int(
                env, "RATE_LIMIT_MESSAGES_PER_MINUTE", DEFAULT_RATE_LIMIT_MESSAGES_PER_MINUTE, minimum=1
            ),
            photo_url_secret=_read(env, "PHOTO_URL_SECRET"),
            photo_url_ttl_seconds=_int(env, "PHOTO_URL_TTL_SECONDS", DEFAULT_PHOTO_URL_TTL_SECONDS, minimum=1),
            web_root=Path(web_root) if (web_root := _read(env, "WEB_ROOT")) else None,
            trusted_proxies=_networks(env, "TRUSTED_PROXIES"),
            password_hash_profile=_profile(env),
            admin_emails=_emails(_read(env, "ADMIN_EMAILS")),
            stats_min_count=_int(env, "STATS_MIN_COUNT", DEFAULT_STATS_MIN_COUNT, minimum=1),
            suggestions_per_day=_int(env, "SUGGESTIONS_PER_DAY", DEFAULT_SUGGESTIONS_PER_DAY, minimum=1),
            suggestions_max_exposure=_int(
                env, "SUGGESTIONS_MAX_EXPOSURE", DEFAULT_SUGGESTIONS_MAX_EXPOSURE, minimum=1
            ),
        )

    def with_overrides(self, **changes: object) -> Settings:
        return replace(self, **changes)  # type: ignore[arg-type]


def photos_dir(settings: Settings) -> Path:
    """Where photo bytes live when no S3 storage is configured."""
    return settings.data_dir / "photos"
