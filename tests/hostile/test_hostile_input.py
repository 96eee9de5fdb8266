"""Hostile input (issue 6, part 1): hypothesis builds requests of every RPC of every service the server
serves (UsageService, CatalogService, CorrectionService) with hostile values (random and huge strings, SQL
and JSON-path metacharacters, NUL bytes, huge and negative numbers, far past, future and malformed times,
invalid time zones, nested and non-scalar property values, 5001 events) and sends them over a real channel
to a real server.

Whatever is sent: the answer is never INTERNAL or UNKNOWN; INVALID_ARGUMENT carries a BadRequest whose
every violation names a real field path of the request; a call that fails stores nothing (every table's
row count is unchanged); ingestion stores exactly the ACCEPTED events and none of the REJECTED ones;
a void moves exactly the VOIDED events out of the events, and keeps any valid reason as it was sent.

SQLite runs the larger share of examples, PostgreSQL a smaller one. `HYPOTHESIS_PROFILE=nightly
pytest -m nightly` runs ten times as many.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import time
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
import sqlalchemy as sa
from google.protobuf import field_mask_pb2, struct_pb2, timestamp_pb2
from grpc_harness import Client, Harness, condition, details, event, filt
from hostile_support import examples, fingerprint, is_field_path
from hypothesis import HealthCheck, example, find, given, settings
from hypothesis import strategies as st
from rpc.test_auth_and_errors import ALL_METHODS
from usage.v1 import catalog_pb2, events_pb2
from usage.v1 import catalog_service_pb2 as cpb
from usage.v1 import corrections_service_pb2 as xpb
from usage.v1 import usage_service_pb2 as pb

from server.storage import schema

pytestmark = pytest.mark.nightly

ALLOWED = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.FAILED_PRECONDITION,
}
BASE_EXAMPLES = {"sqlite": 120, "postgres": 30}
# INVALID_ARGUMENT about the request as a whole, read before any field: no field to name.
WHOLE_REQUEST_REASONS = {"REQUEST_TOO_LARGE", "MALFORMED_REQUEST"}
INGEST_STATUSES = {"ACCEPTED", "DUPLICATE", "CONFLICT", "REJECTED"}
NOW = dt.datetime.now(dt.UTC)

# ---- strategies -----------------------------------------------------------------------------
METACHARACTERS = [
    "",
    " ",
    "'",
    '"',
    "\\",
    "%",
    "_",
    "*",
    "\x00",
    "a\x00b",
    "' OR '1'='1",
    "'; DROP TABLE usage_events; --",
    '"; DROP TABLE customers; --',
    "1; SELECT pg_sleep(10)",
    "$",
    "$.a",
    "$[*]",
    '$."a"',
    "$.a ? (@ > 1)",
    "->>",
    "#>>{a,b}",
    "@>",
    "?|",
    "{a}",
    "\\u0000",
    "%00",
    "../../etc/passwd",
    "\u202e\u0301\ufeff",
    "🦄" * 10,
    "NaN",
    "-Infinity",
    "1e309",
    "null",
    "true",
]
SEEDED_IDS = ["cus_1", "agg_1", "flt_1", "api_call", "region"]

hostile_text = st.one_of(
    st.sampled_from(METACHARACTERS),
    st.text(max_size=30),
    st.text(alphabet="'\";%_\\$.[]*@:-/(){}?|#>< \x00aZ9", max_size=30),
    st.integers(100, 20_000).map(lambda n: "x" * n),
)
good_id = st.one_of(st.sampled_from(SEEDED_IDS), st.from_regex(r"[A-Za-z0-9_.:@-]{1,16}", fullmatch=True))
ident = st.one_of(good_id, hostile_text)
prop_key = st.one_of(st.sampled_from(["region", "name", "tier", "a.b", "x-y"]), hostile_text)
int32 = st.one_of(
    st.sampled_from([0, 1, -1, 100, 101, 2**31 - 1, -(2**31)]), st.integers(-(2**31), 2**31 - 1)
)
maybe_int32 = st.none() | int32

MIN_S, MAX_S = -62_135_596_800, 253_402_300_799  # 0001-01-01 .. 9999-12-31
now_s = int(NOW.timestamp())
seconds = st.one_of(
    st.integers(now_s - 86_400 * 40, now_s + 600),
    st.integers(MIN_S, MAX_S),
    st.sampled_from([0, -1, MIN_S, MAX_S, MIN_S - 1, MAX_S + 1, 2**63 - 1, -(2**63)]),
    st.integers(-(2**63), 2**63 - 1),
)
nanos = st.one_of(st.integers(0, 999_999_999), st.sampled_from([-1, 1_000_000_000, 2**31 - 1, -(2**31)]))
timestamp = st.builds(timestamp_pb2.Timestamp, seconds=seconds, nanos=nanos)
maybe_timestamp = st.none() | timestamp
# A query's `as_of`: any time above (far future, before 1970, out of the Timestamp range, nanos out of
# range), the edges of the floor and of now, and moments of the last minute, most of which are at or
# after the floor (the harness migrated its database moments before) and before now: answered OK.
AS_OF_EDGES = [0, -1, -86_400 * 365, MIN_S, MAX_S, now_s + 86_400 * 365 * 100, 2**63 - 1, -(2**63)]
recent_as_of = st.builds(
    lambda back_us: timestamp_pb2.Timestamp(seconds=(time.time_ns() // 1000 - back_us) // 1_000_000),
    st.integers(0, 60_000_000),
)
as_of = st.one_of(
    st.none(),
    recent_as_of,
    st.builds(timestamp_pb2.Timestamp, seconds=st.sampled_from(AS_OF_EDGES), nanos=nanos),
    timestamp,
)

numbers = st.one_of(st.floats(), st.integers(-(2**70), 2**70).map(float), st.sampled_from([2.0**53, 1e308]))
scalar = st.one_of(st.none(), st.booleans(), numbers, hostile_text)
json_value = st.recursive(
    scalar,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(prop_key, inner, max_size=4)),
    max_leaves=12,
)
properties = st.one_of(
    st.dictionaries(prop_key, json_value, max_size=8),
    st.integers(65, 80).map(lambda n: {f"k{i}": i for i in range(n)}),  # too many keys
    st.integers(17, 40).map(lambda n: {"big": "x" * (n * 1024)}),  # oversized
    st.integers(101, 150).map(lambda n: {"arr": list(range(n))}),  # too many array items
)
time_zone = st.one_of(
    st.sampled_from(
        [
            "",
            "UTC",
            "Europe/Paris",
            "Asia/Kolkata",
            "America/St_Johns",
            "Mars/Olympus",
            "UTC+5",
            "Etc/GMT+14",
            "localtime",
            "posixrules",
            "Factory",
            "../../../etc/passwd",
            "/etc/localtime",
            "Europe/../Europe/Paris",
            "EUROPE/PARIS",
            "Europe/Paris\x00",
        ]
    ),
    hostile_text,
)
decimal_text = st.one_of(
    st.from_regex(r"-?[0-9]{1,24}(\.[0-9]{1,12})?", fullmatch=True),
    st.sampled_from(["", "1e5", "0x10", "NaN", "1.", ".5", "9" * 25, "-0", "00001.000"]),
    hostile_text,
)
currency = st.one_of(st.sampled_from(["EUR", "USD"]), hostile_text)


def _value(v: Any) -> struct_pb2.Value:
    out = struct_pb2.Value()
    if v is None:
        out.null_value = struct_pb2.NULL_VALUE
    elif isinstance(v, bool):
        out.bool_value = v
    elif isinstance(v, float):
        out.number_value = v
    elif isinstance(v, str):
        out.string_value = v
    elif isinstance(v, list):
        out.list_value.extend(v)
    else:
        out.struct_value.update(v)
    return out


def _struct(d: dict[str, Any]) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    s.update(d)
    return s


@st.composite
def filter_field(draw: st.DrawFn) -> catalog_pb2.FilterField:
    ops = ["equals", "not_equals", "in", "not_in", "gt", "gte", "lt", "lte", "is_null", "is_not_null"]
    f = catalog_pb2.FilterField(
        property=draw(prop_key), operator=draw(st.one_of(st.sampled_from(ops), hostile_text))
    )
    v = draw(st.none() | st.just(None).map(lambda _: ...) | json_value)
    if v is not None:
        f.value.CopyFrom(_value(None if v is ... else v))
    return f


filters = st.builds(
    catalog_pb2.Filter,
    conditional=st.one_of(st.sampled_from(["", "and", "or"]), hostile_text),
    fields=st.one_of(
        st.lists(filter_field(), max_size=4),
        st.integers(51, 60).map(lambda n: [condition("a", "equals", 1)] * n),
    ),
)


@st.composite
def aggregator(draw: st.DrawFn) -> catalog_pb2.Aggregator:
    a = catalog_pb2.Aggregator(
        id=draw(st.one_of(st.just(""), ident)),
        name=draw(st.one_of(st.just("Calls"), hostile_text)),
        event_type=draw(st.one_of(st.just("api_call"), hostile_text)),
        operation=draw(st.one_of(st.sampled_from(["count", "sum"]), hostile_text)),
        property=draw(st.one_of(st.just(""), prop_key)),
        unit_name=draw(st.one_of(st.just(""), hostile_text)),
        display_name_property=draw(st.one_of(st.just(""), prop_key)),
    )
    f = draw(st.none() | filters)
    if f is not None:
        a.filter.CopyFrom(f)
    for name in ("created_at", "updated_at"):
        t = draw(maybe_timestamp)
        if t is not None:
            getattr(a, name).CopyFrom(t)
    return a


@st.composite
def usage_event(draw: st.DrawFn) -> events_pb2.UsageEventInput:
    e = events_pb2.UsageEventInput(
        customer_id=draw(st.one_of(st.just("cus_1"), ident)),
        metric_key=draw(st.one_of(st.just("api_call"), ident)),
        quantity=draw(decimal_text),
    )
    t = draw(
        st.one_of(
            st.just(int(NOW.timestamp()) - 60).map(lambda s: timestamp_pb2.Timestamp(seconds=s)),
            maybe_timestamp,
        )
    )
    if t is not None:
        e.timestamp.CopyFrom(t)
    for name in ("idempotency_key", "product_id", "subscription_id", "price_key"):
        v = draw(st.none() | ident)
        if v is not None:
            setattr(e, name, v)
    if draw(st.booleans()):
        e.external_cost_amount = draw(decimal_text)
    if draw(st.booleans()):
        e.external_cost_currency = draw(currency)
    if draw(st.booleans()):
        e.wallet_currency = draw(currency)
    props = draw(st.none() | properties)
    if props is not None:
        e.properties.CopyFrom(_struct(props))
    return e


def _set(msg: Any, **fields: Any) -> Any:
    """Set the fields whose value is not None (CopyFrom for messages)."""
    for name, v in fields.items():
        if v is None:
            continue
        if isinstance(v, timestamp_pb2.Timestamp):
            getattr(msg, name).CopyFrom(v)
        elif isinstance(v, list):
            getattr(msg, name).extend(v)
        else:
            setattr(msg, name, v)
    return msg


metric_keys = st.lists(st.one_of(st.just("api_call,storage_gb"), hostile_text), max_size=3) | st.integers(
    101, 110
).map(lambda n: ["k"] * n)


def _offset_page(draw: st.DrawFn) -> dict[str, Any]:
    """A period, an aggregator filter and an offset page: the fields of the offset-paged reads."""
    return {
        "start_date": draw(maybe_timestamp),
        "end_date": draw(maybe_timestamp),
        "aggregator_filter_id": draw(st.none() | ident),
        "take": draw(maybe_int32),
        "skip": draw(maybe_int32),
        "as_of": draw(as_of),
    }


@st.composite
def list_customer_usage_events(draw: st.DrawFn) -> pb.ListCustomerUsageEventsRequest:
    return _set(
        pb.ListCustomerUsageEventsRequest(), id=draw(ident), aggregator_id=draw(ident), **_offset_page(draw)
    )


def _event_filters(draw: st.DrawFn, window: bool = True) -> dict[str, Any]:
    """The filters ListUsageEvents, ExportUsageEvents and AggregateUsage share (and the window of the
    first two)."""
    out = {
        "customer_id": draw(st.none() | ident),
        "product_id": draw(st.none() | ident),
        "subscription_id": draw(st.none() | ident),
        "metric_key": draw(metric_keys),
    }
    if window:
        out["occurred_after"] = draw(maybe_timestamp)
        out["occurred_before"] = draw(maybe_timestamp)
    return out


@st.composite
def list_usage_events(draw: st.DrawFn) -> pb.ListUsageEventsRequest:
    return _set(
        pb.ListUsageEventsRequest(),
        limit=draw(maybe_int32),
        cursor=draw(st.none() | hostile_text),
        as_of=draw(as_of),
        **_event_filters(draw),
    )


@st.composite
def export_usage_events(draw: st.DrawFn) -> pb.ExportUsageEventsRequest:
    return _set(
        pb.ExportUsageEventsRequest(),
        chunk_size=draw(maybe_int32),
        resume_token=draw(st.none() | hostile_text),
        order=draw(st.none() | st.sampled_from(["", "newest_first", "oldest_first"]) | hostile_text),
        as_of=draw(as_of),
        **_event_filters(draw),
    )


@st.composite
def explain_usage_event(draw: st.DrawFn) -> pb.ExplainUsageEventRequest:
    return _set(
        pb.ExplainUsageEventRequest(),
        event_id=draw(ident),
        aggregator_id=draw(ident),
        aggregator_filter_id=draw(st.none() | ident),
        customer_id=draw(st.none() | ident),
        start_date=draw(maybe_timestamp),
        end_date=draw(maybe_timestamp),
        as_of=draw(as_of),
    )


@st.composite
def aggregate_usage(draw: st.DrawFn) -> pb.AggregateUsageRequest:
    group_by = st.one_of(
        st.sampled_from(["", "none", "metric_key", "dim:region", "dim:", "dim:a.b"]),
        hostile_text.map(lambda s: "dim:" + s),
        hostile_text,
    )
    return _set(
        pb.AggregateUsageRequest(),
        bucket=draw(st.one_of(st.sampled_from(["hour", "day", "week", "month", ""]), hostile_text)),
        since=draw(maybe_timestamp),
        until=draw(maybe_timestamp),
        metric=draw(st.one_of(st.sampled_from(["", "count", "sum_quantity"]), hostile_text)),
        group_by=draw(group_by),
        **_event_filters(draw, window=False),
        top=draw(maybe_int32),
        time_zone=draw(time_zone),
        as_of=draw(as_of),
    )


@st.composite
def get_customer_usage(draw: st.DrawFn) -> pb.GetCustomerUsageRequest:
    return _set(
        pb.GetCustomerUsageRequest(),
        id=draw(ident),
        start_date=draw(maybe_timestamp),
        end_date=draw(maybe_timestamp),
        aggregator_id=draw(st.none() | ident),
        aggregator_filter_id=draw(st.none() | ident),
        limit=draw(maybe_int32),
        cursor=draw(st.none() | hostile_text),
        as_of=draw(as_of),
    )


@st.composite
def get_aggregator_time_series(draw: st.DrawFn) -> pb.GetAggregatorTimeSeriesRequest:
    return _set(
        pb.GetAggregatorTimeSeriesRequest(),
        aggregator_id=draw(ident),
        start_date=draw(maybe_timestamp),
        end_date=draw(maybe_timestamp),
        bucket=draw(st.one_of(st.sampled_from(["hour", "day", "week", "month", ""]), hostile_text)),
        customer_id=draw(st.none() | ident),
        aggregator_filter_id=draw(st.none() | ident),
        time_zone=draw(time_zone),
        as_of=draw(as_of),
    )


@st.composite
def list_aggregator_usage_by_customer(draw: st.DrawFn) -> pb.ListAggregatorUsageByCustomerRequest:
    return _set(pb.ListAggregatorUsageByCustomerRequest(), aggregator_id=draw(ident), **_offset_page(draw))


ingest_request = st.builds(
    lambda evs: pb.IngestUsageEventsRequest(events=evs), st.lists(usage_event(), max_size=6)
)


@st.composite
def update_aggregator(draw: st.DrawFn) -> cpb.UpdateAggregatorRequest:
    r = cpb.UpdateAggregatorRequest(aggregator=draw(aggregator()))
    paths = draw(
        st.none()
        | st.lists(
            st.one_of(
                st.sampled_from(
                    [
                        "name",
                        "event_type",
                        "operation",
                        "property",
                        "unit_name",
                        "display_name_property",
                        "filter",
                        "id",
                        "created_at",
                    ]
                ),
                hostile_text,
            ),
            max_size=4,
        )
    )
    if paths is not None:
        r.update_mask.CopyFrom(field_mask_pb2.FieldMask(paths=paths))
    return r


@st.composite
def create_aggregator_filter(draw: st.DrawFn) -> cpb.CreateAggregatorFilterRequest:
    af = catalog_pb2.AggregatorFilter(
        id=draw(st.one_of(st.just(""), ident)),
        aggregator_id=draw(ident),
        name=draw(st.one_of(st.just("GETs"), hostile_text)),
    )
    f = draw(st.none() | filters)
    if f is not None:
        af.filter.CopyFrom(f)
    return cpb.CreateAggregatorFilterRequest(aggregator_filter=af)


@st.composite
def create_customer(draw: st.DrawFn) -> cpb.CreateCustomerRequest:
    if draw(st.integers(0, 9)) == 0:
        return cpb.CreateCustomerRequest()  # the required resource is missing
    return cpb.CreateCustomerRequest(
        customer=_set(
            catalog_pb2.Customer(), id=draw(ident), name=draw(hostile_text), created_at=draw(maybe_timestamp)
        )
    )


@st.composite
def create_aggregator(draw: st.DrawFn) -> cpb.CreateAggregatorRequest:
    if draw(st.integers(0, 9)) == 0:
        return cpb.CreateAggregatorRequest()
    return cpb.CreateAggregatorRequest(aggregator=draw(aggregator()))


@st.composite
def amend_usage_event(draw: st.DrawFn) -> xpb.AmendUsageEventRequest:
    paths = st.one_of(
        st.sampled_from(["quantity", "properties", "timestamp", "product_id", "customer_id", ""]),
        hostile_text,
    )
    return _set(
        xpb.AmendUsageEventRequest(
            event_id=draw(ident),
            event=draw(st.none() | usage_event()),
            update_mask=field_mask_pb2.FieldMask(paths=draw(st.lists(paths, max_size=4))),
        ),
        reason=draw(st.none() | hostile_text),
        expected_version_id=draw(st.none() | ident),
    )


def _page(cls: type) -> st.SearchStrategy[Any]:
    return st.builds(
        lambda limit, cursor: _set(cls(), limit=limit, cursor=cursor), maybe_int32, st.none() | hostile_text
    )


@dataclasses.dataclass(frozen=True)
class Rpc:
    service: str  # "usage", "catalog" or "corrections"
    strategy: st.SearchStrategy[Any]
    mutates: bool = False


RPCS: dict[str, Rpc] = {
    "ListCustomerUsageEvents": Rpc("usage", list_customer_usage_events()),
    "ListUsageEvents": Rpc("usage", list_usage_events()),
    "AggregateUsage": Rpc("usage", aggregate_usage()),
    "ExportUsageEvents": Rpc("usage", export_usage_events()),
    "ExplainUsageEvent": Rpc("usage", explain_usage_event()),
    "IngestUsageEvents": Rpc("usage", ingest_request, mutates=True),
    "GetCustomerUsage": Rpc("usage", get_customer_usage()),
    "GetAggregatorTimeSeries": Rpc("usage", get_aggregator_time_series()),
    "ListAggregatorUsageByCustomer": Rpc("usage", list_aggregator_usage_by_customer()),
    "CreateCustomer": Rpc("catalog", create_customer(), mutates=True),
    "GetCustomer": Rpc("catalog", st.builds(cpb.GetCustomerRequest, id=ident)),
    "ListCustomers": Rpc("catalog", _page(cpb.ListCustomersRequest)),
    "CreateAggregator": Rpc("catalog", create_aggregator(), mutates=True),
    "GetAggregator": Rpc("catalog", st.builds(cpb.GetAggregatorRequest, id=ident)),
    "ListAggregators": Rpc("catalog", _page(cpb.ListAggregatorsRequest)),
    "UpdateAggregator": Rpc("catalog", update_aggregator(), mutates=True),
    "DeleteAggregator": Rpc("catalog", st.builds(cpb.DeleteAggregatorRequest, id=ident), mutates=True),
    "CreateAggregatorFilter": Rpc("catalog", create_aggregator_filter(), mutates=True),
    "ListAggregatorFilters": Rpc("catalog", st.builds(cpb.ListAggregatorFiltersRequest, aggregator_id=ident)),
    "DeleteAggregatorFilter": Rpc(
        "catalog", st.builds(cpb.DeleteAggregatorFilterRequest, aggregator_id=ident, id=ident), mutates=True
    ),
    "VoidUsageEvents": Rpc(
        "corrections",
        st.builds(
            lambda ids, reason: _set(xpb.VoidUsageEventsRequest(event_ids=ids), reason=reason),
            st.one_of(
                st.lists(ident, max_size=6),
                st.integers(1001, 1100).map(lambda n: [f"evt_{i}" for i in range(n)]),
            ),
            st.none() | hostile_text,
        ),
        mutates=True,
    ),
    "AmendUsageEvent": Rpc("corrections", amend_usage_event(), mutates=True),
    "GetUsageEventHistory": Rpc("corrections", st.builds(xpb.GetUsageEventHistoryRequest, event_id=ident)),
}


# ---- the server ----------------------------------------------------------------------------
@dataclasses.dataclass
class Target:
    harness: Harness
    client: Client

    @property
    def engine(self) -> sa.Engine:
        return self.harness.storage.engine

    def seed(self) -> None:
        """A customer, an aggregator with a filter and a few events, so valid ids find something."""
        c = self.client
        c.catalog.CreateCustomer(
            cpb.CreateCustomerRequest(customer=catalog_pb2.Customer(id="cus_1", name="One"))
        )
        c.catalog.CreateAggregator(
            cpb.CreateAggregatorRequest(
                aggregator=catalog_pb2.Aggregator(
                    id="agg_1",
                    name="Calls",
                    event_type="api_call",
                    operation="count",
                    filter=filt(condition("region", "in", ["eu", "us"])),
                )
            )
        )
        c.catalog.CreateAggregatorFilter(
            cpb.CreateAggregatorFilterRequest(
                aggregator_filter=catalog_pb2.AggregatorFilter(
                    id="flt_1",
                    aggregator_id="agg_1",
                    name="EU",
                    filter=filt(condition("region", "equals", "eu")),
                )
            )
        )
        c.ingest_ok(
            event(
                timestamp=NOW - dt.timedelta(hours=i), properties={"region": "eu" if i % 2 else "us", "n": i}
            )
            for i in range(20)
        )


@pytest.fixture
def target(db_url: str) -> Iterator[Target]:
    h = Harness.start(db_url)
    try:
        t = Target(h, h.client("org_hostile"))
        t.seed()
        yield t
    finally:
        h.close()


def call(target: Target, name: str, request: Any) -> None:
    """Send one request and check the invariants of the answer."""
    rpc = RPCS[name]
    method = getattr(getattr(target.client, rpc.service), name)
    before = fingerprint(target.engine)
    try:
        response = method(request)
        if name == "ExportUsageEvents":
            response = list(response)  # a stream: read to its end (an error comes with a read)
    except grpc.RpcError as err:
        got = details(err)
        assert got.code in ALLOWED, f"{name} answered {got.code.name}: {got.message} for {request}"
        if got.code == grpc.StatusCode.INVALID_ARGUMENT and got.reason not in WHOLE_REQUEST_REASONS:
            assert got.violations, f"{name}: INVALID_ARGUMENT without field violations: {got.message}"
            for field in got.fields:
                assert is_field_path(request.DESCRIPTOR, field), (
                    f"{name}: {field!r} is no field of the request"
                )
        assert fingerprint(target.engine) == before, f"{name} failed with {got.code.name} but changed data"
        return
    if not rpc.mutates:
        assert fingerprint(target.engine) == before, f"{name} is a read but changed data"
    if name == "IngestUsageEvents":
        check_ingest(target, request, response, before)
    if name == "VoidUsageEvents":
        assert [r.event_id for r in response.results] == list(request.event_ids)
        voided = sum(r.status == "VOIDED" for r in response.results)
        counts_before, counts_after = dict(before), dict(fingerprint(target.engine))
        assert counts_before["events"] - counts_after["events"] == voided
        assert counts_after["voided_events"] - counts_before["voided_events"] == voided


def check_ingest(target: Target, request: pb.IngestUsageEventsRequest, response: Any, before: Any) -> None:
    results = list(response.results)
    assert [r.index for r in results] == list(range(len(request.events)))
    accepted = []
    for r in results:
        assert r.status in INGEST_STATUSES, r
        if r.status == "REJECTED":
            assert r.violations and not r.event_id, r
            for v in r.violations:
                assert is_field_path(events_pb2.UsageEventInput.DESCRIPTOR, v.field), v
        else:
            assert r.event_id and not r.violations, r
        if r.status == "ACCEPTED":
            accepted.append(r.event_id)
    counts_before, counts_after = dict(before), dict(fingerprint(target.engine))
    assert counts_after["events"] - counts_before["events"] == len(accepted)
    if accepted:
        ev = schema.events.c
        with target.engine.connect() as conn:
            stored = set(conn.execute(sa.select(ev.id).where(ev.id.in_(accepted))).scalars())
        assert stored == set(accepted)


def run(
    target: Target,
    backend: str,
    name: str,
    strategy: st.SearchStrategy[Any],
    base: int | None = None,
    extra: list[Any] = (),
) -> None:
    count = examples(base if base is not None else BASE_EXAMPLES[backend])

    @given(strategy)
    def check(request: Any) -> None:
        call(target, name, request)

    for request in extra:  # regression examples: hypothesis runs them first
        check = example(request)(check)
    settings(max_examples=count, deadline=None, suppress_health_check=list(HealthCheck), database=None)(
        check
    )()


# ---- tests ---------------------------------------------------------------------------------
# Issue 11: times out of the Timestamp range overflowed both databases' integers (INTERNAL); nanos
# out of 0..999,999,999 were accepted and silently shifted the time by whole seconds.
BAD_TIMES = [
    timestamp_pb2.Timestamp(seconds=2**62),
    timestamp_pb2.Timestamp(seconds=-(2**62)),
    timestamp_pb2.Timestamp(seconds=2**63 - 1),
    timestamp_pb2.Timestamp(seconds=now_s, nanos=1_000_000_000),
    timestamp_pb2.Timestamp(seconds=now_s, nanos=-1),
    timestamp_pb2.Timestamp(seconds=now_s, nanos=2**31 - 1),
    timestamp_pb2.Timestamp(seconds=now_s, nanos=-(2**31)),
]
GOOD_TIME = timestamp_pb2.Timestamp(seconds=now_s - 86_400)
MEGABYTE = "x" * (1 << 20)
# PostgreSQL refused 91,506 comma-separated keys (its 65,535 bound parameters) as UNAVAILABLE:
# here 100 values of 1024 distinct three-character keys each (4095 characters, within the item bound).
_KEY_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
_KEYS = [a + b + c for a in _KEY_CHARS for b in _KEY_CHARS for c in _KEY_CHARS][: 100 * 1024]
MANY_METRIC_KEYS = [",".join(_KEYS[i : i + 1024]) for i in range(0, len(_KEYS), 1024)]
IANA_LOOKALIKES = ["localtime", "Factory", "posixrules", "right/UTC", "posix/UTC", "Europe/../UTC"]


def _aggregator_with_big_values(n: int = 15) -> catalog_pb2.Aggregator:
    """Issue 11: 15 `equals` conditions of 1 MB each (ListAggregators then built 314 MB)."""
    return catalog_pb2.Aggregator(
        name="n",
        event_type="e",
        operation="count",
        filter=filt(*(condition(f"p{i}", "equals", MEGABYTE) for i in range(n))),
    )


REGRESSIONS: dict[str, list[Any]] = {
    "CreateAggregator": [
        cpb.CreateAggregatorRequest(
            aggregator=catalog_pb2.Aggregator(
                name="n", event_type="e", operation="count", filter=filt(condition("a", "gt", math.inf))
            )
        ),
        cpb.CreateAggregatorRequest(aggregator=_aggregator_with_big_values()),
        # Within each value's bound, over the bound of the whole filter (16 KiB as JSON).
        cpb.CreateAggregatorRequest(
            aggregator=catalog_pb2.Aggregator(
                name="n",
                event_type="e",
                operation="count",
                filter=filt(*(condition(f"p{i}", "in", ["y" * 4000] * 5) for i in range(3))),
            )
        ),
        cpb.CreateAggregatorRequest(
            aggregator=catalog_pb2.Aggregator(
                name="n", event_type="e", operation="count", filter=filt(condition("a", "in", ["v"] * 101))
            )
        ),
        # One value past 4096 characters, within the request's size bound.
        cpb.CreateAggregatorRequest(
            aggregator=catalog_pb2.Aggregator(
                name="n",
                event_type="e",
                operation="count",
                filter=filt(condition("a", "equals", "ok"), condition("b", "equals", "y" * 4097)),
            )
        ),
    ],
    "CreateAggregatorFilter": [
        cpb.CreateAggregatorFilterRequest(
            aggregator_filter=catalog_pb2.AggregatorFilter(
                aggregator_id="agg_1", name="big", filter=_aggregator_with_big_values(1).filter
            )
        ),
        cpb.CreateAggregatorFilterRequest(
            aggregator_filter=catalog_pb2.AggregatorFilter(
                aggregator_id="agg_1", name="big", filter=filt(condition("a", "in", ["z" * 5000]))
            )
        ),
    ],
    # The unknown mask path was echoed whole: a 20,000-character path overflowed the client's
    # trailer limit, which the client reports as RESOURCE_EXHAUSTED.
    "UpdateAggregator": [
        cpb.UpdateAggregatorRequest(
            aggregator=catalog_pb2.Aggregator(id="agg_1"),
            update_mask=field_mask_pb2.FieldMask(paths=["x" * 20_000]),
        ),
        cpb.UpdateAggregatorRequest(
            aggregator=catalog_pb2.Aggregator(id="agg_1", name="n"),
            update_mask=field_mask_pb2.FieldMask(paths=["name"] * 100_000),
        ),
        cpb.UpdateAggregatorRequest(
            aggregator=_aggregator_with_big_values(), update_mask=field_mask_pb2.FieldMask(paths=["filter"])
        ),
        cpb.UpdateAggregatorRequest(
            aggregator=catalog_pb2.Aggregator(id="agg_1", name="n"),
            update_mask=field_mask_pb2.FieldMask(paths=["name"] * 17),
        ),
        # The id's violations were dropped when the mask did not name it: a NUL reached PostgreSQL.
        cpb.UpdateAggregatorRequest(
            aggregator=catalog_pb2.Aggregator(
                id="\x00", name="Calls", event_type="api_call", operation="count"
            ),
            update_mask=field_mask_pb2.FieldMask(paths=["name"]),
        ),
    ],
    # PostgreSQL cannot store NUL in text or jsonb: these answered INTERNAL there.
    "DeleteAggregator": [cpb.DeleteAggregatorRequest(id="\x00")],
    "DeleteAggregatorFilter": [cpb.DeleteAggregatorFilterRequest(aggregator_id="\x00", id="cus_1")],
    "GetCustomer": [cpb.GetCustomerRequest(id="a\x00b")],
    "CreateCustomer": [cpb.CreateCustomerRequest(customer=catalog_pb2.Customer(id="c", name="\x00"))],
    # A cursor with non-ASCII characters made hmac.compare_digest raise TypeError: INTERNAL.
    "ListCustomers": [cpb.ListCustomersRequest(cursor="\u00e9.\u00e9")],
    "ListAggregators": [cpb.ListAggregatorsRequest(cursor="\u00e9.\u00e9")],
    "ListUsageEvents": [
        pb.ListUsageEventsRequest(cursor="\u00e9.\u00e9"),
        pb.ListUsageEventsRequest(metric_key=["\x00" + "x" * 4000] * 100),  # 100 long violations
        pb.ListUsageEventsRequest(metric_key=MANY_METRIC_KEYS),
        *(pb.ListUsageEventsRequest(occurred_after=t) for t in BAD_TIMES),
        *(pb.ListUsageEventsRequest(occurred_before=t) for t in BAD_TIMES),
    ],
    "ExportUsageEvents": [
        pb.ExportUsageEventsRequest(resume_token="\u00e9.\u00e9"),
        pb.ExportUsageEventsRequest(metric_key=MANY_METRIC_KEYS),
        *(pb.ExportUsageEventsRequest(occurred_after=t) for t in BAD_TIMES),
        *(pb.ExportUsageEventsRequest(occurred_before=t) for t in BAD_TIMES),
    ],
    "ExplainUsageEvent": [
        pb.ExplainUsageEventRequest(event_id="\x00", aggregator_id="agg_1"),
        *(pb.ExplainUsageEventRequest(event_id="e", aggregator_id="agg_1", start_date=t) for t in BAD_TIMES),
        *(
            pb.ExplainUsageEventRequest(event_id="e", aggregator_id="agg_1", start_date=GOOD_TIME, end_date=t)
            for t in BAD_TIMES
        ),
    ],
    "ListCustomerUsageEvents": [
        *(
            pb.ListCustomerUsageEventsRequest(
                id="cus_1", aggregator_id="agg_1", start_date=t, end_date=GOOD_TIME
            )
            for t in BAD_TIMES
        ),
        *(
            pb.ListCustomerUsageEventsRequest(
                id="cus_1", aggregator_id="agg_1", start_date=GOOD_TIME, end_date=t
            )
            for t in BAD_TIMES
        ),
    ],
    "AggregateUsage": [
        pb.AggregateUsageRequest(bucket="day", since=GOOD_TIME, metric_key=MANY_METRIC_KEYS),
        *(pb.AggregateUsageRequest(bucket="day", since=t) for t in BAD_TIMES),
        *(pb.AggregateUsageRequest(bucket="day", since=GOOD_TIME, until=t) for t in BAD_TIMES),
        *(pb.AggregateUsageRequest(bucket="day", since=GOOD_TIME, time_zone=z) for z in IANA_LOOKALIKES),
    ],
    "IngestUsageEvents": [
        pb.IngestUsageEventsRequest(events=[event()] * 5001),
        pb.IngestUsageEventsRequest(),
        # json_format refused to convert non-finite numbers: INTERNAL instead of REJECTED.
        pb.IngestUsageEventsRequest(
            events=[event(properties={"a": math.inf}), event(properties={"b": [math.nan]}), event()]
        ),
        pb.IngestUsageEventsRequest(events=[event(customer_id="\x00" * 5)] * 4000),  # 4,000 violations
        pb.IngestUsageEventsRequest(
            events=[event(properties={"k": "a\x00"}), event(properties={"\x00": 1}), event()]
        ),
        pb.IngestUsageEventsRequest(events=[event(timestamp=None), event()]),
        *(
            pb.IngestUsageEventsRequest(
                events=[events_pb2.UsageEventInput(customer_id="c", metric_key="m", timestamp=t)]
            )
            for t in BAD_TIMES
        ),
    ],
}


def test_every_rpc_gets_hostile_requests() -> None:
    assert set(RPCS) == {method for _, method in ALL_METHODS}


def test_any_valid_reason_is_kept_as_sent(target: Target) -> None:
    reasons = [r for r in METACHARACTERS if r.strip() and "\x00" not in r and len(r) <= 1024]
    reasons += ["é" * 1024, "line\nbreak\ttab", "🙂 emoji"]
    ids = [e.id for e in target.client.all_events()]
    for event_id, reason in zip(ids, reasons, strict=False):
        request = xpb.VoidUsageEventsRequest(event_ids=[event_id], reason=reason)
        (result,) = target.client.corrections.VoidUsageEvents(request).results
        assert (result.status, result.void.reason) == ("VOIDED", reason)
        history = xpb.GetUsageEventHistoryRequest(event_id=event_id)
        (version,) = target.client.corrections.GetUsageEventHistory(history).versions
        assert version.voided.reason == reason
    assert len(target.client.all_events()) == len(ids) - min(len(ids), len(reasons))


@pytest.mark.parametrize("name", list(RPCS))
def test_hostile_requests_are_answered_cleanly(target: Target, backend: str, name: str) -> None:
    run(target, backend, name, RPCS[name].strategy, extra=REGRESSIONS.get(name, []))


# Each input issue 11 found answered INTERNAL, UNAVAILABLE or OK: now INVALID_ARGUMENT naming the field
# (or, for a request past its RPC's size bound, saying so: it is refused before it is parsed).
TOO_LARGE = "REQUEST_TOO_LARGE"
OUT_OF_RANGE: list[tuple[str, Any, str]] = [
    *(("ListUsageEvents", pb.ListUsageEventsRequest(occurred_after=t), "occurred_after") for t in BAD_TIMES),
    *(
        ("ListUsageEvents", pb.ListUsageEventsRequest(occurred_before=t), "occurred_before")
        for t in BAD_TIMES
    ),
    ("ListUsageEvents", pb.ListUsageEventsRequest(metric_key=MANY_METRIC_KEYS), "metric_key[0]"),
    (
        "AggregateUsage",
        pb.AggregateUsageRequest(bucket="day", since=GOOD_TIME, metric_key=MANY_METRIC_KEYS),
        "metric_key[0]",
    ),
    *(("AggregateUsage", pb.AggregateUsageRequest(bucket="day", since=t), "since") for t in BAD_TIMES),
    *(
        ("AggregateUsage", pb.AggregateUsageRequest(bucket="day", since=GOOD_TIME, time_zone=z), "time_zone")
        for z in IANA_LOOKALIKES
    ),
    *(
        (
            "ListCustomerUsageEvents",
            pb.ListCustomerUsageEventsRequest(
                id="cus_1", aggregator_id="agg_1", start_date=GOOD_TIME, end_date=t
            ),
            "end_date",
        )
        for t in BAD_TIMES
    ),
    *(
        (
            "GetCustomerUsage",
            pb.GetCustomerUsageRequest(id="cus_1", start_date=GOOD_TIME, end_date=t),
            "end_date",
        )
        for t in BAD_TIMES
    ),
    *(
        (
            "GetAggregatorTimeSeries",
            pb.GetAggregatorTimeSeriesRequest(
                aggregator_id="agg_1", start_date=t, end_date=GOOD_TIME, bucket="day"
            ),
            "start_date",
        )
        for t in BAD_TIMES
    ),
    *(
        (
            "GetAggregatorTimeSeries",
            pb.GetAggregatorTimeSeriesRequest(
                aggregator_id="agg_1",
                start_date=GOOD_TIME,
                end_date=timestamp_pb2.Timestamp(seconds=now_s),
                bucket="month",
                time_zone=z,
            ),
            "time_zone",
        )
        for z in IANA_LOOKALIKES
    ),
    (
        "ListAggregatorUsageByCustomer",
        pb.ListAggregatorUsageByCustomerRequest(
            aggregator_id="agg_1", start_date=GOOD_TIME, end_date=GOOD_TIME, take=101
        ),
        "take",
    ),
    ("CreateAggregator", REGRESSIONS["CreateAggregator"][1], TOO_LARGE),
    ("CreateAggregator", REGRESSIONS["CreateAggregator"][2], "aggregator.filter"),
    ("CreateAggregator", REGRESSIONS["CreateAggregator"][3], "aggregator.filter.fields[0].value"),
    ("CreateAggregator", REGRESSIONS["CreateAggregator"][4], "aggregator.filter.fields[1].value"),
    ("CreateAggregatorFilter", REGRESSIONS["CreateAggregatorFilter"][0], TOO_LARGE),
    (
        "CreateAggregatorFilter",
        REGRESSIONS["CreateAggregatorFilter"][1],
        "aggregator_filter.filter.fields[0].value",
    ),
    ("UpdateAggregator", REGRESSIONS["UpdateAggregator"][1], "update_mask"),
    ("UpdateAggregator", REGRESSIONS["UpdateAggregator"][2], TOO_LARGE),
    ("UpdateAggregator", REGRESSIONS["UpdateAggregator"][3], "update_mask"),
    ("UpdateAggregator", REGRESSIONS["UpdateAggregator"][4], "aggregator.id"),
    ("GetCustomer", cpb.GetCustomerRequest(id="x" * 100_000), TOO_LARGE),
]


def test_out_of_range_inputs_are_invalid_argument_naming_their_field(target: Target) -> None:
    for name, request, field in OUT_OF_RANGE:
        rpc = RPCS[name]
        before = fingerprint(target.engine)
        try:
            getattr(getattr(target.client, rpc.service), name)(request)
        except grpc.RpcError as err:
            got = details(err)
            assert got.code == grpc.StatusCode.INVALID_ARGUMENT, (name, field, got.code, got.message)
            if field == TOO_LARGE:
                assert got.reason == TOO_LARGE and "over its limit of" in got.message, (name, got.message)
            else:
                assert field in got.fields, (name, field, got.violations)
            assert len(got.message) <= 512 and all(len(d) <= 256 for _, d in got.violations)
        else:
            raise AssertionError(f"{name} accepted an invalid {field}")
        assert fingerprint(target.engine) == before


# ---- as_of (issue 16) ----------------------------------------------------------------------
QUERY_RPCS = [
    m.name
    for m in pb.DESCRIPTOR.services_by_name["UsageService"].methods
    if "as_of" in m.input_type.fields_by_name
]


def test_every_query_rpc_draws_as_of() -> None:
    assert sorted(QUERY_RPCS) == sorted(
        [
            "ListCustomerUsageEvents",
            "ListUsageEvents",
            "ExportUsageEvents",
            "ExplainUsageEvent",
            "AggregateUsage",
            "GetCustomerUsage",
            "GetAggregatorTimeSeries",
            "ListAggregatorUsageByCustomer",
        ]
    )
    quick = settings(database=None, max_examples=1000, suppress_health_check=list(HealthCheck))
    for name in QUERY_RPCS:  # each query RPC's requests set as_of...
        find(RPCS[name].strategy, lambda r: r.HasField("as_of"), settings=quick)
    for wanted in (  # ...to times of every kind
        lambda t: t is not None and t.seconds < 0,  # before 1970
        lambda t: t is not None and t.seconds > now_s + 86_400 * 365,  # far in the future
        lambda t: t is not None and not 0 <= t.nanos <= 999_999_999,
        lambda t: t is not None and now_s - 120 < t.seconds <= time.time(),  # just past: answerable
    ):
        find(as_of, wanted, settings=quick)


# Each one refused on as_of, on every query RPC: before 1970, at 1970 (before the floor), in the future,
# out of the Timestamp range, nanos out of range.
BAD_AS_OF = [
    timestamp_pb2.Timestamp(seconds=-86_400),
    timestamp_pb2.Timestamp(seconds=0),
    timestamp_pb2.Timestamp(seconds=MIN_S),
    timestamp_pb2.Timestamp(seconds=now_s + 3600),
    timestamp_pb2.Timestamp(seconds=MAX_S, nanos=999_999_999),
    *BAD_TIMES,
]


def _query_requests(target: Target) -> dict[str, Any]:
    """A request of each query RPC that is answered OK without as_of."""
    to = timestamp_pb2.Timestamp(seconds=now_s + 60)
    period: dict[str, Any] = {"start_date": GOOD_TIME, "end_date": to}
    return {
        "ListCustomerUsageEvents": pb.ListCustomerUsageEventsRequest(
            id="cus_1", aggregator_id="agg_1", **period
        ),
        "ListUsageEvents": pb.ListUsageEventsRequest(limit=5),
        "ExportUsageEvents": pb.ExportUsageEventsRequest(chunk_size=5),
        "ExplainUsageEvent": pb.ExplainUsageEventRequest(
            event_id=target.client.all_events()[0].id, aggregator_id="agg_1"
        ),
        # until given: without it, the answer's window ends now, and as of its as_of at that as_of.
        "AggregateUsage": pb.AggregateUsageRequest(bucket="day", since=GOOD_TIME, until=to),
        "GetCustomerUsage": pb.GetCustomerUsageRequest(id="cus_1", **period),
        "GetAggregatorTimeSeries": pb.GetAggregatorTimeSeriesRequest(
            aggregator_id="agg_1", bucket="day", **period
        ),
        "ListAggregatorUsageByCustomer": pb.ListAggregatorUsageByCustomerRequest(
            aggregator_id="agg_1", **period
        ),
    }


def test_bad_as_of_is_invalid_argument_on_as_of_and_the_answers_as_of_is_ok(target: Target) -> None:
    requests = _query_requests(target)
    assert sorted(requests) == sorted(QUERY_RPCS)
    for name, request in requests.items():
        method = getattr(getattr(target.client, RPCS[name].service), name)
        answers = list(method(request)) if name == "ExportUsageEvents" else [method(request)]
        (answer_as_of,) = {a.as_of.SerializeToString() for a in answers}
        good = type(request)()
        good.CopyFrom(request)
        good.as_of.MergeFromString(answer_as_of)
        again = list(method(good)) if name == "ExportUsageEvents" else [method(good)]
        assert again == answers, name
        for t in BAD_AS_OF:
            bad = type(request)()
            bad.CopyFrom(request)
            bad.as_of.CopyFrom(t)
            before = fingerprint(target.engine)
            try:
                response = method(bad)
                if name == "ExportUsageEvents":
                    list(response)
            except grpc.RpcError as err:
                got = details(err)
                assert got.code == grpc.StatusCode.INVALID_ARGUMENT, (name, t, got.code, got.message)
                assert got.fields == ["as_of"], (name, t, got.violations)
                assert len(got.message) <= 512
            else:
                raise AssertionError(f"{name} accepted as_of {t}")
            assert fingerprint(target.engine) == before


def test_out_of_range_event_times_reject_the_event_only(target: Target) -> None:
    results = target.client.ingest(
        *(
            events_pb2.UsageEventInput(customer_id="cus_1", metric_key="api_call", timestamp=t)
            for t in BAD_TIMES
        ),
        event(timestamp=NOW - dt.timedelta(minutes=1)),
    )
    assert [r.status for r in results] == ["REJECTED"] * len(BAD_TIMES) + ["ACCEPTED"]
    assert all({v.field for v in r.violations} == {"timestamp"} for r in results[:-1])


def test_the_answer_to_a_batch_of_bad_events_stays_small(target: Target) -> None:
    """Each rejected event reports at most 10 violations, and an event of 100,000 properties one: the
    answer to 5000 such events stays a few MB (each key's violation made answers past 16 MiB)."""
    many_keys = {f"!{i}": 1 for i in range(100_000)}
    nulls = {f"k{i}": None for i in range(64)}
    results = target.client.ingest(event(properties=many_keys), *[event(properties=nulls)] * 4999)
    assert [v.description for v in results[0].violations] == ["at most 64 keys"]
    assert {r.status for r in results} == {"REJECTED"}
    assert all(len(r.violations) == 10 for r in results[1:])
    response = pb.IngestUsageEventsResponse(results=results)
    assert response.ByteSize() < 4 * 1024 * 1024, response.ByteSize()
