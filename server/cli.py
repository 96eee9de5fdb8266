"""`usage-service` command line: serve, gateway, migrate, rollups, token, health; `--version`.

Settings come from USAGE_* environment variables; flags override them. The flags are generated from
the fields of `Settings` (server/config.py), so a new setting gets its flag, type and help from one
place. A problem the operator fixes (a busy port, an unusable data dir, a database that does not
answer) ends the command with one line naming the flag or variable to change and exit code 2
(server/startup_errors.py). Nothing happens at import.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib.metadata
import logging
import pathlib
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from server.auth import mint_token, parse_ttl
from server.config import ENV_PREFIX, Settings
from server.memory import release_large_blocks
from server.startup_errors import (
    StartupError,
    data_dir_usable,
    database_reachable,
)
from server.workers import MAX_PROCESSES, check_worker_count

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from server.storage.sql_storage import SqlStorage

SETTINGS = {field.name: field for field in dataclasses.fields(Settings)}
# The settings each subcommand but serve (which takes them all) reads. migrate and rollups still take
# the --jwt-secret they always had (scripts pass it), but need and create no secret.
STORAGE_SETTINGS = ("database_url", "data_dir", "jwt_secret")
TOKEN_SETTINGS = (
    *STORAGE_SETTINGS,
    "jwt_public_key_file",
    "jwt_private_key_file",
    "jwt_org_claim",
    "jwt_caller_claim",
    "jwt_audience",
    "jwt_issuer",
)
# `gateway --port` is its HTTP port (http_port), added by hand: its own listen port, not the gRPC one.
GATEWAY_SETTINGS = ("host", "grpc_target", "gateway_timeout_s", "grace_period_s")


@contextlib.contextmanager
def _operator_engine(settings: Settings) -> Iterator[Engine]:
    """The engine of an operator command (migrate, rollups, partitions, retention): made once the
    data dir's secrets are narrowed (it creates none), disposed of when the command ends."""
    from server.storage.engine import make_engine

    with _database_errors(settings):
        settings.narrow_local_secrets()
        engine = make_engine(settings.resolved_database_url)
    try:
        yield engine
    finally:
        engine.dispose()


def _flag_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The settings a parsed flag set (a flag's dest is its setting's name)."""
    values = {name: getattr(args, name, None) for name in SETTINGS}
    return {name: value for name, value in values.items() if value is not None}


def _configured(args: argparse.Namespace) -> Settings:
    """The settings of the environment and the flags, as they are (no secret generated)."""
    try:
        return Settings.from_env(**_flag_overrides(args))
    except (ValueError, TypeError) as exc:  # a USAGE_* variable that is not a number
        raise StartupError(str(exc)) from None


def _settings(args: argparse.Namespace) -> Settings:
    """The settings, with the data dir's secrets where none are configured (created on first use)."""
    configured = _configured(args)
    with data_dir_usable(configured.data_dir):
        return configured.with_local_secrets()


@contextlib.contextmanager
def _database_errors(settings: Settings) -> Iterator[None]:
    """Opening the database: an unusable data dir or a database that does not answer, as one line."""
    with (
        data_dir_usable(settings.data_dir),
        database_reachable(settings.resolved_database_url, settings.is_embedded, settings.data_dir),
    ):
        yield


def _open_storage(settings: Settings, auto_migrate: bool) -> SqlStorage:
    from server.app import open_storage

    with _database_errors(settings):
        return open_storage(settings, auto_migrate)


def _add_setting_flags(parser: argparse.ArgumentParser, names: Iterable[str]) -> None:
    """`--field-name` for each named setting; no argparse default, so an unset flag leaves env alone."""
    for name in names:
        field = SETTINGS[name]
        options: dict[str, Any] = {"dest": name, "type": _flag_type(field), "help": _flag_help(field)}
        if choices := field.metadata.get("choices"):
            options["choices"] = choices
        parser.add_argument("--" + name.replace("_", "-"), **options)


def _flag_type(field: dataclasses.Field[Any]) -> Any:
    if field.name == "workers":  # refused by argparse, with the range, before anything starts
        return _worker_count
    # Annotations are strings here (`from __future__ import annotations`).
    return {"int": int, "float": float, "str": str}[str(field.type)]


def _flag_help(field: dataclasses.Field[Any]) -> str:
    text = field.metadata["help"]
    if field.name == "workers":
        text += f"; at most {MAX_PROCESSES}"
    if field.metadata.get("secret"):
        text += "; a flag is visible to other users in `ps`: prefer the env var"
    default = field.default
    shown = "unset" if default == "" else f"{default:g}" if isinstance(default, float) else default
    # argparse expands %-formats in help texts.
    return f"{text} (env {ENV_PREFIX}{field.name.upper()}, default {shown})".replace("%", "%%")


def cmd_serve(args: argparse.Namespace) -> int:
    from server import serving
    from server.app import DatabaseBehind
    from server.observability import configure_logging

    settings = _settings(args)
    release_large_blocks()
    if problem := check_worker_count(settings.workers):  # the flag is checked by argparse already
        raise StartupError(f"{ENV_PREFIX}WORKERS {problem}")
    serving.check_ports(settings)
    configure_logging(settings.log_format)
    try:
        storage = _open_storage(settings, auto_migrate=settings.is_embedded or args.migrate)
    except DatabaseBehind as exc:
        raise StartupError(str(exc)) from None
    return serving.serve(settings, storage, demo=args.demo)


def cmd_gateway(args: argparse.Namespace) -> int:
    from server import serving

    settings = _configured(args)  # it signs and checks nothing: no secrets
    release_large_blocks()
    return serving.run_gateway(settings)


def _worker_count(text: str) -> int:
    """argparse type of --workers: an integer in 1..MAX_PROCESSES."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if problem := check_worker_count(value):
        raise argparse.ArgumentTypeError(problem)
    return value


def cmd_migrate(args: argparse.Namespace) -> int:
    from server.storage import migrate

    settings = _configured(args)
    with _operator_engine(settings) as engine, _database_errors(settings):
        revision = migrate.upgrade(engine)
    print(f"database migrated to {revision}")
    from server.storage.partitions import AHEAD_MONTHS

    return _ensure_partitions(settings, AHEAD_MONTHS, split_default=False)


def cmd_partitions(args: argparse.Namespace) -> int:
    """`partitions [--ahead-months N] [--split-default]`: the monthly partitions of events."""
    settings = _configured(args)
    return _ensure_partitions(settings, args.ahead_months, args.split_default)


def _ensure_partitions(settings: Settings, ahead: int, split_default: bool) -> int:
    import time

    import sqlalchemy as sa

    from server.storage import partitions
    from server.storage.dialects import dialect_of

    with _operator_engine(settings) as engine:
        dialect = dialect_of(engine)
        if not dialect.partitions_events:
            print("events are one table on SQLite: no partitions to create")
            return 0
        with _database_errors(settings), engine.begin() as conn:
            # Creating a partition waits for the default partition's readers; never for long.
            conn.execute(sa.text("SET LOCAL lock_timeout = '10s'"))
            created = partitions.ensure(conn, time.time_ns() // 1000, ahead)
            if split_default:
                created |= partitions.split_default(conn)
            months = dialect.month_partitions(conn)
        for month, moved in created.items():
            print(
                f"created partition {month.partition} ({moved} events moved from {partitions.DEFAULT_PARTITION})"
            )
        print(f"partitions of events: {len(months)} months, {months[0]} to {months[-1]}, and the default")
        return 0


def cmd_retention(args: argparse.Namespace) -> int:
    """`retention --keep-months N [--apply]`: remove the events of older months (dry run by default)."""
    import time

    from server.storage import partitions

    settings = _configured(args)
    with _operator_engine(settings) as engine, _database_errors(settings), engine.begin() as conn:
        report = partitions.retention(conn, args.keep_months, time.time_ns() // 1000, apply=args.apply)
    print("\n".join(report.lines()))
    return 0


def cmd_rollups(args: argparse.Namespace) -> int:
    """`rollups list|rebuild|add-dimension KEY|remove-dimension KEY` (PostgreSQL; storage/rollups.py)."""
    import time

    from server.storage import rollups
    from server.storage.dialects import dialect_of

    settings = _configured(args)
    with _operator_engine(settings) as engine:
        if not dialect_of(engine).keeps_rollups:
            print(
                "usage-service: rollups are kept on PostgreSQL only; SQLite answers from events",
                file=sys.stderr,
            )
            return 2
        with _database_errors(settings), engine.begin() as conn:
            if args.action == "list":
                for key in rollups.dimensions(conn):
                    print(key)
            elif args.action == "rebuild":
                started = time.monotonic()
                rollups.rebuild(conn)
                print(f"rollups rebuilt from events in {time.monotonic() - started:.1f} s")
            elif args.action == "add-dimension":
                if not rollups.add_dimension(conn, args.key, time.time_ns() // 1000):
                    print(f"dimension {args.key!r} is already rolled up")
                else:
                    print(f"dimension {args.key!r} rolled up (backfilled from events)")
            elif not rollups.remove_dimension(conn, args.key):
                print(f"usage-service: dimension {args.key!r} is not rolled up", file=sys.stderr)
                return 1
            else:
                print(f"dimension {args.key!r} no longer rolled up")
        return 0


def _dimension_key(text: str) -> str:
    """argparse type of a dimension key: what group_by dim:KEY accepts."""
    import re

    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", text):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a property key (1 to 64 letters, digits or the characters _ . -)"
        )
    return text


def cmd_token(args: argparse.Namespace) -> int:
    """Print a token signed with the configured key, else with the secret the server keeps in its
    data dir. It never creates a secret: one that no server shares would only mint refused tokens."""
    try:
        ttl = parse_ttl(args.ttl)
    except ValueError as exc:
        raise StartupError(str(exc)) from None
    settings = _configured(args)
    stored = settings.stored_jwt_secret_file
    if stored is not None and not settings.jwt_private_key_file:
        settings = dataclasses.replace(settings, jwt_secret=_server_jwt_secret(stored))
    try:
        token = mint_token(settings, args.org, ttl, args.caller)
    except (ValueError, OSError) as exc:  # an invalid organization id, an unreadable key file
        raise StartupError(str(exc)) from None
    print(token)
    return 0


def _server_jwt_secret(stored: pathlib.Path) -> str:
    """The JWT secret a server generated in its data dir; StartupError saying how to find it if none."""
    where = stored.parent.resolve()
    with data_dir_usable(str(stored.parent)):
        if stored.is_file():
            return stored.read_text().strip()
    raise StartupError(
        f"no JWT secret in {where} (a server creates {stored.name} there when it first starts): give "
        f"the server's data dir with --data-dir or {ENV_PREFIX}DATA_DIR, or its secret as "
        f"{ENV_PREFIX}JWT_SECRET"
    )


def cmd_health(args: argparse.Namespace) -> int:
    """Exit 0 when the server answers SERVING, 1 otherwise (the container HEALTHCHECK runs this)."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from server.serving import local_target

    address = args.address or local_target(Settings.from_env().host, Settings.from_env().port)
    with grpc.insecure_channel(address) as channel:
        try:
            response = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=args.service), timeout=args.timeout
            )
        except grpc.RpcError as exc:
            print(f"unhealthy: {exc.code().name} {exc.details() or ''}".rstrip(), file=sys.stderr)
            return 1
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
    print(status)
    return 0 if response.status == health_pb2.HealthCheckResponse.SERVING else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="usage-service", description="Usage events service (gRPC).")
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {importlib.metadata.version('usage-service')}"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    _add_serve(sub)
    mig = sub.add_parser("migrate", help="apply database migrations")
    _add_setting_flags(mig, STORAGE_SETTINGS)
    mig.set_defaults(func=cmd_migrate)
    _add_rollups(sub)
    _add_months(sub)
    _add_gateway(sub)
    hc = sub.add_parser("health", help="check a server through grpc.health.v1: exit 0 when SERVING")
    hc.add_argument("--address", help="HOST:PORT (default: this host, port USAGE_PORT, else 50051)")
    hc.add_argument("--service", default="", help="service name to check (default: the whole server)")
    hc.add_argument("--timeout", type=float, default=3.0, help="seconds (default 3)")
    hc.set_defaults(func=cmd_health)
    tok = sub.add_parser("token", help="print a JWT for an organization")
    _add_setting_flags(tok, TOKEN_SETTINGS)
    tok.add_argument("--org", required=True, help="organization id")
    tok.add_argument("--ttl", default="1h", help="lifetime: 90s, 15m, 1h, 7d (default 1h)")
    tok.add_argument(
        "--caller",
        help="who the token acts as, recorded with each correction it makes (its caller claim, "
        "USAGE_JWT_CALLER_CLAIM; default: the organization id)",
    )
    tok.set_defaults(func=cmd_token)
    return parser


def _add_serve(sub: Any) -> None:
    serve = sub.add_parser("serve", help="run the gRPC server")
    _add_setting_flags(serve, SETTINGS)
    serve.add_argument(
        "--demo",
        action="store_true",
        help="load demo data and print a token and grpcurl examples (curl ones too with --http-port)",
    )
    serve.add_argument("--migrate", action="store_true", help="apply pending migrations before serving")
    serve.set_defaults(func=cmd_serve)


def _add_rollups(sub: Any) -> None:
    ro = sub.add_parser("rollups", help="manage the rollups that answer AggregateUsage (PostgreSQL)")
    ro_sub = ro.add_subparsers(dest="action", required=True)
    for name, text in (
        ("list", "print the rolled-up dimension keys"),
        ("rebuild", "recompute every rollup from the events (locks out ingestion meanwhile)"),
    ):
        _add_setting_flags(ro_sub.add_parser(name, help=text), STORAGE_SETTINGS)
    for name, text in (
        ("add-dimension", "roll up group_by dim:KEY from now on, backfilled from the events"),
        ("remove-dimension", "stop rolling up dim:KEY (it is then answered from the events)"),
    ):
        action = ro_sub.add_parser(name, help=text)
        action.add_argument("key", type=_dimension_key, help="the property key, as in group_by dim:KEY")
        _add_setting_flags(action, STORAGE_SETTINGS)
    ro.set_defaults(func=cmd_rollups)


def _add_months(sub: Any) -> None:
    from server.storage import partitions

    part = sub.add_parser(
        "partitions",
        help="create the monthly partitions of events ahead of time (PostgreSQL; `migrate` does too)",
    )
    part.add_argument(
        "--ahead-months",
        type=_month_count(0),
        default=partitions.AHEAD_MONTHS,
        help=f"months after this one to create (default {partitions.AHEAD_MONTHS})",
    )
    part.add_argument(
        "--split-default",
        action="store_true",
        help="also give every month with events in the default partition its own partition",
    )
    _add_setting_flags(part, STORAGE_SETTINGS)
    part.set_defaults(func=cmd_partitions)
    ret = sub.add_parser(
        "retention", help="remove the events of months older than a window (dry run by default)"
    )
    ret.add_argument(
        "--keep-months",
        type=_month_count(1),
        required=True,
        help="months to keep, this one included: events before the first of them are removed",
    )
    ret.add_argument(
        "--apply", action="store_true", help="remove them (without it, only report what would go)"
    )
    _add_setting_flags(ret, STORAGE_SETTINGS)
    ret.set_defaults(func=cmd_retention)


def _month_count(least: int) -> Callable[[str], int]:
    """argparse type of a number of months: an integer from `least` to partitions.MAX_MONTHS."""
    from server.storage.partitions import MAX_MONTHS

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if not least <= value <= MAX_MONTHS:
            raise argparse.ArgumentTypeError(f"must be from {least} to {MAX_MONTHS} months, got {value}")
        return value

    return parse


def _add_gateway(sub: Any) -> None:
    gw = sub.add_parser("gateway", help="run the HTTP/JSON gateway in front of a gRPC server")
    _add_setting_flags(gw, GATEWAY_SETTINGS)
    gw.add_argument(
        "--port",
        dest="http_port",
        type=int,
        metavar="PORT",
        help=f"HTTP port, 0 for any free one (env {ENV_PREFIX}HTTP_PORT, default 8080)",
    )
    gw.set_defaults(func=cmd_gateway)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except StartupError as exc:
        print(f"usage-service: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
