"""The real servicers under grpcio-testing (no network), on a real SQLite database.

grpcio-testing bypasses server interceptors, so neither authentication nor the error mapping of
server/rpc/interceptors.py runs here. The servicers read the organization from the `_CALLER` context
variable that the auth interceptor sets; grpcio-testing runs each RPC on a thread of its own (a
new thread starts with an empty context), so `OrgScoped` below sets `_CALLER` on that thread, as the
interceptor would, and nothing else.
"""

from __future__ import annotations

import datetime as dt
import pathlib
from collections.abc import Iterator
from typing import Any

import grpc
import grpc_testing
import pytest
from google.protobuf import message_factory
from grpc_harness import at, event, ts
from usage.v1 import catalog_pb2, catalog_service_pb2, usage_service_pb2
from usage.v1 import catalog_service_pb2 as cpb
from usage.v1 import usage_service_pb2 as pb

import server.app
from server.auth import Caller
from server.config import Settings
from server.errors import InvalidArgument, NotFound
from server.logic.aggregator_usage import AggregatorUsage
from server.logic.as_of import AsOf
from server.logic.catalog import Catalog
from server.logic.cursors import CursorCodec
from server.logic.explain import Explainer
from server.logic.ingest import Ingestion
from server.logic.queries import UsageQueries
from server.rpc.catalog_servicer import CatalogServicer
from server.rpc.interceptors import _CALLER, current_org
from server.rpc.usage_servicer import UsageServicer

USAGE = usage_service_pb2.DESCRIPTOR.services_by_name["UsageService"]
CATALOG = catalog_service_pb2.DESCRIPTOR.services_by_name["CatalogService"]
START = at("2026-01-10T00:00:00Z")


class OrgScoped:
    """A servicer whose methods run with `_CALLER` set to `org` on the calling thread."""

    def __init__(self, servicer: Any, org: str) -> None:
        self._servicer = servicer
        self._org = org

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._servicer, name)

        def run(request: Any, context: Any) -> Any:
            token = _CALLER.set(Caller(self._org))
            try:
                return method(request, context)
            finally:
                _CALLER.reset(token)

        return run


@pytest.fixture
def servicers(tmp_path: pathlib.Path) -> Iterator[tuple[UsageServicer, CatalogServicer]]:
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'usage.db'}",
        jwt_secret="grpcio-testing-secret-of-32-bytes-long",
        cursor_secret="test-cursor",
    )
    storage = server.app.open_storage(settings, auto_migrate=True)
    cursors = CursorCodec(settings.cursor_secret)
    as_of = AsOf(storage, settings.as_of_horizon_days)
    queries = UsageQueries(storage, cursors, settings.max_aggregate_buckets, as_of=as_of)
    usage = UsageServicer(
        queries,
        Explainer(storage, as_of),
        Ingestion(storage.events, settings.max_future_skew_s),
        settings.default_query_timeout_s,
        usage=AggregatorUsage(storage, Catalog(storage.catalog, cursors), queries, as_of),
    )
    catalog = CatalogServicer(Catalog(storage.catalog, cursors), 30.0)
    try:
        yield usage, catalog
    finally:
        storage.close()


@pytest.fixture
def test_server(servicers) -> grpc_testing.Server:
    usage, catalog = servicers
    return grpc_testing.server_from_dictionary(
        {USAGE: OrgScoped(usage, "org_a"), CATALOG: OrgScoped(catalog, "org_a")},
        grpc_testing.strict_real_time(),
    )


def call(test_server: grpc_testing.Server, service: Any, method: str, request: Any):
    descriptor = service.methods_by_name[method]
    rpc = test_server.invoke_unary_unary(descriptor, (), request, 10)
    response, trailing, code, details = rpc.termination()
    if isinstance(response, bytes):
        # The event lists answer with their serialized response (server/wire.py); grpcio-testing
        # hands over what the servicer returned, without the serializer the real server applies.
        response = message_factory.GetMessageClass(descriptor.output_type).FromString(response)
    return response, trailing, code, details


def test_ingest_then_list_and_aggregate(test_server: grpc_testing.Server) -> None:
    response, _, code, _ = call(
        test_server,
        USAGE,
        "IngestUsageEvents",
        pb.IngestUsageEventsRequest(
            events=[
                event(timestamp=START),
                event(timestamp=START + dt.timedelta(hours=1)),
                event(timestamp=None),
            ]
        ),
    )
    assert code == grpc.StatusCode.OK
    assert [r.status for r in response.results] == ["ACCEPTED", "ACCEPTED", "REJECTED"]
    assert response.results[2].violations[0].field == "timestamp"

    response, _, code, _ = call(test_server, USAGE, "ListUsageEvents", pb.ListUsageEventsRequest(limit=1))
    assert code == grpc.StatusCode.OK
    assert [e.id for e in response.data] == [response.data[0].id]
    assert response.data[0].organization_id == "org_a"
    assert response.pagination.has_more

    response, _, code, _ = call(
        test_server,
        USAGE,
        "AggregateUsage",
        pb.AggregateUsageRequest(bucket="hour", since=ts(START), until=ts(START + dt.timedelta(hours=2))),
    )
    assert code == grpc.StatusCode.OK
    assert [p.value for p in response.series[0].points] == [1, 1]


def test_catalog_round_trip(test_server: grpc_testing.Server) -> None:
    response, _, code, _ = call(
        test_server,
        CATALOG,
        "CreateAggregator",
        cpb.CreateAggregatorRequest(
            aggregator=catalog_pb2.Aggregator(
                id="agg", name="Calls", event_type="api_call", operation="count"
            )
        ),
    )
    assert code == grpc.StatusCode.OK and response.aggregator.id == "agg"
    call(
        test_server, USAGE, "IngestUsageEvents", pb.IngestUsageEventsRequest(events=[event(timestamp=START)])
    )
    response, _, code, _ = call(
        test_server,
        USAGE,
        "ListCustomerUsageEvents",
        pb.ListCustomerUsageEventsRequest(
            id="cus_1", aggregator_id="agg", start_date=ts(START), end_date=ts(START + dt.timedelta(days=1))
        ),
    )
    assert code == grpc.StatusCode.OK
    assert response.meta.total == 1 and response.data[0].name == "api_call"
    response, _, code, _ = call(test_server, CATALOG, "GetCustomer", cpb.GetCustomerRequest(id="cus_1"))
    assert code == grpc.StatusCode.OK and response.customer.id == "cus_1"


def test_errors_are_not_mapped_without_the_interceptor(test_server: grpc_testing.Server) -> None:
    """A ServiceError leaves the servicer as an exception: grpcio-testing reports UNKNOWN, no rich details."""
    response, trailing, code, details = call(
        test_server, CATALOG, "GetCustomer", cpb.GetCustomerRequest(id="nope")
    )
    assert response is None
    assert code == grpc.StatusCode.UNKNOWN
    assert "Customer not found" in details
    assert not any(key == "grpc-status-details-bin" for key, _ in (trailing or ()))

    _, _, code, details = call(test_server, USAGE, "ListUsageEvents", pb.ListUsageEventsRequest(limit=-1))
    assert code == grpc.StatusCode.UNKNOWN
    assert "limit" in details


def test_servicer_raises_service_errors_directly(servicers) -> None:
    """Called on this thread with `_CALLER` set, the servicer raises the domain error itself."""
    usage, catalog = servicers
    token = _CALLER.set(Caller("org_a"))
    try:
        assert current_org() == "org_a"
        with pytest.raises(NotFound) as not_found:
            catalog.GetCustomer(cpb.GetCustomerRequest(id="nope"), None)
        assert not_found.value.message == "Customer not found"
        with pytest.raises(InvalidArgument) as invalid:
            catalog.GetCustomer(cpb.GetCustomerRequest(id=""), None)
        assert [v.field for v in invalid.value.violations] == ["id"]
        created = catalog.CreateCustomer(
            cpb.CreateCustomerRequest(customer=catalog_pb2.Customer(id="cus_x")), None
        )
        assert created.customer.id == "cus_x"
    finally:
        _CALLER.reset(token)


def test_without_an_organization_the_servicer_fails(servicers) -> None:
    """No interceptor and no `_CALLER`: the RPC fails (UNKNOWN) instead of acting for some organization."""
    usage, catalog = servicers
    bare = grpc_testing.server_from_dictionary({CATALOG: catalog}, grpc_testing.strict_real_time())
    _, _, code, _ = call(bare, CATALOG, "ListCustomers", cpb.ListCustomersRequest())
    assert code == grpc.StatusCode.UNKNOWN
