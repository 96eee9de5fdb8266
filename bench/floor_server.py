"""The floor of any Python service on grpcio and psycopg: the bare server (bench/bare_server.py) that,
before it answers a call with the pre-built response, runs the statements the service runs for that
page, on connections of its own, as the service runs them (prepared, binary rows; the list page with
a generic plan, as the service's single-statement pool). Nothing else: no authentication,
validation, log line, metrics, deadline or pool.

    python -m bench.floor_server --responses responses.bin --statements statements.json \
        --database-url URL [--aio] [--max-workers 16]
    -> prints "bare listening on 127.0.0.1:PORT"

Two server models, so that the floor of each is measured rather than guessed:
- sync (default): `grpc.server` with a thread pool, as usage-service serves; psycopg connections of
  each thread's own;
- `--aio`: `grpc.aio.server` on one event loop, with `psycopg.AsyncConnection`s taken from a queue
  (up to --max-workers of each kind).

The statements file maps each scenario to {"generic_plan": bool, "statements": [[sql, params,
prepare], ...]}: bench/floor.py writes it from the service's own compiled statements
(`floor.page_statements`). ListUsageEvents and ListCustomerUsageEvents are served.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import pathlib
import signal
import sys
import threading
from typing import Any

import grpc
import psycopg
from usage.v1 import usage_service_pb2_grpc as pb_grpc

from bench.bare_server import SERVER_OPTIONS, BareServicer, read_responses, scenario_of, serve
from server.storage.dialects.postgres import GENERIC_PLAN_OPTION


@dataclasses.dataclass(frozen=True)
class Page:
    """What the service runs for one scenario's page."""

    generic_plan: bool
    statements: list[tuple[str, Any, bool]]  # (sql, params, prepare)


def read_statements(path: pathlib.Path) -> dict[str, Page]:
    loaded = json.loads(path.read_text())
    return {name: Page(p["generic_plan"], [tuple(s) for s in p["statements"]]) for name, p in loaded.items()}


def serve_sync(responses: dict[str, Any], pages: dict[str, Page], conninfo: str, workers: int) -> None:
    local = threading.local()

    def connection(generic_plan: bool) -> psycopg.Connection[Any]:
        conns = local.__dict__.setdefault("conns", {})
        if generic_plan not in conns:
            options = GENERIC_PLAN_OPTION if generic_plan else ""
            conns[generic_plan] = psycopg.connect(conninfo, autocommit=True, options=options)
        return conns[generic_plan]  # type: ignore[no-any-return]

    def answer(context: Any) -> Any:
        scenario = scenario_of(context)
        page = pages[scenario]
        conn = connection(page.generic_plan)
        for sql, params, prepare in page.statements:
            conn.execute(sql, params, prepare=prepare, binary=True).fetchall()
        return responses[scenario]

    class Servicer(BareServicer):  # the other RPCs answer as the bare server does
        def ListUsageEvents(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
            return answer(context)

        def ListCustomerUsageEvents(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
            return answer(context)

    serve(Servicer(responses), "127.0.0.1", workers)


async def serve_aio(responses: dict[str, Any], pages: dict[str, Page], conninfo: str, workers: int) -> None:
    idle: dict[bool, asyncio.Queue[psycopg.AsyncConnection[Any]]] = {}
    for generic_plan in sorted({p.generic_plan for p in pages.values()}):
        idle[generic_plan] = asyncio.Queue()
        options = GENERIC_PLAN_OPTION if generic_plan else ""
        for _ in range(workers):
            conn = await psycopg.AsyncConnection.connect(conninfo, autocommit=True, options=options)
            idle[generic_plan].put_nowait(conn)

    async def answer(context: Any) -> Any:
        scenario = scenario_of(context)
        page = pages[scenario]
        conn = await idle[page.generic_plan].get()
        try:
            for sql, params, prepare in page.statements:
                await (await conn.execute(sql, params, prepare=prepare, binary=True)).fetchall()
        finally:
            idle[page.generic_plan].put_nowait(conn)
        return responses[scenario]

    class Servicer(pb_grpc.UsageServiceServicer):
        async def ListUsageEvents(self, request: Any, context: Any) -> Any:  # noqa: N802
            return await answer(context)

        async def ListCustomerUsageEvents(self, request: Any, context: Any) -> Any:  # noqa: N802
            return await answer(context)

    server = grpc.aio.server(options=SERVER_OPTIONS)
    # Only the two pages are served: the other RPCs stay the generated base's UNIMPLEMENTED.
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
    parser.add_argument("--statements", type=pathlib.Path, required=True)
    parser.add_argument("--database-url", required=True, help="postgresql+psycopg://... of the bench data")
    parser.add_argument("--aio", action="store_true", help="grpc.aio and psycopg's async connections")
    parser.add_argument("--max-workers", type=int, default=16, help="threads, or connections with --aio")
    args = parser.parse_args(argv)
    responses = read_responses(args.responses)
    pages = read_statements(args.statements)
    conninfo = args.database_url.replace("postgresql+psycopg://", "postgresql://", 1)
    if args.aio:
        asyncio.run(serve_aio(responses, pages, conninfo, args.max_workers))
    else:
        serve_sync(responses, pages, conninfo, args.max_workers)
    return 0


if __name__ == "__main__":
    sys.exit(main())
