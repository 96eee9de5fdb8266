"""The one settings object: frozen, built once from environment variables and CLI flags.

Nothing reads the environment at import time; `Settings.from_env()` is called by the CLI (or a
test) and the result is passed explicitly to whatever needs it.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import secrets
from collections.abc import Mapping
from typing import Any

ENV_PREFIX = "USAGE_"


@dataclasses.dataclass(frozen=True)
class Settings:
    """Every knob of the service. Each field has an env var `USAGE_<FIELD>` and a CLI flag."""

    # Storage. Empty database_url means the embedded SQLite file in data_dir.
    database_url: str = ""
    data_dir: str = "./usage-data"
    db_pool_size: int = 10
    db_pool_timeout_s: float = 5.0
    # Serving.
    host: str = "127.0.0.1"
    port: int = 50051
    max_workers: int = 16
    # Server processes sharing the gRPC port (SO_REUSEPORT), each with its own pool and RPC threads;
    # 1 (the default) serves from this process alone. See server/workers.py.
    workers: int = 1
    # RPCs admitted at once (running or queued for a worker); beyond it grpc answers RESOURCE_EXHAUSTED.
    max_concurrent_rpcs: int = 64
    grace_period_s: float = 10.0
    # Seconds between database pings that set the grpc.health.v1 status (server/health_monitor.py);
    # 0 or less: no pings, the status stays SERVING until SIGTERM.
    health_check_interval_s: float = 2.0
    # Observability: Prometheus /metrics port (-1: off, 0: any free port), log lines as json or text.
    metrics_port: int = -1
    log_format: str = "json"
    # HTTP/JSON gateway: `serve` runs one beside the gRPC server when http_port >= 0 (0: a free port);
    # `usage-service gateway` calls grpc_target (default host:port) with gateway_timeout_s as the
    # deadline of requests that send no grpc-timeout header.
    http_port: int = -1
    grpc_target: str = ""
    gateway_timeout_s: float = 30.0
    # Auth: HS256 secret, or a PEM public key file for RS256/ES256.
    jwt_secret: str = ""
    jwt_public_key_file: str = ""
    jwt_private_key_file: str = ""
    jwt_org_claim: str = "org_id"
    jwt_audience: str = ""
    jwt_issuer: str = ""
    # Semantics and limits.
    max_aggregate_buckets: int = 1000
    max_future_skew_s: int = 300
    default_query_timeout_s: float = 30.0
    cursor_secret: str = ""

    @property
    def resolved_database_url(self) -> str:
        """The database URL, defaulting to the embedded SQLite file in data_dir."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{pathlib.Path(self.data_dir).resolve() / 'usage.sqlite3'}"

    @property
    def is_embedded(self) -> bool:
        return not self.database_url

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Build settings from `USAGE_*` variables, then apply explicit overrides (CLI flags)."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for field in dataclasses.fields(cls):
            raw = env.get(ENV_PREFIX + field.name.upper())
            if raw is not None and raw != "":
                values[field.name] = _parse(field, raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def with_local_secrets(self) -> Settings:
        """Fill in the JWT and cursor secrets from data_dir when none are configured.

        The first start generates a random secret and keeps it beside the embedded database, so
        tokens minted by `usage-service token` stay valid across restarts.
        """
        jwt_secret, cursor_secret = self.jwt_secret, self.cursor_secret
        if not jwt_secret and not self.jwt_public_key_file:
            jwt_secret = _stored_secret(pathlib.Path(self.data_dir) / "jwt-secret")
        if not cursor_secret:
            cursor_secret = _stored_secret(pathlib.Path(self.data_dir) / "cursor-secret")
        return dataclasses.replace(self, jwt_secret=jwt_secret, cursor_secret=cursor_secret)


def _parse(field: dataclasses.Field[Any], raw: str) -> Any:
    kind = field.type if isinstance(field.type, str) else field.type.__name__
    try:
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
    except ValueError as exc:
        raise ValueError(f"{ENV_PREFIX}{field.name.upper()}: not a number: {raw!r}") from exc
    return raw


def _stored_secret(path: pathlib.Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    secret = secrets.token_urlsafe(48)
    # O_EXCL: two processes starting at once must agree on one secret.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as f:
        f.write(secret)
    return secret
