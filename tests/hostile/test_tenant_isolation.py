"""Tenant isolation (issue 6, part 2), over real channels, on SQLite and PostgreSQL.

Organization A gets customers, aggregators (a display-name property and a filter each), aggregator
filters and events, all through the RPCs (on PostgreSQL a rolled-up dimension too, so AggregateUsage is
answered from the rollup tables) and one voided event. Then, for every RPC of every service the
server serves (enumerated from the service descriptors: an RPC without a probe in PROBES fails), a
token of organization B tries to read, count, aggregate, page through (A's cursors), update, void or
delete A's data, or to learn that it exists. B's calls also carry metadata headers naming A's
organization (`x-org: org_a`...), which the service must ignore: the organization comes from the
token only.

What B gets for A's ids is exactly what B gets for ids that never existed (same code, message modulo
the id, ErrorInfo and BadRequest details); B's lists and aggregates equal those of an organization that
never stored anything; A's cursors are refused exactly as B's own cursors of another query are; B's
ingestion with A's idempotency keys is ACCEPTED as new events of B. After each probe, A's data is
unchanged byte for byte: every listing A can make (serialized deterministically) and every row of A in
every table, rollups included.

Tokens: forged variants that tests/rpc/test_auth_and_errors.py does not already send to every RPC
(tampered payload, re-headed signatures, organization claims of the wrong type, asymmetric-key
confusions, a token in another header, org headers without a token) are UNAUTHENTICATED on every RPC.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import functools
import hashlib
import hmac
import json
import pathlib
import secrets
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import jwt
import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from google.protobuf import field_mask_pb2
from google.protobuf.message import Message
from grpc_harness import (
    JWT_SECRET,
    Client,
    ErrorDetails,
    Harness,
    at,
    condition,
    details,
    event,
    filt,
    ts,
)
from hostile_support import fingerprint
from rpc.test_auth_and_errors import ALL_METHODS, _b64, empty_request
from usage.v1 import catalog_pb2, events_pb2
from usage.v1 import catalog_service_pb2 as cpb
from usage.v1 import corrections_service_pb2 as xpb
from usage.v1 import usage_service_pb2 as pb

from server.storage import rollups, schema

pytestmark = pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")

ORG_A, ORG_B, ORG_EMPTY = "org_a", "org_b", "org_empty"
# Metadata a confused proxy or client might believe names the organization. Only the token does.
ORG_HEADERS = ("x-org", "x-org-id", "x-organization-id", "x-tenant-id", "org_id", "organization", "tenant")

RPCS = sorted(f"{service.name}/{method}" for service, method in ALL_METHODS)
NOT_FOUND = grpc.StatusCode.NOT_FOUND
INVALID = grpc.StatusCode.INVALID_ARGUMENT

T0 = at("2026-01-10T00:00:00Z")
SINCE = at("2026-01-09T23:30:00Z")  # a ragged first half hour: rollup and raw events both answer
UNTIL = at("2026-01-12T00:00:00Z")
EVENTS = 24
CUSTOMERS = {"cus_alpha": "Alpha Corp", "cus_beta": "Beta Corp"}
INGESTED_CUSTOMER = "cus_gamma"  # registered by ingestion only
ALL_CUSTOMERS = [*CUSTOMERS, INGESTED_CUSTOMER]
AGGREGATOR_FILTERS = {"agg_calls": ["flt_eu", "flt_get"], "agg_storage": ["flt_big"]}
ALL_FILTERS = [f for fs in AGGREGATOR_FILTERS.values() for f in fs]
GROUP_BYS = ("none", "metric_key", "dim:region")
A_TABLES = (
    schema.customers,
    schema.aggregators,
    schema.aggregator_filters,
    schema.events,
    schema.idempotency_keys,
    schema.rollup_metric_hourly,
    schema.rollup_dimension_hourly,
    schema.rollup_customer_hourly,
    schema.voided_events,
)


def _bytes(message: Message) -> bytes:
    return message.SerializeToString(deterministic=True)


# ---- organization A ---------------------------------------------------------------------------
def _a_aggregators() -> list[catalog_pb2.Aggregator]:
    return [
        catalog_pb2.Aggregator(
            id="agg_calls",
            name="API calls",
            event_type="api_call",
            operation="count",
            unit_name="calls",
            display_name_property="endpoint",
            filter=filt(condition("region", "in", ["eu", "us"])),
        ),
        catalog_pb2.Aggregator(
            id="agg_storage",
            name="Storage",
            event_type="storage_gb",
            operation="sum",
            property="size_gb",
            unit_name="GB",
            display_name_property="volume",
            filter=filt(condition("tier", "not_equals", "free")),
        ),
    ]


def _a_filters() -> list[catalog_pb2.AggregatorFilter]:
    return [
        catalog_pb2.AggregatorFilter(
            id="flt_eu",
            aggregator_id="agg_calls",
            name="EU",
            filter=filt(condition("region", "equals", "eu")),
        ),
        catalog_pb2.AggregatorFilter(
            id="flt_get",
            aggregator_id="agg_calls",
            name="GET",
            filter=filt(condition("method", "equals", "GET"), condition("region", "is_not_null")),
        ),
        catalog_pb2.AggregatorFilter(
            id="flt_big",
            aggregator_id="agg_storage",
            name="Big",
            filter=filt(condition("size_gb", "gte", 10)),
        ),
    ]


def _a_events() -> list[events_pb2.UsageEventInput]:
    regions = ["eu", "us", "ap"]
    out = []
    for i in range(EVENTS):
        optional: dict[str, str] = {}
        if i % 4 != 3:
            optional["idempotency_key"] = f"req-{i}"
        if i % 3 == 0:
            optional["product_id"] = "prod_a"
        if i % 5 == 0:
            optional["subscription_id"] = "sub_a"
        if i % 7 == 0:
            optional.update(price_key="price_a", external_cost_amount="0.125", external_cost_currency="EUR")
        customer = ALL_CUSTOMERS[i % 3]
        when = T0 + dt.timedelta(minutes=97 * i)
        if i % 2 == 0:
            props: dict[str, Any] = {
                "region": regions[i % 3],
                "endpoint": f"/v1/endpoint-{i % 4}",
                "method": "GET" if i % 4 == 0 else "POST",
                "name": f"call {i}",
            }
            out.append(event(customer, "api_call", when, properties=props, **optional))
        else:
            props = {"region": regions[i % 3], "tier": "free" if i % 5 == 0 else "pro", "size_gb": i}
            out.append(event(customer, "storage_gb", when, quantity=f"{i}.25", properties=props, **optional))
    return out


def _aggregate_requests(**filters: Any) -> list[pb.AggregateUsageRequest]:
    shapes = [("hour", metric, group_by) for metric in ("count", "sum_quantity") for group_by in GROUP_BYS]
    shapes += [("day", "count", "none"), ("week", "sum_quantity", "dim:region")]
    return [
        pb.AggregateUsageRequest(
            bucket=bucket,
            since=ts(SINCE),
            until=ts(UNTIL),
            metric=metric,
            group_by=group_by,
            top=0,
            **filters,
        )
        for bucket, metric, group_by in shapes
    ]


def _customer_event_requests(customers: list[str]) -> list[pb.ListCustomerUsageEventsRequest]:
    out = []
    for customer in customers:
        for aggregator, filters in AGGREGATOR_FILTERS.items():
            for flt in [None, *filters]:
                request = pb.ListCustomerUsageEventsRequest(
                    id=customer, aggregator_id=aggregator, start_date=ts(SINCE), end_date=ts(UNTIL), take=100
                )
                if flt is not None:
                    request.aggregator_filter_id = flt
                out.append(request)
    return out


def _pages(call: Callable[..., Any], request: Message) -> list[bytes]:
    """Every page of a cursor-paginated list, serialized."""
    out = []
    request = _copy(request)
    while True:
        page = call(request)
        out.append(_bytes(page))
        if not page.pagination.cursor:
            return out
        request.cursor = page.pagination.cursor


def _copy(message: Message, **changes: Any) -> Any:
    out = type(message)()
    out.CopyFrom(message)
    for name, value in changes.items():
        setattr(out, name, value)
    return out


# ---- errors, compared modulo ids ------------------------------------------------------------------
def _error(call: Callable[..., Any], request: Message) -> ErrorDetails:
    try:
        response = call(request)
    except grpc.RpcError as err:
        return details(err)
    raise AssertionError(f"{call.__name__} succeeded: {response}")


def _masked(got: ErrorDetails, ids: dict[str, str]) -> tuple[Any, ...]:
    def mask(text: str) -> str:
        for name, value in ids.items():
            text = text.replace(value, f"<{name}>")
        return text

    return (
        got.code,
        mask(got.message),
        got.reason,
        got.domain,
        sorted((k, mask(v)) for k, v in got.metadata.items()),
        [(mask(f), mask(d)) for f, d in got.violations],
    )


def _never(like: str) -> str:
    """An id of the same kind as `like` that nobody ever used."""
    return f"{like.split('_')[0]}_never_{secrets.token_hex(4)}"


@dataclasses.dataclass
class World:
    h: Harness
    a: Client
    b: Client  # org B's token, plus headers naming org A
    empty: Client  # an organization that never stores anything: what "nothing" looks like
    event_ids: list[str]
    cursors: dict[str, list[tuple[Message, str]]]  # A's requests and the cursors they returned
    before: dict[str, Any] = dataclasses.field(default_factory=dict)

    # ---- comparisons
    def same_as_never(
        self, call: Callable[..., Any], build: Callable[..., Message], code: grpc.StatusCode, **a_ids: str
    ) -> ErrorDetails:
        """B's error for A's ids equals B's error for never-used ids of the same kinds."""
        never = {name: _never(value) for name, value in a_ids.items()}
        got = _error(call, build(**a_ids))
        reference = _error(call, build(**never))
        assert got.code == code, f"{call.__name__} {a_ids}: {got.code} {got.message}"
        assert _masked(got, a_ids) == _masked(reference, never), (
            f"{call.__name__}: B can tell A's {a_ids} from ids that never existed:\n"
            f"  A's ids: {got}\n  never:   {reference}"
        )
        for value in a_ids.values():
            assert value not in got.message
        return got

    def same_as_empty(self, method: str, request: Message, service: str = "usage") -> Message:
        """B's answer equals that of an organization without any data."""
        got = getattr(getattr(self.b, service), method)(request)
        reference = getattr(getattr(self.empty, service), method)(request)
        assert _bytes(got) == _bytes(reference), (
            f"{method} {request}: B sees\n{got}\nan empty org sees\n{reference}"
        )
        return got

    def b_own_cursors(self) -> dict[str, str]:
        """Cursors B obtains from its own lists: the reference for a cursor issued for another query."""
        for i in (1, 2):
            self.b.catalog.CreateCustomer(
                cpb.CreateCustomerRequest(customer=catalog_pb2.Customer(id=f"cus_bown{i}"))
            )
            self.b.catalog.CreateAggregator(
                cpb.CreateAggregatorRequest(
                    aggregator=catalog_pb2.Aggregator(
                        id=f"agg_bown{i}", name="B", event_type="b_metric", operation="count"
                    )
                )
            )
        out = {
            "ListCustomers": self.b.catalog.ListCustomers(
                cpb.ListCustomersRequest(limit=1)
            ).pagination.cursor,
            "ListAggregators": self.b.catalog.ListAggregators(
                cpb.ListAggregatorsRequest(limit=1)
            ).pagination.cursor,
        }
        assert all(out.values())
        return out

    def b_aggregator(self, aggregator_id: str, like: catalog_pb2.Aggregator | None = None) -> None:
        """B creates an aggregator of its own (optionally a copy of one of A's, same id)."""
        aggregator = catalog_pb2.Aggregator(name="B's", event_type="api_call", operation="count")
        if like is not None:
            aggregator.CopyFrom(like)
        aggregator.id = aggregator_id
        got = self.b.catalog.CreateAggregator(cpb.CreateAggregatorRequest(aggregator=aggregator)).aggregator
        assert got.id == aggregator_id

    # ---- A's data
    def snapshot(self) -> dict[str, Any]:
        """Everything A can list, serialized, and every row of A in every table."""
        a = self.a
        out: dict[str, Any] = {
            "ListCustomers": _pages(a.catalog.ListCustomers, cpb.ListCustomersRequest(limit=1)),
            "ListAggregators": _pages(a.catalog.ListAggregators, cpb.ListAggregatorsRequest(limit=1)),
            "ListUsageEvents": _pages(a.usage.ListUsageEvents, pb.ListUsageEventsRequest(limit=7)),
            "GetCustomer": [
                _bytes(a.catalog.GetCustomer(cpb.GetCustomerRequest(id=c))) for c in ALL_CUSTOMERS
            ],
            "GetAggregator": [
                _bytes(a.catalog.GetAggregator(cpb.GetAggregatorRequest(id=g))) for g in AGGREGATOR_FILTERS
            ],
            "ListAggregatorFilters": [
                _bytes(a.catalog.ListAggregatorFilters(cpb.ListAggregatorFiltersRequest(aggregator_id=g)))
                for g in AGGREGATOR_FILTERS
            ],
            "ListCustomerUsageEvents": [
                _bytes(a.usage.ListCustomerUsageEvents(r)) for r in _customer_event_requests(ALL_CUSTOMERS)
            ],
            "AggregateUsage": [_bytes(a.usage.AggregateUsage(r)) for r in _aggregate_requests()],
            "GetUsageEventHistory": [
                _bytes(a.corrections.GetUsageEventHistory(xpb.GetUsageEventHistoryRequest(event_id=i)))
                for i in self.event_ids
            ],
            "GetCustomerUsage": [
                _bytes(a.usage.GetCustomerUsage(_customer_usage(c, g, f)))
                for c in ALL_CUSTOMERS
                for g, filters in AGGREGATOR_FILTERS.items()
                for f in [None, *filters]
            ],
            "ListAggregatorUsageByCustomer": [
                _bytes(
                    a.usage.ListAggregatorUsageByCustomer(_per_aggregator("ListAggregatorUsageByCustomer", g))
                )
                for g in AGGREGATOR_FILTERS
            ],
            "GetAggregatorTimeSeries": [
                _bytes(
                    a.usage.GetAggregatorTimeSeries(
                        _per_aggregator("GetAggregatorTimeSeries", g, bucket="hour")
                    )
                )
                for g in AGGREGATOR_FILTERS
            ],
        }
        with self.h.storage.engine.connect() as conn:
            for table in A_TABLES:
                keys = list(table.primary_key.columns)
                rows = conn.execute(sa.select(table).where(table.c.organization_id == ORG_A).order_by(*keys))
                out[f"table {table.name}"] = [tuple(r) for r in rows]
        return out

    def assert_a_unchanged(self) -> None:
        try:
            after = self.snapshot()
        except grpc.RpcError as err:
            raise AssertionError(
                f"after B's calls, A can no longer read its own data: {details(err)}"
            ) from None
        changed = [name for name in self.before if after[name] != self.before[name]]
        assert not changed, f"B's calls changed A's data: {changed}"


def _seed(h: Harness) -> World:
    a = h.client(ORG_A)
    b_token = h.token(ORG_B)
    b = h.raw_client(
        (("authorization", f"Bearer {b_token}"), *((name, ORG_A) for name in ORG_HEADERS)),
        org=ORG_B,
        token=b_token,
    )
    empty = h.client(ORG_EMPTY)
    for cid, name in CUSTOMERS.items():
        a.catalog.CreateCustomer(cpb.CreateCustomerRequest(customer=catalog_pb2.Customer(id=cid, name=name)))
    for aggregator in _a_aggregators():
        a.catalog.CreateAggregator(cpb.CreateAggregatorRequest(aggregator=aggregator))
    for flt in _a_filters():
        a.catalog.CreateAggregatorFilter(cpb.CreateAggregatorFilterRequest(aggregator_filter=flt))
    events = _a_events()
    ids = a.ingest_ok(events[: EVENTS // 2])
    postgres = h.storage.engine.dialect.name == "postgresql"
    if postgres:
        # Roll up `region` (backfilling the first half); the second half is added as it is ingested.
        with h.storage.engine.begin() as conn:
            assert rollups.add_dimension(conn, "region", int(dt.datetime.now(dt.UTC).timestamp() * 1e6))
    ids += a.ingest_ok(events[EVENTS // 2 :])

    # A sees its data (so that B seeing none of it means something).
    listed = a.all_events()
    assert sorted(e.id for e in listed) == sorted(ids) and {e.organization_id for e in listed} == {ORG_A}
    customers = a.catalog.ListCustomers(cpb.ListCustomersRequest(limit=100)).data
    assert [c.id for c in customers] == sorted(ALL_CUSTOMERS)
    page = a.usage.ListCustomerUsageEvents(
        pb.ListCustomerUsageEventsRequest(
            id="cus_alpha", aggregator_id="agg_calls", start_date=ts(SINCE), end_date=ts(UNTIL)
        )
    )
    assert page.meta.total > 0 and {e.name for e in page.data} <= {f"/v1/endpoint-{i}" for i in range(4)}
    by_region = a.usage.AggregateUsage(
        pb.AggregateUsageRequest(
            bucket="hour", since=ts(SINCE), until=ts(UNTIL), group_by="dim:region", top=0
        )
    )
    assert {s.key: s.total for s in by_region.series} == {"eu": 8, "us": 8, "ap": 8}
    if postgres:
        with h.storage.engine.connect() as conn:
            d = schema.rollup_dimension_hourly
            rolled = conn.execute(
                sa.select(sa.func.sum(d.c.event_count)).where(
                    d.c.organization_id == ORG_A, d.c.dim_key == "region"
                )
            ).scalar_one()
        assert rolled == EVENTS

    # One of A's events voided: B must not void it again, nor learn of it or of its void.
    (voided,) = a.corrections.VoidUsageEvents(
        xpb.VoidUsageEventsRequest(event_ids=[ids[1]], reason="A's own correction")
    ).results
    assert voided.status == "VOIDED"

    cursors: dict[str, list[tuple[Message, str]]] = {
        "ListUsageEvents": [],
        "ListCustomers": [],
        "ListAggregators": [],
    }
    for request in (
        pb.ListUsageEventsRequest(limit=5),
        pb.ListUsageEventsRequest(limit=3, metric_key=["api_call"]),
        pb.ListUsageEventsRequest(limit=2, customer_id="cus_alpha"),
        pb.ListUsageEventsRequest(limit=2, product_id="prod_a", occurred_after=ts(T0)),
    ):
        first = a.usage.ListUsageEvents(request).pagination.cursor
        second = a.usage.ListUsageEvents(_copy(request, cursor=first)).pagination.cursor
        cursors["ListUsageEvents"] += [(request, first), (request, second)]
    for method, request in (
        ("ListCustomers", cpb.ListCustomersRequest(limit=1)),
        ("ListAggregators", cpb.ListAggregatorsRequest(limit=1)),
    ):
        cursors[method].append((request, getattr(a.catalog, method)(request).pagination.cursor))
    assert all(c for pairs in cursors.values() for _, c in pairs)

    world = World(h=h, a=a, b=b, empty=empty, event_ids=ids, cursors=cursors)
    world.before = world.snapshot()
    return world


@pytest.fixture
def world(db_url: str) -> Iterator[World]:
    h = Harness.start(db_url)
    try:
        yield _seed(h)
    finally:
        h.close()


# ---- one probe per RPC ------------------------------------------------------------------------
def _cursor_replays(w: World, method: str, reference_cursor: str) -> None:
    """A's cursors, replayed by B with A's filters: refused as B's own cursor of another query is."""
    call = getattr(w.b.usage if method == "ListUsageEvents" else w.b.catalog, method)
    for request, cursor in w.cursors[method]:
        got = _error(call, _copy(request, cursor=cursor))
        reference = _error(call, _copy(request, cursor=reference_cursor))
        assert got.code == INVALID and got.fields == ["cursor"], got
        assert _masked(got, {}) == _masked(reference, {}), (
            f"{method}: A's cursor {got} vs B's own {reference}"
        )


def _customer_events(customer: str, aggregator: str, flt: str | None = None) -> Message:
    request = pb.ListCustomerUsageEventsRequest(
        id=customer, aggregator_id=aggregator, start_date=ts(SINCE), end_date=ts(UNTIL), take=100
    )
    if flt is not None:
        request.aggregator_filter_id = flt
    return request


def probe_list_customer_usage_events(w: World) -> None:
    call = w.b.usage.ListCustomerUsageEvents
    for customer in ALL_CUSTOMERS:
        for aggregator, filters in AGGREGATOR_FILTERS.items():
            got = w.same_as_never(call, _customer_events, NOT_FOUND, customer=customer, aggregator=aggregator)
            assert got.message == "Customer not found"
            for flt in filters:
                w.same_as_never(
                    call, _customer_events, NOT_FOUND, customer=customer, aggregator=aggregator, flt=flt
                )
    # With a customer and an aggregator of B's own, A's ids are unknown one by one.
    w.b.catalog.CreateCustomer(cpb.CreateCustomerRequest(customer=catalog_pb2.Customer(id="cus_bown")))
    w.b_aggregator("agg_bown")
    for customer in ALL_CUSTOMERS:
        build = functools.partial(_customer_events, aggregator="agg_bown")
        got = w.same_as_never(call, build, NOT_FOUND, customer=customer)
        assert got.message == "Customer not found"
    for aggregator in AGGREGATOR_FILTERS:
        build = functools.partial(_customer_events, "cus_bown")
        got = w.same_as_never(call, build, NOT_FOUND, aggregator=aggregator)
        assert got.message == "Aggregator not found"
    for flt in ALL_FILTERS:
        build = functools.partial(_customer_events, "cus_bown", "agg_bown")
        got = w.same_as_never(call, build, NOT_FOUND, flt=flt)
        assert got.message == "Aggregator filter not found"
    # B registers A's ids as its own (same customer ids, same aggregator definitions): it counts
    # nothing, on any page, and A's filter ids are not attached to B's namesake aggregators.
    for customer in ALL_CUSTOMERS:
        w.b.catalog.CreateCustomer(cpb.CreateCustomerRequest(customer=catalog_pb2.Customer(id=customer)))
    for aggregator in _a_aggregators():
        w.b_aggregator(aggregator.id, like=aggregator)
    for customer in ALL_CUSTOMERS:
        for aggregator, filters in AGGREGATOR_FILTERS.items():
            for take, skip in ((100, 0), (0, 0), (1, 1)):
                page = call(_copy(_customer_events(customer, aggregator), take=take, skip=skip))
                assert (page.meta.total, page.meta.taken, list(page.data)) == (0, 0, []), page
            for flt in filters:
                build = functools.partial(_customer_events, customer, aggregator)
                got = w.same_as_never(call, build, NOT_FOUND, flt=flt)
                assert got.message == "Aggregator filter not found"


def probe_list_usage_events(w: World) -> None:
    for request in (
        pb.ListUsageEventsRequest(),
        pb.ListUsageEventsRequest(limit=100),
        pb.ListUsageEventsRequest(metric_key=["api_call,storage_gb"]),
        pb.ListUsageEventsRequest(product_id="prod_a"),
        pb.ListUsageEventsRequest(subscription_id="sub_a"),
        pb.ListUsageEventsRequest(occurred_after=ts(SINCE), occurred_before=ts(UNTIL)),
        *(pb.ListUsageEventsRequest(customer_id=c) for c in ALL_CUSTOMERS),
    ):
        page = w.same_as_empty("ListUsageEvents", request)
        assert list(page.data) == [] and page.pagination.cursor == ""
    for customer in ALL_CUSTOMERS:
        mine = w.b.usage.ListUsageEvents(pb.ListUsageEventsRequest(customer_id=customer))
        never = w.b.usage.ListUsageEvents(pb.ListUsageEventsRequest(customer_id=_never(customer)))
        assert _bytes(mine) == _bytes(never)
    _cursor_replays(w, "ListUsageEvents", w.b_own_cursors()["ListCustomers"])


def probe_export_usage_events(w: World) -> None:
    def export(client: Client, request: Message) -> list[bytes]:
        return [_bytes(chunk) for chunk in client.usage.ExportUsageEvents(request)]

    for request in (
        pb.ExportUsageEventsRequest(),
        pb.ExportUsageEventsRequest(order="oldest_first", chunk_size=1),
        pb.ExportUsageEventsRequest(metric_key=["api_call,storage_gb"]),
        pb.ExportUsageEventsRequest(product_id="prod_a", subscription_id="sub_a"),
        pb.ExportUsageEventsRequest(occurred_after=ts(SINCE), occurred_before=ts(UNTIL)),
        *(pb.ExportUsageEventsRequest(customer_id=c) for c in ALL_CUSTOMERS),
    ):
        assert export(w.b, request) == export(w.empty, request) == [], request
    for customer in ALL_CUSTOMERS:
        mine = pb.ExportUsageEventsRequest(customer_id=customer)
        never = pb.ExportUsageEventsRequest(customer_id=_never(customer))
        assert export(w.b, mine) == export(w.b, never)
    # A's resume tokens, replayed by B with A's filters: refused as B's own token of another query is.
    a_request = pb.ExportUsageEventsRequest(chunk_size=1)
    a_token = next(iter(w.a.usage.ExportUsageEvents(a_request))).resume_token
    w.b.ingest_ok([event("cus_bown", "b_metric", T0)])
    b_token = next(iter(w.b.usage.ExportUsageEvents(_copy(a_request, order="oldest_first")))).resume_token

    def call(request: Message) -> list[bytes]:
        return export(w.b, request)

    got = _error(call, _copy(a_request, resume_token=a_token))
    reference = _error(call, _copy(a_request, resume_token=b_token))
    assert got.code == INVALID and got.fields == ["resume_token"], got
    assert _masked(got, {}) == _masked(reference, {})


def _explain(event_id: str, aggregator: str, flt: str | None = None, customer: str | None = None) -> Message:
    request = pb.ExplainUsageEventRequest(event_id=event_id, aggregator_id=aggregator)
    if flt is not None:
        request.aggregator_filter_id = flt
    if customer is not None:
        request.customer_id = customer
    return request


def probe_explain_usage_event(w: World) -> None:
    call = w.b.usage.ExplainUsageEvent
    for event_id in w.event_ids:
        for aggregator, filters in AGGREGATOR_FILTERS.items():
            got = w.same_as_never(call, _explain, NOT_FOUND, event_id=event_id, aggregator=aggregator)
            assert got.message == "Usage event not found"
            for flt in filters:
                w.same_as_never(call, _explain, NOT_FOUND, event_id=event_id, aggregator=aggregator, flt=flt)
    # With an aggregator and an event of B's own, A's ids are unknown one by one.
    w.b_aggregator("agg_bown")
    for event_id in w.event_ids:
        got = w.same_as_never(
            call, functools.partial(_explain, aggregator="agg_bown"), NOT_FOUND, event_id=event_id
        )
        assert got.message == "Usage event not found"
    (b_event,) = w.b.ingest_ok([event("cus_bown", "api_call", T0)])
    for aggregator in AGGREGATOR_FILTERS:
        got = w.same_as_never(call, functools.partial(_explain, b_event), NOT_FOUND, aggregator=aggregator)
        assert got.message == "Aggregator not found"
    for flt in ALL_FILTERS:
        got = w.same_as_never(call, functools.partial(_explain, b_event, "agg_bown"), NOT_FOUND, flt=flt)
        assert got.message == "Aggregator filter not found"
    for customer in ALL_CUSTOMERS:
        build = functools.partial(_explain, b_event, "agg_bown", None)
        got = w.same_as_never(call, build, NOT_FOUND, customer=customer)
        assert got.message == "Customer not found"
    # B's own event explained against B's namesake of A's aggregator: B's definition, B's event.
    w.b_aggregator("agg_calls_b", like=_a_aggregators()[0])
    got = call(_explain(b_event, "agg_calls_b"))
    assert got.event.id == b_event and got.event.customer_id == "cus_bown"


def probe_aggregate_usage(w: World) -> None:
    for filters in (
        {},
        {"metric_key": ["api_call", "storage_gb"]},
        {"product_id": "prod_a", "subscription_id": "sub_a"},
    ):
        for request in _aggregate_requests(**filters):
            response = w.same_as_empty("AggregateUsage", request)
            assert all(s.total == 0 and not any(p.value for p in s.points) for s in response.series), response
    for customer in ("cus_alpha", INGESTED_CUSTOMER):
        mine = _aggregate_requests(customer_id=customer)
        never = _aggregate_requests(customer_id=_never(customer))
        for m, n in zip(mine, never, strict=True):
            assert _bytes(w.b.usage.AggregateUsage(m)) == _bytes(w.b.usage.AggregateUsage(n))
    # Once B has events of its own, its aggregates count exactly those.
    w.b.ingest_ok(
        [
            event("cus_alpha", "api_call", T0 + dt.timedelta(minutes=i), properties={"region": "eu"})
            for i in range(3)
        ]
    )
    for request in _aggregate_requests():
        if request.metric == "count":
            response = w.b.usage.AggregateUsage(request)
            assert [(s.key, s.total) for s in response.series] == [
                ({"none": "", "metric_key": "api_call", "dim:region": "eu"}[request.group_by], 3)
            ], response


def probe_ingest_usage_events(w: World) -> None:
    keyed = [e for e in _a_events() if e.HasField("idempotency_key")]
    same, other = keyed[::2], keyed[1::2]
    # A's keys with A's content (in A: DUPLICATE) and with other content (in A: CONFLICT) are new in B,
    # as keys nobody ever used are.
    batches = [
        same,
        [_copy(e, quantity="99") for e in other],
        [_copy(e, idempotency_key=_never("key_x")) for e in same],
    ]
    b_ids: list[str] = []
    for batch in batches:
        results = w.b.ingest(*batch)
        assert [r.status for r in results] == ["ACCEPTED"] * len(batch), results
        b_ids += [r.event_id for r in results]
    assert not set(b_ids) & set(w.event_ids)
    # The keys are B's now: a retry is a DUPLICATE of B's event, other content a CONFLICT with it.
    first = b_ids[: len(same)]
    assert [(r.status, r.event_id) for r in w.b.ingest(*same)] == [("DUPLICATE", i) for i in first]
    conflicting = [_copy(e, quantity="7") for e in same]
    assert [(r.status, r.event_id) for r in w.b.ingest(*conflicting)] == [("CONFLICT", i) for i in first]
    listed = w.b.all_events()
    assert sorted(e.id for e in listed) == sorted(b_ids)
    assert {e.organization_id for e in listed} == {ORG_B}
    # A's customer ids named by B's events became B's own customers (unnamed), not A's.
    customers = w.b.catalog.ListCustomers(cpb.ListCustomersRequest(limit=100)).data
    assert {c.id: c.name for c in customers} == {c: "" for c in ALL_CUSTOMERS}


def _twice_is_already_exists(
    call: Callable[..., Any], build: Callable[[str], Message], a_id: str, never: str
) -> None:
    """Creating again: ALREADY_EXISTS about B's own resource, for A's id as for a new one."""
    again = _error(call, build(a_id))
    again_never = _error(call, build(never))
    assert again.code == grpc.StatusCode.ALREADY_EXISTS, again
    assert _masked(again, {"id": a_id}) == _masked(again_never, {"id": never})


def probe_create_customer(w: World) -> None:
    call = w.b.catalog.CreateCustomer

    def build(cid: str) -> Message:
        return cpb.CreateCustomerRequest(customer=catalog_pb2.Customer(id=cid, name="Mallory"))

    for customer in ALL_CUSTOMERS:
        never = _never(customer)
        for cid in (customer, never):
            got = call(build(cid)).customer
            assert (got.id, got.name) == (cid, "Mallory")
        _twice_is_already_exists(call, build, customer, never)
        assert w.b.catalog.GetCustomer(cpb.GetCustomerRequest(id=customer)).customer.name == "Mallory"


def probe_get_customer(w: World) -> None:
    for customer in ALL_CUSTOMERS:
        got = w.same_as_never(
            w.b.catalog.GetCustomer,
            lambda customer: cpb.GetCustomerRequest(id=customer),
            NOT_FOUND,
            customer=customer,
        )
        assert got.message == "Customer not found"


def probe_list_customers(w: World) -> None:
    for limit in (0, 1, 100):
        page = w.same_as_empty("ListCustomers", cpb.ListCustomersRequest(limit=limit), "catalog")
        assert list(page.data) == []
    _cursor_replays(w, "ListCustomers", w.b_own_cursors()["ListAggregators"])
    listed = w.b.catalog.ListCustomers(cpb.ListCustomersRequest(limit=100)).data
    assert [c.id for c in listed] == ["cus_bown1", "cus_bown2"]


def probe_create_aggregator(w: World) -> None:
    call = w.b.catalog.CreateAggregator

    def build(aid: str) -> Message:
        return cpb.CreateAggregatorRequest(
            aggregator=catalog_pb2.Aggregator(id=aid, name="Mallory", event_type="stolen", operation="count")
        )

    for aggregator in AGGREGATOR_FILTERS:
        never = _never(aggregator)
        for aid in (aggregator, never):
            got = call(build(aid)).aggregator
            assert (got.id, got.name, got.event_type, got.HasField("filter")) == (
                aid,
                "Mallory",
                "stolen",
                False,
            )
        _twice_is_already_exists(call, build, aggregator, never)
        # B's namesake has no filters: A's are not attached to it.
        filters = w.b.catalog.ListAggregatorFilters(
            cpb.ListAggregatorFiltersRequest(aggregator_id=aggregator)
        )
        assert list(filters.data) == []


def probe_get_aggregator(w: World) -> None:
    for aggregator in AGGREGATOR_FILTERS:
        got = w.same_as_never(
            w.b.catalog.GetAggregator,
            lambda aggregator: cpb.GetAggregatorRequest(id=aggregator),
            NOT_FOUND,
            aggregator=aggregator,
        )
        assert got.message == "Aggregator not found"


def probe_list_aggregators(w: World) -> None:
    for limit in (0, 1, 100):
        page = w.same_as_empty("ListAggregators", cpb.ListAggregatorsRequest(limit=limit), "catalog")
        assert list(page.data) == []
    _cursor_replays(w, "ListAggregators", w.b_own_cursors()["ListCustomers"])
    listed = w.b.catalog.ListAggregators(cpb.ListAggregatorsRequest(limit=100)).data
    assert [a.id for a in listed] == ["agg_bown1", "agg_bown2"]


def _update(aggregator: str, paths: tuple[str, ...]) -> Message:
    return cpb.UpdateAggregatorRequest(
        aggregator=catalog_pb2.Aggregator(
            id=aggregator,
            name="Mallory",
            event_type="api_call",
            operation="count",
            display_name_property="secret",
            unit_name="x",
            filter=filt(),
        ),
        update_mask=field_mask_pb2.FieldMask(paths=list(paths)),
    )


def probe_update_aggregator(w: World) -> None:
    for paths in ((), ("name",), ("filter",), ("display_name_property", "unit_name")):
        for aggregator in AGGREGATOR_FILTERS:
            build = functools.partial(_update, paths=paths)
            got = w.same_as_never(w.b.catalog.UpdateAggregator, build, NOT_FOUND, aggregator=aggregator)
            assert got.message == "Aggregator not found"
    # Updating B's namesake changes B's aggregator only.
    for aggregator in _a_aggregators():
        w.b_aggregator(aggregator.id, like=aggregator)
        got = w.b.catalog.UpdateAggregator(_update(aggregator.id, ())).aggregator
        assert (got.id, got.name) == (aggregator.id, "Mallory")


def probe_delete_aggregator(w: World) -> None:
    for aggregator in AGGREGATOR_FILTERS:
        for _ in range(2):  # the second attempt answers the same: nothing was deleted by the first
            got = w.same_as_never(
                w.b.catalog.DeleteAggregator,
                lambda aggregator: cpb.DeleteAggregatorRequest(id=aggregator),
                NOT_FOUND,
                aggregator=aggregator,
            )
            assert got.message == "Aggregator not found"
    # Deleting B's namesake (and its filters, ids as A's) leaves A's aggregator and filters alone.
    for aggregator in _a_aggregators():
        w.b_aggregator(aggregator.id, like=aggregator)
    for flt in _a_filters():
        w.b.catalog.CreateAggregatorFilter(cpb.CreateAggregatorFilterRequest(aggregator_filter=flt))
    for aggregator in AGGREGATOR_FILTERS:
        w.b.catalog.DeleteAggregator(cpb.DeleteAggregatorRequest(id=aggregator))


def _new_filter(aggregator: str, flt: str = "") -> Message:
    return cpb.CreateAggregatorFilterRequest(
        aggregator_filter=catalog_pb2.AggregatorFilter(
            id=flt, aggregator_id=aggregator, name="Mallory", filter=filt(condition("region", "equals", "eu"))
        )
    )


def probe_create_aggregator_filter(w: World) -> None:
    call = w.b.catalog.CreateAggregatorFilter
    for aggregator in AGGREGATOR_FILTERS:
        got = w.same_as_never(call, _new_filter, NOT_FOUND, aggregator=aggregator)
        assert got.message == "Aggregator not found"
        for flt in ALL_FILTERS:
            w.same_as_never(call, _new_filter, NOT_FOUND, aggregator=aggregator, flt=flt)
    # Under B's namesake of A's aggregator, A's filter ids are free, as new ids are.
    w.b_aggregator("agg_calls", like=_a_aggregators()[0])
    created = []
    for flt in ALL_FILTERS:
        never = _never(flt)
        for fid in (flt, never):
            got = call(_new_filter("agg_calls", fid)).aggregator_filter
            assert (got.id, got.aggregator_id, got.name) == (fid, "agg_calls", "Mallory")
            created.append(fid)
        _twice_is_already_exists(call, functools.partial(_new_filter, "agg_calls"), flt, never)
    listed = w.b.catalog.ListAggregatorFilters(cpb.ListAggregatorFiltersRequest(aggregator_id="agg_calls"))
    assert sorted(f.id for f in listed.data) == sorted(created)
    assert {f.name for f in listed.data} == {"Mallory"}


def probe_list_aggregator_filters(w: World) -> None:
    call = w.b.catalog.ListAggregatorFilters
    for aggregator in AGGREGATOR_FILTERS:
        got = w.same_as_never(
            call,
            lambda aggregator: cpb.ListAggregatorFiltersRequest(aggregator_id=aggregator),
            NOT_FOUND,
            aggregator=aggregator,
        )
        assert got.message == "Aggregator not found"
    # B's namesakes of A's aggregators list B's filters: none, as a new aggregator does.
    for aggregator in _a_aggregators():
        never = _never(aggregator.id)
        w.b_aggregator(aggregator.id, like=aggregator)
        w.b_aggregator(never, like=aggregator)
        mine = call(cpb.ListAggregatorFiltersRequest(aggregator_id=aggregator.id))
        assert _bytes(mine) == _bytes(call(cpb.ListAggregatorFiltersRequest(aggregator_id=never)))
        assert list(mine.data) == []


def _delete_filter(aggregator: str, flt: str) -> Message:
    return cpb.DeleteAggregatorFilterRequest(aggregator_id=aggregator, id=flt)


def probe_delete_aggregator_filter(w: World) -> None:
    call = w.b.catalog.DeleteAggregatorFilter
    for aggregator in AGGREGATOR_FILTERS:
        for flt in ALL_FILTERS:
            got = w.same_as_never(call, _delete_filter, NOT_FOUND, aggregator=aggregator, flt=flt)
            assert got.message == "Aggregator not found"
    # Under B's own aggregator, or B's namesakes of A's: A's filters are not found.
    w.b_aggregator("agg_bown")
    for aggregator in _a_aggregators():
        w.b_aggregator(aggregator.id, like=aggregator)
    for parent in ("agg_bown", *AGGREGATOR_FILTERS):
        for flt in ALL_FILTERS:
            build = functools.partial(_delete_filter, parent)
            got = w.same_as_never(call, build, NOT_FOUND, flt=flt)
            assert got.message == "Aggregator filter not found"


def _void(**ids: str) -> Message:
    return xpb.VoidUsageEventsRequest(event_ids=list(ids.values()), reason="B's correction")


def probe_void_usage_events(w: World) -> None:
    call = w.b.corrections.VoidUsageEvents
    # A's ids, current and voided, one at a time and all at once: NOT_FOUND, as ids never used.
    for event_id in w.event_ids:
        got = call(_void(event=event_id)).results
        reference = call(_void(event=_never(event_id))).results
        assert [(r.event_id, r.status, r.HasField("void")) for r in got] == [(event_id, "NOT_FOUND", False)]
        assert [(r.status, r.HasField("void")) for r in reference] == [("NOT_FOUND", False)]
    every = call(_void(**{f"e{i}": e for i, e in enumerate(w.event_ids)}))
    assert {r.status for r in every.results} == {"NOT_FOUND"}
    # B's own event, voided with one of A's in the same call: B's alone is voided.
    (mine,) = w.b.ingest_ok([event("cus_alpha", "api_call", T0)])
    both = call(_void(mine=mine, theirs=w.event_ids[0]))
    assert [r.status for r in both.results] == ["VOIDED", "NOT_FOUND"]


def _amend(event: str, expected: str | None = None) -> Message:
    request = xpb.AmendUsageEventRequest(
        event_id=event,
        event=events_pb2.UsageEventInput(quantity="1000"),
        update_mask=field_mask_pb2.FieldMask(paths=["quantity"]),
        reason="B's correction",
    )
    if expected is not None:
        request.expected_version_id = expected
    return request


def probe_amend_usage_event(w: World) -> None:
    call = w.b.corrections.AmendUsageEvent
    for event_id in w.event_ids:
        got = w.same_as_never(call, _amend, NOT_FOUND, event=event_id)
        assert got.message == "Usage event not found"
    # B's own event, guarded by A's ids as the expected version: refused without naming A's ids.
    (mine,) = w.b.ingest_ok([event("cus_alpha", "api_call", T0)])
    for event_id in w.event_ids[:3]:
        got = _error(call, _amend(mine, expected=event_id))
        assert got.code == grpc.StatusCode.FAILED_PRECONDITION and got.metadata == {
            "current_version_id": mine
        }
        assert event_id not in got.message


def _history(event: str) -> Message:
    return xpb.GetUsageEventHistoryRequest(event_id=event)


def probe_get_usage_event_history(w: World) -> None:
    for event_id in w.event_ids:
        got = w.same_as_never(w.b.corrections.GetUsageEventHistory, _history, NOT_FOUND, event=event_id)
        assert got.message == "Usage event not found"


def _customer_usage(customer: str, aggregator: str | None = None, flt: str | None = None) -> Message:
    request = pb.GetCustomerUsageRequest(id=customer, start_date=ts(SINCE), end_date=ts(UNTIL))
    if aggregator is not None:
        request.aggregator_id = aggregator
    if flt is not None:
        request.aggregator_filter_id = flt
    return request


def _per_aggregator(method: str, aggregator: str, flt: str | None = None, **fields: Any) -> Message:
    """A GetAggregatorTimeSeries or ListAggregatorUsageByCustomer request."""
    request = getattr(pb, f"{method}Request")(
        aggregator_id=aggregator, start_date=ts(SINCE), end_date=ts(UNTIL), **fields
    )
    if flt is not None:
        request.aggregator_filter_id = flt
    return request


def _unknown_aggregators_and_filters(w: World, method: str, **fields: Any) -> None:
    """A's aggregators and filters (also under B's own aggregator) are NOT_FOUND as never-used ids."""
    call = getattr(w.b.usage, method)
    build = functools.partial(_per_aggregator, method, **fields)
    for aggregator, filters in AGGREGATOR_FILTERS.items():
        got = w.same_as_never(call, build, NOT_FOUND, aggregator=aggregator)
        assert got.message == "Aggregator not found"
        for flt in filters:
            w.same_as_never(call, build, NOT_FOUND, aggregator=aggregator, flt=flt)
    w.b_aggregator("agg_bown")
    for flt in ALL_FILTERS:
        got = w.same_as_never(call, functools.partial(build, "agg_bown"), NOT_FOUND, flt=flt)
        assert got.message == "Aggregator filter not found"


def _namesakes_measure_nothing(w: World, method: str, *requests: dict[str, Any]) -> list[Message]:
    """B's namesakes of A's aggregators answer each request (its fields) exactly as namesakes under
    never-used ids do."""
    call = getattr(w.b.usage, method)
    answers = []
    for aggregator in _a_aggregators():
        never = _never(aggregator.id)
        w.b_aggregator(aggregator.id, like=aggregator)
        w.b_aggregator(never, like=aggregator)
        for fields in requests:
            mine = call(_per_aggregator(method, aggregator.id, **fields))
            reference = call(_per_aggregator(method, never, **fields))
            if hasattr(reference, "aggregator_id"):
                reference.aggregator_id = aggregator.id
            assert _bytes(mine) == _bytes(reference), (mine, reference)
            answers.append(mine)
    return answers


def probe_get_customer_usage(w: World) -> None:
    call = w.b.usage.GetCustomerUsage
    for customer in ALL_CUSTOMERS:
        got = w.same_as_never(call, _customer_usage, NOT_FOUND, customer=customer)
        assert got.message == "Customer not found"
        for aggregator, filters in AGGREGATOR_FILTERS.items():
            w.same_as_never(call, _customer_usage, NOT_FOUND, customer=customer, aggregator=aggregator)
            for flt in filters:
                w.same_as_never(
                    call, _customer_usage, NOT_FOUND, customer=customer, aggregator=aggregator, flt=flt
                )
    # With B's own customer: A's aggregators and filters are unknown, A's cursors refused.
    w.b.catalog.CreateCustomer(cpb.CreateCustomerRequest(customer=catalog_pb2.Customer(id="cus_bown")))
    for aggregator in AGGREGATOR_FILTERS:
        got = w.same_as_never(
            call, functools.partial(_customer_usage, "cus_bown"), NOT_FOUND, aggregator=aggregator
        )
        assert got.message == "Aggregator not found"
    reference_cursor = w.b_own_cursors()["ListCustomers"]
    for _, cursor in w.cursors["ListAggregators"]:
        got = _error(call, _copy(_customer_usage("cus_bown"), cursor=cursor))
        reference = _error(call, _copy(_customer_usage("cus_bown"), cursor=reference_cursor))
        assert got.fields == ["cursor"] and _masked(got, {}) == _masked(reference, {}), got
    # B's namesakes of A's customers and aggregators measure nothing.
    for customer in ALL_CUSTOMERS:
        w.b.catalog.CreateCustomer(cpb.CreateCustomerRequest(customer=catalog_pb2.Customer(id=customer)))
    for aggregator in _a_aggregators():
        w.b_aggregator(aggregator.id, like=aggregator)
    for customer in ALL_CUSTOMERS:
        response = call(_copy(_customer_usage(customer), limit=100))
        assert {a.aggregator_id for a in response.data} >= set(AGGREGATOR_FILTERS)
        assert {(a.exact_total, a.count, a.unsummed_count) for a in response.data} == {("0", 0, 0)}, response


def probe_get_aggregator_time_series(w: World) -> None:
    method = "GetAggregatorTimeSeries"
    _unknown_aggregators_and_filters(w, method, bucket="hour")
    for customer in ALL_CUSTOMERS:
        build = functools.partial(_per_aggregator, method, "agg_bown", bucket="day")
        got = w.same_as_never(w.b.usage.GetAggregatorTimeSeries, build, NOT_FOUND, customer_id=customer)
        assert got.message == "Customer not found"
    for answer in _namesakes_measure_nothing(w, method, {"bucket": "hour"}, {"bucket": "month"}):
        assert answer.exact_total == "0" and {p.exact_value for p in answer.points} == {"0"}, answer


def probe_list_aggregator_usage_by_customer(w: World) -> None:
    method = "ListAggregatorUsageByCustomer"
    _unknown_aggregators_and_filters(w, method)
    for answer in _namesakes_measure_nothing(w, method, {"take": 100}):
        assert (answer.meta.total, list(answer.data)) == (0, []), answer


PROBES: dict[str, Callable[[World], None]] = {
    "UsageService/ListCustomerUsageEvents": probe_list_customer_usage_events,
    "UsageService/ListUsageEvents": probe_list_usage_events,
    "UsageService/AggregateUsage": probe_aggregate_usage,
    "UsageService/ExportUsageEvents": probe_export_usage_events,
    "UsageService/ExplainUsageEvent": probe_explain_usage_event,
    "UsageService/IngestUsageEvents": probe_ingest_usage_events,
    "UsageService/GetCustomerUsage": probe_get_customer_usage,
    "UsageService/GetAggregatorTimeSeries": probe_get_aggregator_time_series,
    "UsageService/ListAggregatorUsageByCustomer": probe_list_aggregator_usage_by_customer,
    "CatalogService/CreateCustomer": probe_create_customer,
    "CatalogService/GetCustomer": probe_get_customer,
    "CatalogService/ListCustomers": probe_list_customers,
    "CatalogService/CreateAggregator": probe_create_aggregator,
    "CatalogService/GetAggregator": probe_get_aggregator,
    "CatalogService/ListAggregators": probe_list_aggregators,
    "CatalogService/UpdateAggregator": probe_update_aggregator,
    "CatalogService/DeleteAggregator": probe_delete_aggregator,
    "CatalogService/CreateAggregatorFilter": probe_create_aggregator_filter,
    "CatalogService/ListAggregatorFilters": probe_list_aggregator_filters,
    "CatalogService/DeleteAggregatorFilter": probe_delete_aggregator_filter,
    "CorrectionService/VoidUsageEvents": probe_void_usage_events,
    "CorrectionService/GetUsageEventHistory": probe_get_usage_event_history,
    "CorrectionService/AmendUsageEvent": probe_amend_usage_event,
}


def test_every_probe_names_an_rpc() -> None:
    assert set(PROBES) <= set(RPCS), set(PROBES) - set(RPCS)


@pytest.mark.parametrize("rpc", RPCS)
def test_another_organization_cannot_reach_the_data(world: World, rpc: str) -> None:
    probe = PROBES.get(rpc)
    assert probe is not None, f"{rpc} has no tenant isolation probe: add one to PROBES"
    probe(world)
    world.assert_a_unchanged()


# ---- forged credentials on every RPC ------------------------------------------------------------
# tests/rpc/test_auth_and_errors.py already sends every RPC no token, other schemes, and expired,
# wrongly signed, alg=none, garbage, exp-less, org-less, number-org, HS512 and signature-stripped
# tokens. These are the variants it does not send.
def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _hs256(claims: dict[str, Any], key: bytes) -> str:
    """An HS256 token signed by hand (PyJWT refuses a PEM key as an HMAC secret)."""
    signing_input = f"{_b64({'alg': 'HS256', 'typ': 'JWT'})}.{_b64(claims)}"
    signature = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{base64.urlsafe_b64encode(signature).rstrip(b'=').decode()}"


def _tampered(h: Harness) -> dict[str, str]:
    """Tokens made from a genuine token of A by changing its header or payload, keeping the signature."""
    header, payload, signature = h.token(ORG_A).split(".")
    claims = json.loads(_unb64(payload))
    expired_header, expired_payload, expired_signature = h.token(ORG_A, dt.timedelta(seconds=-120)).split(".")
    extended = {**json.loads(_unb64(expired_payload)), "exp": claims["exp"]}
    return {
        "payload_org_changed": f"{header}.{_b64({**claims, 'org_id': ORG_B})}.{signature}",
        "payload_exp_extended": f"{expired_header}.{_b64(extended)}.{expired_signature}",
        "header_alg_none_signature_kept": f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{payload}.{signature}",
        "header_alg_capitalized_None_unsigned": f"{_b64({'alg': 'None', 'typ': 'JWT'})}.{payload}.",
        "signature_of_another_token": f"{header}.{payload}.{h.token(ORG_B).split('.')[2]}",
    }


def _forged_tokens(h: Harness) -> dict[str, str]:
    claims = json.loads(_unb64(h.token(ORG_A).split(".")[1]))
    without_org = {k: v for k, v in claims.items() if k != "org_id"}
    secret = JWT_SECRET.encode()
    tokens = _tampered(h)
    tokens |= {
        f"org_claim_{name}": _hs256({**claims, "org_id": value}, secret)
        for name, value in (
            ("list", [ORG_A]),
            ("object", {"id": ORG_A}),
            ("null", None),
            ("true", True),
            ("float", 1.5),
            ("empty", ""),
            ("too_long", "o" * 129),
        )
    }
    tokens["org_only_in_other_claims"] = _hs256(
        {**without_org, "org": ORG_A, "organization_id": ORG_A, "tenant": ORG_A, "x-org": ORG_A}, secret
    )
    tokens["not_yet_valid"] = _hs256({**claims, "nbf": claims["exp"]}, secret)
    return tokens


_request = empty_request


def _refusals(h: Harness, variants: dict[str, tuple[tuple[str, str], ...]]) -> list[str]:
    """Every variant on every RPC: the ones not answered UNAUTHENTICATED (with its ErrorInfo)."""
    failures = []
    for service, method in ALL_METHODS:
        request = _request(service, method)
        for name, metadata in variants.items():
            client = h.raw_client(metadata)
            call = getattr(client.stub(service.name), method)
            try:
                response = call(request)
                if service.methods_by_name[method].server_streaming:
                    list(response)  # a stream's status comes with its first read
            except grpc.RpcError as err:
                got = details(err)
                if (got.code, got.domain) == (grpc.StatusCode.UNAUTHENTICATED, "usage.v1") and got.reason in (
                    "TOKEN_MISSING",
                    "TOKEN_INVALID",
                    "TOKEN_EXPIRED",
                    "TOKEN_ORGANIZATION_INVALID",
                ):
                    continue
                failures.append(f"{method} {name}: {got.code} {got.message}")
            else:
                failures.append(f"{method} {name}: succeeded")
    return failures


def _authenticated(h: Harness, metadata: tuple[tuple[str, str], ...]) -> list[str]:
    """RPCs that answer UNAUTHENTICATED to `metadata` (empty requests: INVALID_ARGUMENT or OK expected)."""
    out = []
    for service, method in ALL_METHODS:
        client = h.raw_client(metadata)
        call = getattr(client.stub(service.name), method)
        try:
            response = call(_request(service, method))
            if service.methods_by_name[method].server_streaming:
                list(response)  # a stream's status comes with its first read
        except grpc.RpcError as err:
            if err.code() == grpc.StatusCode.UNAUTHENTICATED:
                out.append(method)
    return out


def test_forged_credentials_are_unauthenticated_on_every_rpc(db_url: str) -> None:
    h = Harness.start(db_url)
    try:
        genuine = h.token(ORG_A)
        org_headers = tuple((name, ORG_A) for name in ORG_HEADERS)
        variants = {
            name: (("authorization", f"Bearer {token}"),) for name, token in _forged_tokens(h).items()
        }
        variants |= {
            "org_headers_without_a_token": org_headers,
            "org_headers_with_a_bad_token": (("authorization", "Bearer not-a-jwt"), *org_headers),
            "org_headers_with_a_tampered_token": (
                ("authorization", f"Bearer {_tampered(h)['payload_org_changed']}"),
                *org_headers,
            ),
            "token_in_other_headers": tuple(
                (name, value)
                for name in ("x-authorization", "x-access-token", "token", "authentication")
                for value in (genuine, f"Bearer {genuine}")
            ),
        }
        # The genuine token is accepted on every RPC (so the refusals are the variants' doing).
        assert _authenticated(h, (("authorization", f"Bearer {genuine}"),)) == []
        failures = _refusals(h, variants)
        assert not failures, "\n".join(failures)
        # Refused calls stored nothing, for anyone.
        assert all(count == 0 for _, count in fingerprint(h.storage.engine))
    finally:
        h.close()


def test_asymmetric_keys_refuse_hmac_and_foreign_keys(db_url: str, tmp_path: pathlib.Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = tmp_path / "jwt.key"
    public = tmp_path / "jwt.pub"
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    public.write_bytes(public_pem)
    # The harness also sets its HS256 secret: with a public key configured it must not be accepted.
    h = Harness.start(db_url, jwt_public_key_file=str(public), jwt_private_key_file=str(private))
    try:
        genuine = h.token(ORG_A)
        assert jwt.get_unverified_header(genuine)["alg"] == "RS256"
        assert _authenticated(h, (("authorization", f"Bearer {genuine}"),)) == []
        claims = json.loads(_unb64(genuine.split(".")[1]))
        other_rsa = rsa.generate_private_key(public_exponent=65537, key_size=1024)
        other_ec = ec.generate_private_key(ec.SECP256R1())
        tokens = _tampered(h) | {
            "hs256_keyed_with_the_public_key": _hs256(claims, public_pem),
            "hs256_with_the_configured_secret": _hs256(claims, JWT_SECRET.encode()),
            "rs256_of_another_key": jwt.encode(claims, other_rsa, algorithm="RS256"),
            "es256_of_another_key": jwt.encode(claims, other_ec, algorithm="ES256"),
            "ps256_of_the_right_key": jwt.encode(claims, key, algorithm="PS256"),
        }
        variants = {name: (("authorization", f"Bearer {token}"),) for name, token in tokens.items()}
        failures = _refusals(h, variants)
        assert not failures, "\n".join(failures)
    finally:
        h.close()


def test_org_headers_are_ignored(db_url: str) -> None:
    """A genuine token with headers naming another organization acts for the token's organization."""
    h = Harness.start(db_url)
    try:
        a_token = h.token(ORG_A)
        a_naming_b = h.raw_client(
            (("authorization", f"Bearer {a_token}"), *((name, ORG_B) for name in ORG_HEADERS)), token=a_token
        )
        (result,) = a_naming_b.ingest(event("cus_alpha", timestamp=T0, idempotency_key="k"))
        assert result.status == "ACCEPTED"
        a_naming_b.catalog.CreateCustomer(
            cpb.CreateCustomerRequest(customer=catalog_pb2.Customer(id="cus_x"))
        )
        a, b = h.client(ORG_A), h.client(ORG_B)
        assert [(e.id, e.organization_id) for e in a.all_events()] == [(result.event_id, ORG_A)]
        assert [e.id for e in a_naming_b.all_events()] == [result.event_id]
        assert b.all_events() == []
        assert list(b.catalog.ListCustomers(cpb.ListCustomersRequest()).data) == []
        assert [c.id for c in a.catalog.ListCustomers(cpb.ListCustomersRequest()).data] == [
            "cus_alpha",
            "cus_x",
        ]
        # The same key from B (headers naming A) is B's own: ACCEPTED as a new event of B.
        b_token = h.token(ORG_B)
        b_naming_a = h.raw_client(
            (("authorization", f"Bearer {b_token}"), *((name, ORG_A) for name in ORG_HEADERS)), token=b_token
        )
        (again,) = b_naming_a.ingest(event("cus_alpha", timestamp=T0, idempotency_key="k"))
        assert again.status == "ACCEPTED" and again.event_id != result.event_id
        assert [(e.id, e.organization_id) for e in b.all_events()] == [(again.event_id, ORG_B)]
        assert [e.id for e in a.all_events()] == [result.event_id]
    finally:
        h.close()


# ---- an organization claim with a trailing newline ------------------------------------------------
NEWLINE_ORG = f"{ORG_A}\n"


def _newline_org_token() -> str:
    exp = int((dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).timestamp())
    return _hs256({"org_id": NEWLINE_ORG, "exp": exp}, JWT_SECRET.encode())


def test_an_org_claim_with_a_trailing_newline_is_not_the_org(db_url: str) -> None:
    """`org_a\\n` is either refused or an organization of its own: never org_a."""
    h = Harness.start(db_url)
    try:
        a = h.client(ORG_A)
        (a_event,) = a.ingest_ok([event("cus_alpha", timestamp=T0, idempotency_key="k")])
        other = h.raw_client((("authorization", f"Bearer {_newline_org_token()}"),))
        try:
            listed = other.all_events()
        except grpc.RpcError as err:
            assert err.code() == grpc.StatusCode.UNAUTHENTICATED
            return
        assert listed == []
        got = _error(other.catalog.GetCustomer, cpb.GetCustomerRequest(id="cus_alpha"))
        assert (got.code, got.message) == (NOT_FOUND, "Customer not found")
        (result,) = other.ingest(event("cus_alpha", timestamp=T0, idempotency_key="k"))
        assert result.status == "ACCEPTED" and result.event_id != a_event
        assert [e.organization_id for e in other.all_events()] == [NEWLINE_ORG]
        assert [e.id for e in a.all_events()] == [a_event]
    finally:
        h.close()


def test_an_org_claim_with_a_trailing_newline_is_unauthenticated(db_url: str) -> None:
    h = Harness.start(db_url)
    try:
        failures = _refusals(
            h, {"org_claim_with_newline": (("authorization", f"Bearer {_newline_org_token()}"),)}
        )
        assert not failures, "\n".join(failures)
    finally:
        h.close()


# ---- what an unexpected failure tells the caller ----------------------------------------------------
def test_an_unexpected_failure_answers_internal_error_without_its_cause(db_url: str) -> None:
    """A real fault (a table dropped under the running server): INTERNAL "internal error", no SQL,
    driver text or table name in the status or its details; the other RPCs keep working."""
    h = Harness.start(db_url)
    try:
        a = h.client(ORG_A)
        (aggregator,) = _a_aggregators()[:1]
        a.catalog.CreateAggregator(cpb.CreateAggregatorRequest(aggregator=aggregator))
        with h.storage.engine.begin() as conn:
            conn.execute(sa.text("DROP TABLE aggregator_filters"))
        request = cpb.ListAggregatorFiltersRequest(aggregator_id=aggregator.id)
        try:
            a.catalog.ListAggregatorFilters(request)
        except grpc.RpcError as err:
            got = details(err)
            status = err.trailing_metadata()
        else:
            raise AssertionError("ListAggregatorFilters succeeded without its table")
        assert (got.code, got.message, got.reason, got.domain) == (
            grpc.StatusCode.INTERNAL,
            "internal error",
            "INTERNAL",
            "usage.v1",
        )
        assert (got.metadata, got.violations) == ({}, [])
        raw = b"".join(v if isinstance(v, bytes) else v.encode() for _, v in status or ())
        for leak in (b"aggregator_filters", b"SELECT", b"sqlite", b"psycopg", b"Traceback", b"relation"):
            assert leak not in raw, leak
        assert (
            a.catalog.GetAggregator(cpb.GetAggregatorRequest(id=aggregator.id)).aggregator.id == aggregator.id
        )
    finally:
        h.close()
