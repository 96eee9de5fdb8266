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

from server.private_files import narrow, private_dir

ENV_PREFIX = "USAGE_"
# The data dir's files of the secrets `serve` generates when none are configured.
JWT_SECRET_FILE = "jwt-secret"
CURSOR_SECRET_FILE = "cursor-secret"


@dataclasses.dataclass(frozen=True)
class Settings:
    """Every knob of the service. Each field has an env var `USAGE_<FIELD>` and a CLI flag `--<field>`
    (dashes for underscores); its metadata "help" is the flag's help text (server/cli.py)."""

    # Storage.
    database_url: str = dataclasses.field(
        default="",
        metadata={
            "help": "SQLAlchemy URL, postgresql+psycopg://user:pass@host:5432/db or sqlite:///path; "
            "unset: the embedded SQLite file usage.sqlite3 in the data dir"
        },
    )
    data_dir: str = dataclasses.field(
        default="./usage-data",
        metadata={"help": "directory of the embedded database and of the generated secrets"},
    )
    db_pool_size: int = dataclasses.field(
        default=10,
        metadata={
            "help": "database connections in each pool of a server process (PostgreSQL keeps two: the"
            " single-statement reads' and the rest's)"
        },
    )
    db_pool_timeout_s: float = dataclasses.field(
        default=5.0, metadata={"help": "seconds a call waits for a free pool connection"}
    )
    # Serving.
    host: str = dataclasses.field(default="127.0.0.1", metadata={"help": "listen address"})
    port: int = dataclasses.field(
        default=50051, metadata={"help": "gRPC listen port, 0 for any free one, printed"}
    )
    max_workers: int = dataclasses.field(
        default=16, metadata={"help": "RPC threads: API calls running at once, of each server process"}
    )
    workers: int = dataclasses.field(
        default=1,
        metadata={
            "help": "server processes sharing the gRPC port (SO_REUSEPORT), each with its own RPC "
            "threads and database pool; use PostgreSQL for more than 1; 1: this process serves alone "
            "(server/workers.py)"
        },
    )
    max_concurrent_rpcs: int = dataclasses.field(
        default=64,
        metadata={
            "help": "RPCs admitted at once (running or queued for a worker); beyond it grpc answers "
            "RESOURCE_EXHAUSTED; 0: no bound"
        },
    )
    max_export_streams: int = dataclasses.field(
        default=4,
        metadata={
            "help": "ExportUsageEvents streams open at once in each server process (each holds an RPC "
            "thread for its whole life); beyond it RESOURCE_EXHAUSTED"
        },
    )
    max_export_streams_per_org: int = dataclasses.field(
        default=2,
        metadata={"help": "ExportUsageEvents streams one organization may have open at once per process"},
    )
    max_request_mib_in_flight: int = dataclasses.field(
        default=16,
        metadata={
            "help": "MiB of request messages (their wire size) the running calls of a process may parse "
            "and process at once, each taking several times its size in memory; a larger request waits "
            "for room within its deadline (rpc/admission.py); 0: no bound"
        },
    )
    grace_period_s: float = dataclasses.field(
        default=10.0,
        metadata={"help": "on SIGTERM, seconds that in-flight RPCs and HTTP requests may take to finish"},
    )
    health_check_interval_s: float = dataclasses.field(
        default=2.0,
        metadata={
            "help": "seconds between the database pings that set the grpc.health.v1 status "
            "(server/health_monitor.py); 0 or less: no pings, the status stays SERVING until SIGTERM"
        },
    )
    # Observability.
    metrics_port: int = dataclasses.field(
        default=-1,
        metadata={
            "help": "Prometheus /metrics port; -1: off, 0: any free port, printed; "
            "with several workers, worker i serves the port + i"
        },
    )
    log_format: str = dataclasses.field(
        default="json",
        metadata={
            "help": "log lines on stderr: json, one object per line, or text",
            "choices": ("json", "text"),
        },
    )
    # HTTP/JSON gateway.
    http_port: int = dataclasses.field(
        default=-1,
        metadata={
            "help": "serve also runs the HTTP/JSON gateway on this port when it is >= 0 "
            "(0: any free port, printed), -1: off"
        },
    )
    grpc_target: str = dataclasses.field(
        default="",
        metadata={"help": "the gRPC server that `usage-service gateway` calls, HOST:PORT; unset: host:port"},
    )
    gateway_timeout_s: float = dataclasses.field(
        default=30.0,
        metadata={"help": "gateway deadline, in seconds, of requests that send no grpc-timeout header"},
    )
    # Auth: an HS256 secret, or a PEM public key file for RS256/ES256.
    jwt_secret: str = dataclasses.field(
        default="",
        metadata={
            "help": "HS256 secret of the tokens; unset (and no public key file): generated once into "
            "the data dir",
            "secret": True,
        },
    )
    jwt_public_key_file: str = dataclasses.field(
        default="", metadata={"help": "PEM public key file: RS256/ES256 tokens instead of HS256"}
    )
    jwt_private_key_file: str = dataclasses.field(
        default="", metadata={"help": "PEM private key file that `usage-service token` signs with"}
    )
    jwt_org_claim: str = dataclasses.field(
        default="org_id", metadata={"help": "token claim naming the organization"}
    )
    jwt_caller_claim: str = dataclasses.field(
        default="sub",
        metadata={
            "help": "token claim naming the caller, recorded with each correction (void) it makes; "
            "a token without it can do everything but correct events"
        },
    )
    jwt_audience: str = dataclasses.field(
        default="", metadata={"help": "token audience (aud), checked when set"}
    )
    jwt_issuer: str = dataclasses.field(default="", metadata={"help": "token issuer (iss), checked when set"})
    # Semantics and limits.
    max_aggregate_buckets: int = dataclasses.field(
        default=1000, metadata={"help": "bucket cap of AggregateUsage"}
    )
    max_aggregate_points: int = dataclasses.field(
        default=50_000,
        metadata={
            "help": "most points (series x buckets) one AggregateUsage answer may hold; a request whose "
            "groups would exceed it is refused before the answer is built"
        },
    )
    as_of_horizon_days: int = dataclasses.field(
        default=400,
        metadata={
            "help": "how far back a query's as_of may reach (days); an older as_of is refused unless "
            "the organization's events have not changed since"
        },
    )
    aggregate_cache_mb: int = dataclasses.field(
        default=64,
        metadata={
            "help": "MiB of encoded AggregateUsage answers kept per server process, each valid while "
            "its organization's events are unchanged (requests with an explicit until); 0: off"
        },
    )
    max_future_skew_s: int = dataclasses.field(
        default=300, metadata={"help": "seconds into the future an event timestamp may be"}
    )
    default_query_timeout_s: float = dataclasses.field(
        default=30.0,
        metadata={"help": "statement timeout, in seconds, when the caller sets no shorter deadline"},
    )
    cursor_secret: str = dataclasses.field(
        default="",
        metadata={
            "help": "signs page cursors (share it across replicas); unset: generated once into the data dir",
            "secret": True,
        },
    )

    @property
    def resolved_database_url(self) -> str:
        """The database URL, defaulting to the embedded SQLite file in data_dir."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{pathlib.Path(self.data_dir).resolve() / 'usage.sqlite3'}"

    @property
    def is_embedded(self) -> bool:
        return not self.database_url

    @property
    def stored_jwt_secret_file(self) -> pathlib.Path | None:
        """The data_dir file that keeps the JWT secret when no key is configured; None when one is."""
        if self.jwt_secret or self.jwt_public_key_file:
            return None
        return pathlib.Path(self.data_dir) / JWT_SECRET_FILE

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
        if (stored := self.stored_jwt_secret_file) is not None:
            jwt_secret = _stored_secret(stored)
        if not cursor_secret:
            cursor_secret = _stored_secret(pathlib.Path(self.data_dir) / CURSOR_SECRET_FILE)
        return dataclasses.replace(self, jwt_secret=jwt_secret, cursor_secret=cursor_secret)

    def narrow_local_secrets(self) -> None:
        """Narrow to 0600 the data dir's generated secrets that exist (an older version left them
        wider), creating none: for the commands that sign nothing (`migrate`, `rollups`)."""
        for name in (JWT_SECRET_FILE, CURSOR_SECRET_FILE):
            if (path := pathlib.Path(self.data_dir) / name).is_file():
                narrow(path)


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
    private_dir(path.parent)
    try:
        secret = path.read_text().strip()
    except FileNotFoundError:
        pass
    else:
        narrow(path)
        return secret
    secret = secrets.token_urlsafe(48)
    # O_EXCL: two processes starting at once must agree on one secret.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as f:
        f.write(secret)
    return secret
