"""The floor of any Python service on grpcio and psycopg: the bare server (bench/bare_server.py) that,
before it answers a ListUsageEvents call with the pre-built response, runs the statement the service
runs for that page, on a connection of its own, as the service's single-statement pool runs it
(prepared, binary rows, generic plan). Nothing else: no authentication, validation, log line,
metrics, deadline or pool.

    python -m bench.floor_server --responses responses.bin --database-url URL [--aio] [--max-workers 16]
    -> prints "bare listening on 127.0.0.1:PORT"

Two server models, so that the floor of each is measured rather than guessed:
- sync (default): `grpc.server` with a thread pool, as usage-service serves; one psycopg connection
  per thread;
- `--aio`: `grpc.aio.server` on one event loop, with one `psycopg.AsyncConnection` per concurrent
  call (up to --max-workers), taken from a queue.

The statement is the "no filter" page of the big organization (25 events and the one past them):
`EventReads._list_statement` for that shape, as bench/statement_cpu.py takes it. So only the
"ListUsageEvents no filter" scenario's response goes with it. bench/floor.py runs it.
"""

from __future__ import annotations

import argparse
import asyncio
import pathlib
import signal
import sys
import threading
from concurrent import futures
from typing import Any

import grpc
import psycopg
from usage.v1 import usage_service_pb2_grpc as pb_grpc

from bench.bare_server import MAX_MESSAGE_BYTES, SCENARIO_HEADER, BareServicer, read_responses
from bench.dataset import BIG_ORG
from server.storage.engine import Database, make_engine
from server.storage.event_reads import EventReads

LIMIT = 26  # a page of 25 and the one past it, as the service asks
# How the service's single-statement pool opens its connections (storage/dialects/postgres.py).
CONNECTION_OPTIONS = "-c plan_cache_mode=force_generic_plan"
SERVER_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.so_reuseport", 0),
]


def page_statement(database_url: str) -> tuple[str, dict[str, Any]]:
    """The SQL and parameters the service runs for the big organization's "no filter" page. The
    statement is built without connecting: make_engine connects on first use only."""
    reads = EventReads(Database(make_engine(database_url, statement_timeout_s=30)))
    # The shape: 5 optional filters absent, no metric keys, no cursor, newest first, current.
    prepared = reads._list_statement((False,) * 5 + (0, False, False, False))
    return prepared.sql, prepared.params({"org": BIG_ORG, "limit": LIMIT})


def scenario_of(context: Any) -> str:
    for key, value in context.invocation_metadata():
        if key == SCENARIO_HEADER:
            return str(value)
    return ""


def serve_sync(responses: dict[str, Any], conninfo: str, sql: str, params: Any, workers: int) -> None:
    local = threading.local()

    class Servicer(BareServicer):  # the other RPCs answer as the bare server does
        def ListUsageEvents(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
            conn = getattr(local, "conn", None)
            if conn is None:
                conn = local.conn = psycopg.connect(conninfo, autocommit=True, options=CONNECTION_OPTIONS)
            conn.execute(sql, params, prepare=True, binary=True).fetchall()
            return responses[scenario_of(context)]

    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="rpc"), options=SERVER_OPTIONS
    )
    pb_grpc.add_UsageServiceServicer_to_server(Servicer(responses), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(f"bare listening on 127.0.0.1:{port}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    server.stop(1).wait()


async def serve_aio(responses: dict[str, Any], conninfo: str, sql: str, params: Any, workers: int) -> None:
    idle: asyncio.Queue[psycopg.AsyncConnection[Any]] = asyncio.Queue()
    for _ in range(workers):
        conn = await psycopg.AsyncConnection.connect(conninfo, autocommit=True, options=CONNECTION_OPTIONS)
        idle.put_nowait(conn)

    class Servicer(pb_grpc.UsageServiceServicer):
        async def ListUsageEvents(self, request: Any, context: Any) -> Any:  # noqa: N802
            conn = await idle.get()
            try:
                await (await conn.execute(sql, params, prepare=True, binary=True)).fetchall()
            finally:
                idle.put_nowait(conn)
            return responses[scenario_of(context)]

    server = grpc.aio.server(options=SERVER_OPTIONS)
    # Only ListUsageEvents is served: the other RPCs stay the generated base's UNIMPLEMENTED.
    pb_grpc.add_UsageServiceServicer_to_server(Servicer(), server)  # type: ignore[abstract]
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(f"bare listening on 127.0.0.1:{port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.floor_server", description=__doc__)
    parser.add_argument("--responses", type=pathlib.Path, required=True)
    parser.add_argument("--database-url", required=True, help="postgresql+psycopg://... of the bench data")
    parser.add_argument("--aio", action="store_true", help="grpc.aio and psycopg's async connections")
    parser.add_argument("--max-workers", type=int, default=16, help="threads, or connections with --aio")
    args = parser.parse_args(argv)
    responses = read_responses(args.responses)
    sql, params = page_statement(args.database_url)
    conninfo = args.database_url.replace("postgresql+psycopg://", "postgresql://", 1)
    if args.aio:
        asyncio.run(serve_aio(responses, conninfo, sql, params, args.max_workers))
    else:
        serve_sync(responses, conninfo, sql, params, args.max_workers)
    return 0


if __name__ == "__main__":
    sys.exit(main())
