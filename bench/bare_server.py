"""The framework's limit: a bare gRPC server with the service's own generated stubs
(`usage.v1.usage_service_pb2_grpc`) that answers every call with a pre-built response.

    python -m bench.bare_server --responses responses.bin [--max-workers 16]
    -> prints "bare listening on 127.0.0.1:PORT"

The responses are those the real service gave for each scenario's request (captured once by the
driver); the caller names the scenario in the `x-bench-scenario` metadata. The server runs the
same `grpc.server` as usage-service (thread pool, message size limits) but no interceptor, no
validation and no database: each call costs request parsing, a dict lookup and the serialization
of the same response message.

File format: for each entry, 4-byte big-endian lengths then bytes of (scenario, method, response).
"""

from __future__ import annotations

import argparse
import pathlib
import signal
import struct
import sys
import threading
from concurrent import futures
from typing import Any

import grpc
from usage.v1 import usage_service_pb2 as pb
from usage.v1 import usage_service_pb2_grpc as pb_grpc

SCENARIO_HEADER = "x-bench-scenario"
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
RESPONSE_TYPES: dict[str, Any] = {
    "ListUsageEvents": pb.ListUsageEventsResponse,
    "ListCustomerUsageEvents": pb.ListCustomerUsageEventsResponse,
    "AggregateUsage": pb.AggregateUsageResponse,
    "IngestUsageEvents": pb.IngestUsageEventsResponse,
    "ExplainUsageEvent": pb.ExplainUsageEventResponse,
    "GetCustomerUsage": pb.GetCustomerUsageResponse,
    "GetAggregatorTimeSeries": pb.GetAggregatorTimeSeriesResponse,
    "ListAggregatorUsageByCustomer": pb.ListAggregatorUsageByCustomerResponse,
}


def write_responses(path: pathlib.Path, responses: dict[str, tuple[str, bytes]]) -> None:
    with path.open("wb") as f:
        for scenario, (method, body) in responses.items():
            for part in (scenario.encode(), method.encode(), body):
                f.write(struct.pack(">I", len(part)))
                f.write(part)


def read_responses(path: pathlib.Path) -> dict[str, Any]:
    """scenario -> parsed response message."""
    data = path.read_bytes()
    out: dict[str, Any] = {}
    pos = 0
    while pos < len(data):
        parts = []
        for _ in range(3):
            (n,) = struct.unpack_from(">I", data, pos)
            parts.append(data[pos + 4 : pos + 4 + n])
            pos += 4 + n
        scenario, method, body = parts[0].decode(), parts[1].decode(), parts[2]
        out[scenario] = RESPONSE_TYPES[method].FromString(body)
    return out


def scenario_of(context: grpc.ServicerContext) -> str:
    """The scenario a call names in its `x-bench-scenario` metadata ("" when it names none)."""
    for key, value in context.invocation_metadata():
        if key == SCENARIO_HEADER:
            return str(value)
    return ""


class BareServicer(pb_grpc.UsageServiceServicer):
    def __init__(self, responses: dict[str, Any]) -> None:
        self._responses = responses

    def _reply(self, context: grpc.ServicerContext) -> Any:
        scenario = scenario_of(context)
        if scenario:
            return self._responses[scenario]
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"no {SCENARIO_HEADER} metadata")

    def ListUsageEvents(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        return self._reply(context)

    def ListCustomerUsageEvents(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        return self._reply(context)

    def AggregateUsage(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        return self._reply(context)

    def IngestUsageEvents(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        return self._reply(context)

    def ExplainUsageEvent(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        return self._reply(context)

    def ExportUsageEvents(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        # Its baselines are paging and a SQL cursor (bench/export.py), not a replay.
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "the bare server does not replay streams")

    def GetCustomerUsage(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        return self._reply(context)

    def GetAggregatorTimeSeries(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        return self._reply(context)

    def ListAggregatorUsageByCustomer(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        return self._reply(context)


SERVER_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.so_reuseport", 0),
]


def serve(servicer: pb_grpc.UsageServiceServicer, host: str, max_workers: int) -> None:
    """Serve `servicer` on a free port of `host` with the same `grpc.server` as usage-service (a
    thread pool, its message size limits), print the listening line, and stop on SIGTERM or SIGINT."""
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="rpc"), options=SERVER_OPTIONS
    )
    pb_grpc.add_UsageServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port(f"{host}:0")
    server.start()
    print(f"bare listening on {host}:{port}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    server.stop(1).wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bare_server", description=__doc__)
    parser.add_argument("--responses", type=pathlib.Path, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--max-workers", type=int, default=16, help="thread pool (usage-service default: 16)")
    args = parser.parse_args(argv)
    serve(BareServicer(read_responses(args.responses)), args.host, args.max_workers)
    return 0


if __name__ == "__main__":
    sys.exit(main())
