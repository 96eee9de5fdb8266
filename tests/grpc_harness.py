"""Shared helpers of the RPC tests: a real server on a real channel, per-organization clients, proto
builders and the decoding of rich error details.

    h = Harness.start(db_url)             # server on 127.0.0.1:<free port>, not migrated by itself
    a = h.client("org_a")                  # stubs that send org_a's bearer token
    a.usage.ListUsageEvents(pb.ListUsageEventsRequest())
    err = expect_error(a.catalog.GetCustomer, cpb.GetCustomerRequest(id="x"), grpc.StatusCode.NOT_FOUND)
    h.close()

Importable as `grpc_harness` (tests/ is on sys.path through the root conftest).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Iterable
from typing import Any

import grpc
from google.protobuf import struct_pb2, timestamp_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from usage.v1 import (
    catalog_pb2,
    catalog_service_pb2_grpc,
    corrections_service_pb2_grpc,
    events_pb2,
    usage_service_pb2,
    usage_service_pb2_grpc,
)

import server.app
from server.auth import mint_token
from server.config import Settings

JWT_SECRET = "rpc-test-secret-of-at-least-32-bytes"
CURSOR_SECRET = "test-cursor"
RPC_TIMEOUT_S = 30.0
UTC = dt.UTC


# ---- time ------------------------------------------------------------------------------------
def at(text: str) -> dt.datetime:
    """`2026-01-10T12:00:00Z` (or with an explicit offset) -> an aware datetime."""
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def ts(value: dt.datetime | str) -> timestamp_pb2.Timestamp:
    if isinstance(value, str):
        value = at(value)
    out = timestamp_pb2.Timestamp()
    out.FromDatetime(value.astimezone(UTC))
    return out


def to_dt(t: timestamp_pb2.Timestamp) -> dt.datetime:
    return t.ToDatetime(tzinfo=UTC)


def struct(d: dict[str, Any]) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    s.update(d)
    return s


def value(v: Any) -> struct_pb2.Value:
    out = struct_pb2.Value()
    if v is None:
        out.null_value = struct_pb2.NULL_VALUE
    elif isinstance(v, bool):
        out.bool_value = v
    elif isinstance(v, int | float):
        out.number_value = v
    elif isinstance(v, str):
        out.string_value = v
    elif isinstance(v, list):
        out.list_value.extend(v)
    else:
        raise TypeError(v)
    return out


# ---- builders -------------------------------------------------------------------------------
def event(
    customer_id: str = "cus_1",
    metric_key: str = "api_call",
    timestamp: dt.datetime | str | None = "2026-01-10T12:00:00Z",
    quantity: str = "",
    properties: dict[str, Any] | None = None,
    **optional: str,
) -> events_pb2.UsageEventInput:
    e = events_pb2.UsageEventInput(
        customer_id=customer_id, metric_key=metric_key, quantity=quantity, **optional
    )
    if timestamp is not None:
        e.timestamp.CopyFrom(ts(timestamp))
    if properties is not None:
        e.properties.CopyFrom(struct(properties))
    return e


def condition(prop: str, operator: str, v: Any = ..., *, null: bool = False) -> catalog_pb2.FilterField:
    f = catalog_pb2.FilterField(property=prop, operator=operator)
    if null:
        f.value.CopyFrom(value(None))
    elif v is not ...:
        f.value.CopyFrom(value(v))
    return f


def filt(*fields: catalog_pb2.FilterField, conditional: str = "and") -> catalog_pb2.Filter:
    return catalog_pb2.Filter(conditional=conditional, fields=list(fields))


# ---- errors ---------------------------------------------------------------------------------
@dataclasses.dataclass
class ErrorDetails:
    code: grpc.StatusCode
    message: str
    reason: str
    domain: str
    metadata: dict[str, str]
    violations: list[tuple[str, str]]

    @property
    def fields(self) -> list[str]:
        return [f for f, _ in self.violations]


def details(err: grpc.RpcError) -> ErrorDetails:
    """The status of a failed call with its google.rpc ErrorInfo and BadRequest details decoded."""
    reason, domain, metadata, violations = "", "", {}, []
    status = rpc_status.from_call(err)
    if status is not None:
        for any_detail in status.details:
            if any_detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                any_detail.Unpack(info)
                reason, domain, metadata = info.reason, info.domain, dict(info.metadata)
            elif any_detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad = error_details_pb2.BadRequest()
                any_detail.Unpack(bad)
                violations += [(v.field, v.description) for v in bad.field_violations]
    return ErrorDetails(err.code(), err.details() or "", reason, domain, metadata, violations)


def expect_error(fn: Callable[..., Any], request: Any, code: grpc.StatusCode, **kwargs: Any) -> ErrorDetails:
    try:
        response = fn(request, **kwargs)
        if isinstance(response, grpc.Call) and hasattr(response, "__next__"):
            response = list(response)  # a server stream: its error comes with the first read
    except grpc.RpcError as err:
        got = details(err)
        assert got.code == code, f"expected {code}, got {got.code}: {got.message} {got.violations}"
        return got
    raise AssertionError(f"expected {code}, the call succeeded: {response}")


def expect_invalid(fn: Callable[..., Any], request: Any, field: str, **kwargs: Any) -> ErrorDetails:
    """INVALID_ARGUMENT whose BadRequest names `field` (and whose ErrorInfo says INVALID_ARGUMENT)."""
    got = expect_error(fn, request, grpc.StatusCode.INVALID_ARGUMENT, **kwargs)
    assert field in got.fields, f"expected a violation of {field!r}, got {got.violations} ({got.message})"
    assert got.reason == "INVALID_ARGUMENT"
    assert got.domain == "usage.v1"
    return got


def expect_not_found(fn: Callable[..., Any], request: Any, message: str | None = None) -> ErrorDetails:
    got = expect_error(fn, request, grpc.StatusCode.NOT_FOUND)
    assert got.reason == "NOT_FOUND"
    if message is not None:
        assert got.message == message
    return got


# ---- server and clients ---------------------------------------------------------------------
class _Bound:
    """A stub whose methods send the client's metadata and a deadline."""

    def __init__(self, stub: Any, metadata: tuple[tuple[str, str], ...]) -> None:
        self._stub = stub
        self._metadata = metadata

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self._stub, name)

        def call(request: Any, **kwargs: Any) -> Any:
            kwargs.setdefault("metadata", self._metadata)
            kwargs.setdefault("timeout", RPC_TIMEOUT_S)
            return method(request, **kwargs)

        call.__name__ = name
        return call


@dataclasses.dataclass
class Client:
    org: str
    token: str
    usage: Any
    catalog: Any
    corrections: Any

    def stub(self, service: str) -> Any:
        """The stubs of a service by its name (`UsageService`...)."""
        return {
            "UsageService": self.usage,
            "CatalogService": self.catalog,
            "CorrectionService": self.corrections,
        }[service]

    # Conveniences used by many tests.
    def ingest(self, *events: events_pb2.UsageEventInput) -> list[Any]:
        response = self.usage.IngestUsageEvents(
            usage_service_pb2.IngestUsageEventsRequest(events=list(events))
        )
        return list(response.results)

    def ingest_ok(self, events: Iterable[events_pb2.UsageEventInput], chunk: int = 5000) -> list[str]:
        """Ingest events that must all be ACCEPTED; their ids in order."""
        events = list(events)
        ids: list[str] = []
        for i in range(0, len(events), chunk):
            results = self.ingest(*events[i : i + chunk])
            bad = [r for r in results if r.status != "ACCEPTED"]
            assert not bad, bad[:3]
            ids += [r.event_id for r in results]
        return ids

    def all_events(self, **request: Any) -> list[events_pb2.UsageEvent]:
        """Every event matching the filters, following cursors with limit 100."""
        out: list[events_pb2.UsageEvent] = []
        cursor = ""
        while True:
            page = self.usage.ListUsageEvents(
                usage_service_pb2.ListUsageEventsRequest(limit=100, cursor=cursor, **request)
            )
            out += page.data
            cursor = page.pagination.cursor
            if not cursor:
                return out


class Harness:
    def __init__(self, settings: Settings, storage: Any, running: server.app.Running) -> None:
        self.settings = settings
        self.storage = storage
        self.running = running
        self.port = running.port
        self.address = f"127.0.0.1:{running.port}"
        self.channel = grpc.insecure_channel(self.address)
        self._clients: dict[str, Client] = {}

    @classmethod
    def start(cls, db_url: str, **overrides: Any) -> Harness:
        values: dict[str, Any] = {"max_workers": 8, "db_pool_size": 4, **overrides}
        settings = Settings(
            database_url=db_url, jwt_secret=JWT_SECRET, cursor_secret=CURSOR_SECRET, port=0, **values
        )
        storage = server.app.open_storage(settings, auto_migrate=False)
        try:
            running = server.app.create_server(settings, storage, address="127.0.0.1:0")
            running.server.start()
        except BaseException:
            storage.close()
            raise
        return cls(settings, storage, running)

    def token(self, org: str, ttl: dt.timedelta = dt.timedelta(hours=1), caller: str | None = None) -> str:
        return mint_token(self.settings, org, ttl, caller)

    def client(self, org: str) -> Client:
        """Stubs that act for `org` with a fresh valid token (one client per organization)."""
        if org not in self._clients:
            token = self.token(org)
            self._clients[org] = self.raw_client(
                (("authorization", f"Bearer {token}"),), org=org, token=token
            )
        return self._clients[org]

    def raw_client(self, metadata: Iterable[tuple[str, str]], org: str = "", token: str = "") -> Client:
        """Stubs that send exactly `metadata` (for the authentication tests)."""
        metadata = tuple(metadata)
        return Client(
            org=org,
            token=token,
            usage=_Bound(usage_service_pb2_grpc.UsageServiceStub(self.channel), metadata),
            catalog=_Bound(catalog_service_pb2_grpc.CatalogServiceStub(self.channel), metadata),
            corrections=_Bound(corrections_service_pb2_grpc.CorrectionServiceStub(self.channel), metadata),
        )

    def close(self) -> None:
        self.channel.close()
        self.running.server.stop(None).wait()
        self.storage.close()
