"""Callers for the load driver: a gRPC stub call (service or bare server) and a SQL baseline call.

Each caller thread gets its own gRPC channel with a local subchannel pool, i.e. its own TCP
connection: with `serve --workers N` (SO_REUSEPORT) the kernel spreads connections, not calls,
over the worker processes, so one shared channel would load a single worker. Each SQL caller
gets its own psycopg connection (autocommit, psycopg's default prepared-statement threshold).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
import psycopg
from usage.v1 import catalog_pb2, catalog_service_pb2, catalog_service_pb2_grpc
from usage.v1 import usage_service_pb2_grpc as pb_grpc

from bench.bare_server import SCENARIO_HEADER
from bench.driver import Caller
from bench.scenarios import Scenario

MAX_MESSAGE_BYTES = 16 * 1024 * 1024
CALL_TIMEOUT_S = 120.0


def channel(target: str) -> grpc.Channel:
    return grpc.insecure_channel(
        target,
        options=[
            ("grpc.use_local_subchannel_pool", 1),
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ],
    )


class GrpcTarget:
    """A server to call: address and the metadata every call carries. Channels are closed by close()."""

    def __init__(self, target: str, metadata: tuple[tuple[str, str], ...]) -> None:
        self.target = target
        self.metadata = metadata
        self._channels: list[grpc.Channel] = []

    def stub(self) -> pb_grpc.UsageServiceStub:
        ch = channel(self.target)
        grpc.channel_ready_future(ch).result(timeout=30)
        self._channels.append(ch)
        return pb_grpc.UsageServiceStub(ch)

    def call_once(self, method: str, request: Any, scenario: str = "") -> Any:
        with channel(self.target) as ch:
            rpc = getattr(pb_grpc.UsageServiceStub(ch), method)
            return rpc(request, metadata=self._metadata(scenario), timeout=CALL_TIMEOUT_S)

    def _metadata(self, scenario: str) -> tuple[tuple[str, str], ...]:
        return (*self.metadata, (SCENARIO_HEADER, scenario)) if scenario else self.metadata

    def caller_factory(
        self, method: str, request_for: Callable[[], Any] | Any, scenario: str = ""
    ) -> Callable[[int], Caller]:
        """A driver factory: each caller calls `method` with `request_for()` (or a fixed request)."""
        metadata = self._metadata(scenario)

        def make(_i: int) -> Caller:
            rpc = getattr(self.stub(), method)
            if callable(request_for):
                return lambda: rpc(request_for(), metadata=metadata, timeout=CALL_TIMEOUT_S)
            return lambda: rpc(request_for, metadata=metadata, timeout=CALL_TIMEOUT_S)

        return make

    def close(self) -> None:
        for ch in self._channels:
            ch.close()
        self._channels.clear()


def create_aggregator(
    target: str,
    metadata: tuple[tuple[str, str], ...],
    aggregator_id: str,
    metric: str,
    equals: tuple[str, str] | None = None,
) -> str:
    """An aggregator of the ListCustomerUsageEvents scenarios, through CatalogService/CreateAggregator
    (ALREADY_EXISTS on a rerun over kept data is fine); `equals`: its own filter, property = value."""
    with channel(target) as ch:
        stub = catalog_service_pb2_grpc.CatalogServiceStub(ch)
        aggregator = catalog_pb2.Aggregator(
            id=aggregator_id,
            name="API calls (bench)",
            event_type=metric,
            operation="count",
            display_name_property="endpoint",
        )
        if equals is not None:
            condition = aggregator.filter.fields.add(property=equals[0], operator="equals")
            condition.value.string_value = equals[1]
        request = catalog_service_pb2.CreateAggregatorRequest(aggregator=aggregator)
        try:
            stub.CreateAggregator(request, metadata=metadata, timeout=30)
            return "created"
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.ALREADY_EXISTS:
                return "exists"
            raise


class SqlTarget:
    """The database baseline: one psycopg connection per caller."""

    def __init__(self, conninfo: str) -> None:
        self.conninfo = conninfo
        self._conns: list[psycopg.Connection] = []

    def connect(self) -> psycopg.Connection:
        conn = psycopg.connect(self.conninfo, autocommit=True)
        self._conns.append(conn)
        return conn

    def run_once(self, scenario: Scenario) -> list[list[Any]]:
        with psycopg.connect(self.conninfo, autocommit=True) as conn:
            return [list(conn.execute(sql, params).fetchall()) for sql, params in scenario.sql]

    def caller_factory(self, scenario: Scenario) -> Callable[[int], Caller]:
        statements = scenario.sql

        def make(_i: int) -> Caller:
            conn = self.connect()

            def call() -> None:
                for sql, params in statements:
                    conn.execute(sql, params).fetchall()

            return call

        return make

    def close(self) -> None:
        for conn in self._conns:
            conn.close()
        self._conns.clear()
