"""`usage-service` command line: serve, gateway, migrate, token, health.

Settings come from USAGE_* environment variables; flags override them. Nothing happens at import.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from typing import TYPE_CHECKING, Any

from server.auth import mint_token, parse_ttl
from server.config import Settings
from server.workers import MAX_PROCESSES, check_worker_count

if TYPE_CHECKING:
    from server.storage.sql_storage import SqlStorage


def _settings(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {}
    for name in (
        "database_url",
        "data_dir",
        "host",
        "port",
        "max_workers",
        "workers",
        "max_concurrent_rpcs",
        "jwt_secret",
        "max_aggregate_buckets",
        "metrics_port",
        "log_format",
        "http_port",
    ):
        value = getattr(args, name, None)
        if value is not None:
            overrides[name] = value
    return Settings.from_env(**overrides).with_local_secrets()


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--database-url",
        dest="database_url",
        help="SQLAlchemy URL (env USAGE_DATABASE_URL); default: embedded SQLite in --data-dir",
    )
    p.add_argument(
        "--data-dir",
        dest="data_dir",
        help="directory of the embedded database and secrets (env USAGE_DATA_DIR, default ./usage-data)",
    )
    p.add_argument("--jwt-secret", dest="jwt_secret", help="HS256 secret (env USAGE_JWT_SECRET)")


def cmd_serve(args: argparse.Namespace) -> int:
    from server.app import SERVICE_NAMES, DatabaseBehind, create_server, open_storage
    from server.health_monitor import HealthMonitor
    from server.observability import configure_logging

    settings = _settings(args)
    if problem := check_worker_count(settings.workers):  # the flag is checked by argparse already
        print(f"usage-service: USAGE_WORKERS {problem}", file=sys.stderr)
        return 2
    configure_logging(settings.log_format)
    try:
        storage = open_storage(settings, auto_migrate=settings.is_embedded or args.migrate)
    except DatabaseBehind as exc:
        print(f"usage-service: {exc}", file=sys.stderr)
        return 2
    if settings.workers > 1:
        return _serve_workers(settings, storage, demo=args.demo)
    running = create_server(settings, storage)
    if args.demo:
        from server.demo import load_demo

        summary = load_demo(storage)
        _print_demo(settings, running.port, summary)
    running.server.start()
    monitor = HealthMonitor(storage, running.health, SERVICE_NAMES, settings.health_check_interval_s)
    monitor.start()
    logging.getLogger("usage-service").info(
        "serving on %s:%d (%s)",
        settings.host,
        running.port,
        "embedded SQLite" if settings.is_embedded else "PostgreSQL",
    )
    print(f"usage-service listening on {settings.host}:{running.port}", flush=True)
    metrics = None
    if settings.metrics_port >= 0:
        metrics = running.observability.serve_metrics(settings.host, settings.metrics_port)
        print(f"usage-service metrics on http://{settings.host}:{metrics.port}/metrics", flush=True)
    gateway = None
    if settings.http_port >= 0:
        gateway = _start_gateway(settings, _local_target(settings.host, running.port), settings.http_port)
    stop = threading.Event()

    def _on_signal(signum: int, _frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    stop.wait()
    # First of all, so that load balancers stop routing here: every service reports NOT_SERVING from
    # now on (the health monitor's later updates are ignored).
    running.health.enter_graceful_shutdown()
    if gateway is not None:  # HTTP first: its in-flight requests still need the gRPC server
        gateway.stop()
    # Graceful: refuse new RPCs, let in-flight ones finish within the grace period.
    running.server.stop(settings.grace_period_s).wait()
    monitor.stop()  # before the storage is disposed: a check in progress finishes first
    if metrics is not None:
        metrics.stop()
    storage.close()
    print("usage-service stopped", flush=True)
    return 0


def _serve_workers(settings: Settings, storage: SqlStorage, demo: bool) -> int:
    """`serve --workers N`, N > 1: this process supervises N server processes on one port.

    Migrations (done by the caller) and the demo data run here, once, before any worker starts; the
    listening line is printed once every worker listens; the HTTP gateway runs here, calling the
    shared port. See server/workers.py.
    """
    from server.workers import Supervisor, reserve_port

    try:
        reserved = reserve_port(settings.host, settings.port)
    except OSError as exc:
        storage.close()
        print(f"usage-service: cannot bind {settings.host}:{settings.port}: {exc}", file=sys.stderr)
        return 1
    with reserved:  # held (bound, not listening) until every worker has exited
        port = int(reserved.getsockname()[1])
        if demo:
            from server.demo import load_demo

            _print_demo(settings, port, load_demo(storage))
        storage.close()  # each worker opens its own engine and pool
        supervisor = Supervisor(settings, port)
        supervisor.handle_signals()
        gateway = None
        try:
            ready = supervisor.start()
            if ready is not None:
                logging.getLogger("usage-service").info(
                    "serving on %s:%d (%d worker processes, pids %s, %s)",
                    settings.host,
                    port,
                    len(ready),
                    " ".join(str(r.pid) for r in ready),
                    "embedded SQLite" if settings.is_embedded else "PostgreSQL",
                )
                print(f"usage-service listening on {settings.host}:{port}", flush=True)
                for r in ready:  # one /metrics per worker, in worker order
                    if r.metrics_port >= 0:
                        print(
                            f"usage-service metrics on http://{settings.host}:{r.metrics_port}/metrics",
                            flush=True,
                        )
                if settings.http_port >= 0:
                    gateway = _start_gateway(settings, _local_target(settings.host, port), settings.http_port)
                supervisor.wait()
        finally:
            if gateway is not None:  # HTTP first: its in-flight requests still need the workers
                gateway.stop()
            code = supervisor.stop()
    if supervisor.failure:
        print(f"usage-service: {supervisor.failure}; stopped the other workers", file=sys.stderr)
    elif code == 0:
        print("usage-service stopped", flush=True)
    return code


def _worker_count(text: str) -> int:
    """argparse type of --workers: an integer in 1..MAX_PROCESSES."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if problem := check_worker_count(value):
        raise argparse.ArgumentTypeError(problem)
    return value


def _local_target(host: str, port: int) -> str:
    """The address a local client dials for a server listening on host:port."""
    if host in ("", "0.0.0.0"):
        return f"127.0.0.1:{port}"
    if host == "::":
        return f"[::1]:{port}"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def gateway_connections(workers: int) -> int:
    """gRPC connections the gateway opens and uses in turn.

    The kernel hands each new connection to one server process of `serve --workers N` at random, so
    calls spread per connection: with 16 per process, all of them landing on one of two processes has
    probability 2**-31. Capped well below the default limit of 1024 open files.
    """
    return min(16 * workers, 256)


def _start_gateway(settings: Settings, grpc_target: str, port: int) -> Any:
    from server.gateway.runner import GatewayServer

    gateway = GatewayServer.start(
        grpc_target,
        host=settings.host,
        port=port,
        default_timeout_s=settings.gateway_timeout_s,
        grace_period_s=settings.grace_period_s,
        connections=gateway_connections(settings.workers),
    )
    print(f"usage-service gateway listening on {gateway.url} (gRPC {grpc_target})", flush=True)
    return gateway


def cmd_gateway(args: argparse.Namespace) -> int:
    overrides = {"host": args.host, "http_port": args.port, "grpc_target": args.grpc_target}
    settings = Settings.from_env(**overrides)
    target = settings.grpc_target or _local_target(settings.host, settings.port)
    port = settings.http_port if settings.http_port >= 0 else 8080
    gateway = _start_gateway(settings, target, port)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    gateway.stop()
    print("usage-service gateway stopped", flush=True)
    return 0


def _print_demo(settings: Settings, port: int, summary: dict[str, Any]) -> None:
    import datetime as dt

    org = summary["organization"]
    token = mint_token(settings, org, dt.timedelta(days=30))
    addr = f"{settings.host}:{port}"
    cust, agg = summary["customer_id"], summary["aggregator_id"]
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    start = (now - dt.timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
    end = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    h = '-H "authorization: Bearer $TOKEN"'
    print(
        f"""
Demo data loaded: {summary["events"]} events, organizations {", ".join(summary["organizations"])}.
Demo token for organization {org} (valid 30 days):

  export TOKEN={token}

Try (grpcurl, server reflection is on):

  grpcurl -plaintext {addr} list
  grpcurl -plaintext {h} -d '{{"id":"{cust}","aggregator_id":"{agg}","start_date":"{start}","end_date":"{end}","take":5}}' {addr} usage.v1.UsageService/ListCustomerUsageEvents
  grpcurl -plaintext {h} -d '{{"limit":5,"metric_key":["api_call,storage_gb"]}}' {addr} usage.v1.UsageService/ListUsageEvents
  grpcurl -plaintext {h} -d '{{"bucket":"day","since":"{start}","group_by":"metric_key","top":3,"time_zone":"Europe/Paris"}}' {addr} usage.v1.UsageService/AggregateUsage
  grpcurl -plaintext {h} -d '{{"events":[{{"customer_id":"{cust}","metric_key":"api_call","timestamp":"{end}","idempotency_key":"try-1"}}]}}' {addr} usage.v1.UsageService/IngestUsageEvents
  grpcurl -plaintext {h} -d '{{}}' {addr} usage.v1.CatalogService/ListAggregators
""",
        flush=True,
    )


def cmd_migrate(args: argparse.Namespace) -> int:
    from server.storage import migrate
    from server.storage.engine import make_engine

    settings = _settings(args)
    engine = make_engine(settings.resolved_database_url)
    revision = migrate.upgrade(engine)
    engine.dispose()
    print(f"database migrated to {revision}")
    return 0


def cmd_rollups(args: argparse.Namespace) -> int:
    """`rollups list|rebuild|add-dimension KEY|remove-dimension KEY` (PostgreSQL; storage/rollups.py)."""
    import time

    from server.storage import rollups
    from server.storage.engine import make_engine

    settings = _settings(args)
    engine = make_engine(settings.resolved_database_url)
    try:
        if engine.dialect.name != "postgresql":
            print(
                "usage-service: rollups are kept on PostgreSQL only; SQLite answers from events",
                file=sys.stderr,
            )
            return 2
        with engine.begin() as conn:
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
    finally:
        engine.dispose()


def _dimension_key(text: str) -> str:
    """argparse type of a dimension key: what group_by dim:KEY accepts."""
    import re

    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a property key (1-64 of A-Z a-z 0-9 _ . -)")
    return text


def cmd_token(args: argparse.Namespace) -> int:
    settings = _settings(args)
    print(mint_token(settings, args.org, parse_ttl(args.ttl)))
    return 0


def cmd_health(args: argparse.Namespace) -> int:
    """Exit 0 when the server answers SERVING, 1 otherwise (the container HEALTHCHECK runs this)."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    address = args.address or _local_target(Settings.from_env().host, Settings.from_env().port)
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
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the gRPC server")
    _add_common(serve)
    serve.add_argument("--host", help="listen address (env USAGE_HOST, default 127.0.0.1)")
    serve.add_argument(
        "--port", type=int, help="listen port, 0 for any free one (env USAGE_PORT, default 50051)"
    )
    serve.add_argument(
        "--max-workers",
        dest="max_workers",
        type=int,
        help="RPC threads, of each process with --workers (env USAGE_MAX_WORKERS)",
    )
    serve.add_argument(
        "--workers",
        dest="workers",
        type=_worker_count,
        help=f"server processes sharing the port (SO_REUSEPORT), 1-{MAX_PROCESSES}; each has its own RPC "
        "threads and database pool; use PostgreSQL for more than 1 (env USAGE_WORKERS, default 1)",
    )
    serve.add_argument(
        "--max-concurrent-rpcs",
        dest="max_concurrent_rpcs",
        type=int,
        help="RPCs admitted at once, beyond it RESOURCE_EXHAUSTED; 0: no bound (env USAGE_MAX_CONCURRENT_RPCS, default 64)",
    )
    serve.add_argument(
        "--max-aggregate-buckets",
        dest="max_aggregate_buckets",
        type=int,
        help="bucket cap of AggregateUsage (env USAGE_MAX_AGGREGATE_BUCKETS, default 1000)",
    )
    serve.add_argument(
        "--http-port",
        dest="http_port",
        type=int,
        help="also serve the HTTP/JSON gateway on this port, 0 for any free one (env USAGE_HTTP_PORT)",
    )
    serve.add_argument(
        "--metrics-port",
        dest="metrics_port",
        type=int,
        help="serve Prometheus /metrics on this port, 0 for any free one (env USAGE_METRICS_PORT; default off)",
    )
    serve.add_argument(
        "--log-format",
        dest="log_format",
        choices=["json", "text"],
        help="log lines on stderr: json, one object per line (default), or text (env USAGE_LOG_FORMAT)",
    )
    serve.add_argument("--demo", action="store_true", help="load demo data and print a token and examples")
    serve.add_argument("--migrate", action="store_true", help="apply pending migrations before serving")
    serve.set_defaults(func=cmd_serve)
    mig = sub.add_parser("migrate", help="apply database migrations")
    _add_common(mig)
    mig.set_defaults(func=cmd_migrate)
    ro = sub.add_parser("rollups", help="manage the rollups that answer AggregateUsage (PostgreSQL)")
    ro_sub = ro.add_subparsers(dest="action", required=True)
    for name, text in (
        ("list", "print the rolled-up dimension keys"),
        ("rebuild", "recompute every rollup from the events (locks out ingestion meanwhile)"),
    ):
        _add_common(ro_sub.add_parser(name, help=text))
    for name, text in (
        ("add-dimension", "roll up group_by dim:KEY from now on, backfilled from the events"),
        ("remove-dimension", "stop rolling up dim:KEY (it is then answered from the events)"),
    ):
        action = ro_sub.add_parser(name, help=text)
        action.add_argument("key", type=_dimension_key, help="the property key, as in group_by dim:KEY")
        _add_common(action)
    ro.set_defaults(func=cmd_rollups)
    gw = sub.add_parser("gateway", help="run the HTTP/JSON gateway in front of a gRPC server")
    gw.add_argument(
        "--grpc-target",
        dest="grpc_target",
        help="the gRPC server, HOST:PORT (env USAGE_GRPC_TARGET, default USAGE_HOST:USAGE_PORT)",
    )
    gw.add_argument("--host", help="HTTP listen address (env USAGE_HOST, default 127.0.0.1)")
    gw.add_argument(
        "--port", type=int, help="HTTP port, 0 for any free one (env USAGE_HTTP_PORT, default 8080)"
    )
    gw.set_defaults(func=cmd_gateway)
    hc = sub.add_parser("health", help="check a server through grpc.health.v1: exit 0 when SERVING")
    hc.add_argument("--address", help="HOST:PORT (default: this host, port USAGE_PORT, else 50051)")
    hc.add_argument("--service", default="", help="service name to check (default: the whole server)")
    hc.add_argument("--timeout", type=float, default=3.0, help="seconds (default 3)")
    hc.set_defaults(func=cmd_health)
    tok = sub.add_parser("token", help="print a JWT for an organization")
    _add_common(tok)
    tok.add_argument("--org", required=True, help="organization id")
    tok.add_argument("--ttl", default="1h", help="lifetime: 90s, 15m, 1h, 7d (default 1h)")
    tok.set_defaults(func=cmd_token)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
