"""`usage-service` command line: serve, migrate, token.

Settings come from USAGE_* environment variables; flags override them. Nothing happens at import.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from typing import Any

from server.auth import mint_token, parse_ttl
from server.config import Settings


def _settings(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {}
    for name in (
        "database_url",
        "data_dir",
        "host",
        "port",
        "max_workers",
        "jwt_secret",
        "max_aggregate_buckets",
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
    from server.app import DatabaseBehind, create_server, open_storage

    settings = _settings(args)
    try:
        storage = open_storage(settings, auto_migrate=settings.is_embedded or args.migrate)
    except DatabaseBehind as exc:
        print(f"usage-service: {exc}", file=sys.stderr)
        return 2
    running = create_server(settings, storage)
    if args.demo:
        from server.demo import load_demo

        summary = load_demo(storage)
        _print_demo(settings, running.port, summary)
    running.server.start()
    logging.getLogger("usage-service").info(
        "serving on %s:%d (%s)",
        settings.host,
        running.port,
        "embedded SQLite" if settings.is_embedded else "PostgreSQL",
    )
    print(f"usage-service listening on {settings.host}:{running.port}", flush=True)
    stop = threading.Event()

    def _on_signal(signum: int, _frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    stop.wait()
    # Graceful: refuse new RPCs, let in-flight ones finish within the grace period.
    running.health.enter_graceful_shutdown()  # every service reports NOT_SERVING from here on
    running.server.stop(settings.grace_period_s).wait()
    storage.close()
    print("usage-service stopped", flush=True)
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


def cmd_token(args: argparse.Namespace) -> int:
    settings = _settings(args)
    print(mint_token(settings, args.org, parse_ttl(args.ttl)))
    return 0


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
        "--max-workers", dest="max_workers", type=int, help="RPC threads (env USAGE_MAX_WORKERS)"
    )
    serve.add_argument(
        "--max-aggregate-buckets",
        dest="max_aggregate_buckets",
        type=int,
        help="bucket cap of AggregateUsage (env USAGE_MAX_AGGREGATE_BUCKETS, default 1000)",
    )
    serve.add_argument("--demo", action="store_true", help="load demo data and print a token and examples")
    serve.add_argument("--migrate", action="store_true", help="apply pending migrations before serving")
    serve.set_defaults(func=cmd_serve)
    mig = sub.add_parser("migrate", help="apply database migrations")
    _add_common(mig)
    mig.set_defaults(func=cmd_migrate)
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
