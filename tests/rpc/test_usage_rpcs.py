"""UsageService through a real channel, on SQLite and PostgreSQL (docs/api.md: its four RPCs, Errors)."""

from __future__ import annotations

import datetime as dt
import time

import grpc
import pytest
from google.protobuf import json_format, timestamp_pb2
from grpc_harness import (
    Client,
    Harness,
    at,
    condition,
    event,
    expect_error,
    expect_invalid,
    expect_not_found,
    filt,
    to_dt,
    ts,
)
from usage.v1 import catalog_pb2
from usage.v1 import catalog_service_pb2 as cpb
from usage.v1 import usage_service_pb2 as pb

H = dt.timedelta(hours=1)
US = dt.timedelta(microseconds=1)


def make_aggregator(
    client: Client, agg_id: str, event_type: str = "api_call", **fields
) -> catalog_pb2.Aggregator:
    agg = catalog_pb2.Aggregator(id=agg_id, name=agg_id, event_type=event_type, operation="count", **fields)
    return client.catalog.CreateAggregator(cpb.CreateAggregatorRequest(aggregator=agg)).aggregator


def make_filter(
    client: Client, agg_id: str, filter_id: str, flt: catalog_pb2.Filter
) -> catalog_pb2.AggregatorFilter:
    f = catalog_pb2.AggregatorFilter(id=filter_id, aggregator_id=agg_id, name=filter_id, filter=flt)
    return client.catalog.CreateAggregatorFilter(
        cpb.CreateAggregatorFilterRequest(aggregator_filter=f)
    ).aggregator_filter


def cue(
    client: Client,
    start: dt.datetime | str,
    end: dt.datetime | str,
    customer: str = "cus_1",
    aggregator: str = "agg",
    **kwargs,
) -> pb.ListCustomerUsageEventsResponse:
    return client.usage.ListCustomerUsageEvents(
        pb.ListCustomerUsageEventsRequest(
            id=customer, aggregator_id=aggregator, start_date=ts(start), end_date=ts(end), **kwargs
        )
    )


# =============================================================================================
# ListCustomerUsageEvents
# =============================================================================================
START = at("2026-01-10T00:00:00Z")
END = at("2026-01-11T00:00:00Z")


def test_customer_events_window_is_half_open(org_a: Client) -> None:
    make_aggregator(org_a, "agg")
    ids = org_a.ingest_ok(
        [
            event(timestamp=START - US),  # before the window
            event(timestamp=START),  # first instant: included
            event(timestamp=START + H),
            event(timestamp=END - US),  # last microsecond: included
            event(timestamp=END),  # end is exclusive
        ]
    )
    page = cue(org_a, START, END)
    assert page.meta.total == 3
    assert page.meta.taken == 3
    assert page.meta.skipped == 0
    assert [e.id for e in page.data] == [ids[3], ids[2], ids[1]]
    assert [to_dt(e.timestamp) for e in page.data] == [END - US, START + H, START]


def test_customer_events_only_the_customer_and_the_aggregator_event_type(org_a: Client) -> None:
    make_aggregator(org_a, "agg", event_type="api_call")
    ids = org_a.ingest_ok(
        [
            event(customer_id="cus_1", metric_key="api_call", timestamp=START + H),
            event(customer_id="cus_1", metric_key="storage_gb", timestamp=START + H),
            event(customer_id="cus_2", metric_key="api_call", timestamp=START + H),
            event(customer_id="cus_1", metric_key="api_call.v2", timestamp=START + H),
        ]
    )
    page = cue(org_a, START, END)
    assert [e.id for e in page.data] == [ids[0]]
    assert page.meta.total == 1
    other = cue(org_a, START, END, customer="cus_2")
    assert [e.id for e in other.data] == [ids[2]]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"end_date": START}, "end_date"),  # end == start
        ({"end_date": START - H}, "end_date"),  # end < start
        ({"start_date": None}, "start_date"),
        ({"end_date": None}, "end_date"),
        ({"take": 101}, "take"),
        ({"take": -1}, "take"),
        ({"skip": -1}, "skip"),
        ({"id": ""}, "id"),
        ({"aggregator_id": ""}, "aggregator_id"),
        ({"aggregator_filter_id": ""}, "aggregator_filter_id"),
    ],
)
def test_customer_events_invalid_arguments(org_a: Client, change: dict, field: str) -> None:
    make_aggregator(org_a, "agg")
    org_a.ingest_ok([event(timestamp=START + H)])
    fields = {"id": "cus_1", "aggregator_id": "agg", "start_date": START, "end_date": END, **change}
    request = pb.ListCustomerUsageEventsRequest()
    for name, v in fields.items():
        if v is None:
            continue
        if isinstance(v, dt.datetime):
            getattr(request, name).CopyFrom(ts(v))
        else:
            setattr(request, name, v)
    expect_invalid(org_a.usage.ListCustomerUsageEvents, request, field)


def test_customer_events_take_bounds_are_inclusive(org_a: Client) -> None:
    make_aggregator(org_a, "agg")
    org_a.ingest_ok([event(timestamp=START + i * US) for i in range(3)])
    assert cue(org_a, START, END, take=100).meta.taken == 3
    assert cue(org_a, START, END, take=0).meta.taken == 0


def test_customer_events_default_take_skip_and_meta(org_a: Client) -> None:
    make_aggregator(org_a, "agg")
    ids = org_a.ingest_ok([event(timestamp=START + i * dt.timedelta(minutes=1)) for i in range(60)])
    newest_first = list(reversed(ids))

    page = cue(org_a, START, END)
    assert (page.meta.total, page.meta.taken, page.meta.skipped) == (60, 50, 0)
    assert [e.id for e in page.data] == newest_first[:50]

    page = cue(org_a, START, END, skip=50)
    assert (page.meta.total, page.meta.taken, page.meta.skipped) == (60, 10, 50)
    assert [e.id for e in page.data] == newest_first[50:]

    page = cue(org_a, START, END, take=7, skip=3)
    assert (page.meta.total, page.meta.taken, page.meta.skipped) == (60, 7, 3)
    assert [e.id for e in page.data] == newest_first[3:10]

    only_total = cue(org_a, START, END, take=0)
    assert (only_total.meta.total, only_total.meta.taken, only_total.meta.skipped) == (60, 0, 0)
    assert list(only_total.data) == []

    beyond = cue(org_a, START, END, skip=100)
    assert (beyond.meta.total, beyond.meta.taken, beyond.meta.skipped) == (60, 0, 100)
    assert list(beyond.data) == []


def test_customer_events_empty_window_of_a_known_customer(org_a: Client) -> None:
    make_aggregator(org_a, "agg")
    org_a.ingest_ok([event(timestamp=START - H)])
    page = cue(org_a, START, END)
    assert (page.meta.total, page.meta.taken, page.meta.skipped) == (0, 0, 0)
    assert list(page.data) == []


def test_customer_events_not_found(org_a: Client) -> None:
    make_aggregator(org_a, "agg")
    make_aggregator(org_a, "agg_other")
    make_filter(org_a, "agg_other", "flt_other", filt(condition("region", "equals", "eu")))
    org_a.ingest_ok([event(timestamp=START + H)])

    got = expect_not_found(
        org_a.usage.ListCustomerUsageEvents,
        pb.ListCustomerUsageEventsRequest(
            id="cus_nobody", aggregator_id="agg", start_date=ts(START), end_date=ts(END)
        ),
        "Customer not found",
    )
    assert got.metadata.get("resource") == "customer"
    got = expect_not_found(
        org_a.usage.ListCustomerUsageEvents,
        pb.ListCustomerUsageEventsRequest(
            id="cus_1", aggregator_id="agg_nope", start_date=ts(START), end_date=ts(END)
        ),
        "Aggregator not found",
    )
    assert got.metadata.get("resource") == "aggregator"
    # A filter of another aggregator, and an unknown filter id.
    for filter_id in ("flt_other", "flt_unknown"):
        expect_not_found(
            org_a.usage.ListCustomerUsageEvents,
            pb.ListCustomerUsageEventsRequest(
                id="cus_1",
                aggregator_id="agg",
                start_date=ts(START),
                end_date=ts(END),
                aggregator_filter_id=filter_id,
            ),
        )


def test_customer_events_of_a_catalog_customer_without_events(org_a: Client) -> None:
    """A customer created in the catalog, with no events, is known: an empty page, not NOT_FOUND."""
    make_aggregator(org_a, "agg")
    org_a.catalog.CreateCustomer(cpb.CreateCustomerRequest(customer=catalog_pb2.Customer(id="cus_quiet")))
    page = cue(org_a, START, END, customer="cus_quiet")
    assert page.meta.total == 0


def test_customer_events_aggregator_filter_and_requested_filter(org_a: Client) -> None:
    make_aggregator(org_a, "agg", filter=filt(condition("region", "equals", "eu")))
    make_filter(org_a, "agg", "flt_get", filt(condition("method", "equals", "GET")))
    t = START + H
    ids = org_a.ingest_ok(
        [
            event(timestamp=t, properties={"region": "eu", "method": "GET"}),
            event(timestamp=t + US, properties={"region": "eu", "method": "POST"}),
            event(timestamp=t + 2 * US, properties={"region": "us", "method": "GET"}),
            event(timestamp=t + 3 * US, properties={"method": "GET"}),
            event(
                timestamp=t + 4 * US, metric_key="storage_gb", properties={"region": "eu", "method": "GET"}
            ),
        ]
    )
    own = cue(org_a, START, END)
    assert [e.id for e in own.data] == [ids[1], ids[0]]
    assert own.meta.total == 2
    both = cue(org_a, START, END, aggregator_filter_id="flt_get")
    assert [e.id for e in both.data] == [ids[0]]
    assert both.meta.total == 1


def test_customer_events_name_derivation(org_a: Client) -> None:
    make_aggregator(org_a, "agg", display_name_property="endpoint")
    make_aggregator(org_a, "agg_plain")
    cases = [
        ({"endpoint": "/v1/search", "name": "Search"}, "/v1/search", "Search"),
        ({"endpoint": "", "name": "Named"}, "Named", "Named"),
        ({"endpoint": 5, "name": "Number"}, "Number", "Number"),  # non-string falls through
        ({"endpoint": True}, "api_call", "api_call"),
        ({"endpoint": ["a", "b"], "name": 7}, "api_call", "api_call"),
        ({"name": ""}, "api_call", "api_call"),
        ({"endpoint": "/v1/orders"}, "/v1/orders", "api_call"),
        ({}, "api_call", "api_call"),
    ]
    # Oldest first, so the response (newest first) is the reverse.
    org_a.ingest_ok(
        [event(timestamp=START + i * H, properties=props) for i, (props, _, _) in enumerate(cases)]
    )
    names = [e.name for e in reversed(cue(org_a, START, END).data)]
    assert names == [expected for _, expected, _ in cases]
    plain = [e.name for e in reversed(cue(org_a, START, END, aggregator="agg_plain").data)]
    assert plain == [expected for _, _, expected in cases]


def test_customer_events_order_and_stable_pages(org_a: Client) -> None:
    make_aggregator(org_a, "agg")
    stamps = [START + H] * 9 + [START + 2 * H] * 5 + [START + 30 * dt.timedelta(minutes=1)] * 4
    ids = org_a.ingest_ok([event(timestamp=t) for t in stamps])
    expected = [i for _, i in sorted(zip(stamps, ids, strict=True), reverse=True)]
    full = cue(org_a, START, END, take=100)
    assert [e.id for e in full.data] == expected
    paged: list[str] = []
    for skip in range(0, len(ids), 4):
        page = cue(org_a, START, END, take=4, skip=skip)
        assert page.meta.total == len(ids)
        paged += [e.id for e in page.data]
    assert paged == expected


def test_customer_events_payload_is_the_ingested_properties(org_a: Client) -> None:
    make_aggregator(org_a, "agg")
    props = {"region": "eu", "count": 3, "ratio": 0.25, "ok": True, "tags": ["a", 2, False], "big": -12345678}
    (eid,) = org_a.ingest_ok([event(timestamp=START + H, properties=props)])
    (e,) = cue(org_a, START, END).data
    assert e.id == eid
    assert json_format.MessageToDict(e.payload) == props
    assert to_dt(e.timestamp) == START + H
    assert e.name == "api_call"


# =============================================================================================
# ListUsageEvents
# =============================================================================================
def test_list_events_limits(org_a: Client) -> None:
    ids = org_a.ingest_ok([event(timestamp=START + i * US) for i in range(120)])
    newest = list(reversed(ids))

    default = org_a.usage.ListUsageEvents(pb.ListUsageEventsRequest())
    assert [e.id for e in default.data] == newest[:25]
    assert default.pagination.has_more and default.pagination.cursor

    zero = org_a.usage.ListUsageEvents(pb.ListUsageEventsRequest(limit=0))
    assert len(zero.data) == 25

    clamped = org_a.usage.ListUsageEvents(pb.ListUsageEventsRequest(limit=1000))
    assert [e.id for e in clamped.data] == newest[:100]
    assert clamped.pagination.has_more

    exact = org_a.usage.ListUsageEvents(pb.ListUsageEventsRequest(limit=100))
    assert len(exact.data) == 100

    expect_invalid(org_a.usage.ListUsageEvents, pb.ListUsageEventsRequest(limit=-1), "limit")


def test_list_events_filters(org_a: Client) -> None:
    t = START
    specs = [
        dict(customer_id="cus_1", metric_key="a", product_id="p1", subscription_id="s1"),
        dict(customer_id="cus_1", metric_key="b", product_id="p2"),
        dict(customer_id="cus_2", metric_key="c", subscription_id="s1"),
        dict(customer_id="cus_2", metric_key="d", product_id="p1", subscription_id="s2"),
        dict(customer_id="cus_3", metric_key="a"),
    ]
    ids = org_a.ingest_ok([event(timestamp=t + i * H, **spec) for i, spec in enumerate(specs)])

    def listed(**request) -> list[str]:
        return sorted(e.id for e in org_a.all_events(**request))

    def expected(*indexes: int) -> list[str]:
        return sorted(ids[i] for i in indexes)

    assert listed() == expected(0, 1, 2, 3, 4)
    assert listed(customer_id="cus_1") == expected(0, 1)
    assert listed(product_id="p1") == expected(0, 3)
    assert listed(subscription_id="s1") == expected(0, 2)
    assert listed(metric_key=["a"]) == expected(0, 4)
    assert listed(metric_key=["a,b", "c"]) == expected(0, 1, 2, 4)
    assert listed(metric_key=["b", "d"]) == expected(1, 3)
    assert listed(metric_key=["zzz"]) == []
    assert listed(customer_id="cus_1", metric_key=["a,c"]) == expected(0)
    assert listed(product_id="p1", subscription_id="s2") == expected(3)
    # occurred_after is inclusive, occurred_before exclusive.
    assert listed(occurred_after=ts(t + H)) == expected(1, 2, 3, 4)
    assert listed(occurred_before=ts(t + 3 * H)) == expected(0, 1, 2)
    assert listed(occurred_after=ts(t + H), occurred_before=ts(t + 3 * H)) == expected(1, 2)
    assert listed(occurred_after=ts(t + H), occurred_before=ts(t + H + US)) == expected(1)


@pytest.mark.parametrize(
    ("request_fields", "field"),
    [
        ({"occurred_after": ts(START + H), "occurred_before": ts(START)}, "occurred_before"),
        ({"occurred_after": ts(START), "occurred_before": ts(START)}, "occurred_before"),
        ({"metric_key": ["bad key!"]}, "metric_key[0]"),
        ({"metric_key": ["ok", "a,b c"]}, "metric_key[1]"),
        ({"customer_id": ""}, "customer_id"),
        ({"cursor": "x" * 1025}, "cursor"),
        ({"cursor": "garbage"}, "cursor"),
    ],
)
def test_list_events_invalid_arguments(org_a: Client, request_fields: dict, field: str) -> None:
    expect_invalid(org_a.usage.ListUsageEvents, pb.ListUsageEventsRequest(**request_fields), field)


def test_list_events_cursor_walks_ties_without_gaps_or_duplicates(org_a: Client) -> None:
    same = START + H
    events = [event(customer_id=f"cus_{i % 3}", timestamp=same) for i in range(310)]
    # Sub-microsecond differences are below the storage precision: ties too.
    for nanos in (100, 200, 900):
        e = event(timestamp=None)
        e.timestamp.seconds = int(same.timestamp())
        e.timestamp.nanos = nanos
        events.append(e)
    events += [event(timestamp=same + US), event(timestamp=same - US)]
    ids = org_a.ingest_ok(events)
    assert len(ids) == 315

    by_id = {e.id: e for e in org_a.all_events()}
    expected = sorted(ids, key=lambda i: (to_dt(by_id[i].timestamp), i), reverse=True)

    seen: list[str] = []
    cursor = ""
    limits = [7, 50, 13, 100, 1, 64]
    pages = 0
    while True:
        page = org_a.usage.ListUsageEvents(
            pb.ListUsageEventsRequest(limit=limits[pages % len(limits)], cursor=cursor)
        )
        pages += 1
        seen += [e.id for e in page.data]
        assert page.pagination.has_more == bool(page.pagination.cursor)
        cursor = page.pagination.cursor
        if not cursor:
            break
        assert len(page.data) == limits[(pages - 1) % len(limits)]
    assert seen == expected
    assert len(set(seen)) == len(ids)


def test_list_events_cursor_is_empty_exactly_at_the_end(org_a: Client) -> None:
    org_a.ingest_ok([event(timestamp=START) for _ in range(40)])
    first = org_a.usage.ListUsageEvents(pb.ListUsageEventsRequest(limit=20))
    assert first.pagination.has_more and first.pagination.cursor
    second = org_a.usage.ListUsageEvents(pb.ListUsageEventsRequest(limit=20, cursor=first.pagination.cursor))
    assert len(second.data) == 20
    assert second.pagination.cursor == ""
    assert second.pagination.has_more is False
    assert {e.id for e in first.data}.isdisjoint(e.id for e in second.data)
    everything = org_a.usage.ListUsageEvents(pb.ListUsageEventsRequest(limit=40))
    assert len(everything.data) == 40 and not everything.pagination.has_more


def test_list_events_empty(org_a: Client) -> None:
    page = org_a.usage.ListUsageEvents(pb.ListUsageEventsRequest())
    assert list(page.data) == []
    assert page.pagination.cursor == "" and not page.pagination.has_more


def test_list_events_cursor_bound_to_filters_and_organization(org_a: Client, org_b: Client) -> None:
    org_a.ingest_ok([event(timestamp=START + i * US, metric_key="a") for i in range(5)])
    org_b.ingest_ok([event(timestamp=START + i * US, metric_key="a") for i in range(5)])
    first = org_a.usage.ListUsageEvents(pb.ListUsageEventsRequest(limit=2, metric_key=["a"]))
    cursor = first.pagination.cursor
    assert cursor

    # Same filters, other limit: fine.
    ok = org_a.usage.ListUsageEvents(pb.ListUsageEventsRequest(limit=3, metric_key=["a"], cursor=cursor))
    assert len(ok.data) == 3
    # Other filters are refused.
    for other in (
        pb.ListUsageEventsRequest(limit=2, cursor=cursor),
        pb.ListUsageEventsRequest(limit=2, metric_key=["b"], cursor=cursor),
        pb.ListUsageEventsRequest(limit=2, metric_key=["a"], customer_id="cus_1", cursor=cursor),
        pb.ListUsageEventsRequest(limit=2, metric_key=["a"], occurred_before=ts(END), cursor=cursor),
    ):
        expect_invalid(org_a.usage.ListUsageEvents, other, "cursor")
    # Another organization.
    expect_invalid(
        org_b.usage.ListUsageEvents,
        pb.ListUsageEventsRequest(limit=2, metric_key=["a"], cursor=cursor),
        "cursor",
    )
    # Tampered: one character of the payload, of the signature, or a missing signature.
    payload, _, sig = cursor.partition(".")
    tampered_payload = ("B" if payload[0] != "B" else "C") + payload[1:]
    tampered_sig = sig[:-1] + ("A" if sig[-1] != "A" else "B")
    for bad in (f"{tampered_payload}.{sig}", f"{payload}.{tampered_sig}", payload, f"{payload}.", "." + sig):
        expect_invalid(
            org_a.usage.ListUsageEvents,
            pb.ListUsageEventsRequest(limit=2, metric_key=["a"], cursor=bad),
            "cursor",
        )


def test_list_events_catalog_cursor_is_not_an_events_cursor(org_a: Client) -> None:
    for i in range(3):
        org_a.catalog.CreateCustomer(cpb.CreateCustomerRequest(customer=catalog_pb2.Customer(id=f"cus_{i}")))
    cursor = org_a.catalog.ListCustomers(cpb.ListCustomersRequest(limit=1)).pagination.cursor
    assert cursor
    expect_invalid(org_a.usage.ListUsageEvents, pb.ListUsageEventsRequest(cursor=cursor), "cursor")


@pytest.mark.parametrize(
    ("given", "canonical"),
    [
        ("1.50", "1.5"),
        ("1", "1"),
        ("1000", "1000"),
        ("2.000", "2"),
        ("0.000001", "0.000001"),
        ("123456789.123456789", "123456789.123456789"),
        ("0", "0"),
        ("-0.0", "0"),
        ("-3.10", "-3.1"),
        ("00012345678901234567890.123456789010", "12345678901234567890.12345678901"),
    ],
)
def test_quantities_are_stored_and_returned_canonical(org_a: Client, given: str, canonical: str) -> None:
    (event_id,) = org_a.ingest_ok(
        [event(timestamp=START, quantity=given, external_cost_amount=given, external_cost_currency="EUR")]
    )
    (stored,) = org_a.usage.ListUsageEvents(pb.ListUsageEventsRequest()).data
    assert (stored.id, stored.quantity, stored.external_cost_amount) == (event_id, canonical, canonical)


def test_list_events_returns_every_field(org_a: Client) -> None:
    before_us = time.time_ns() // 1000
    (full_id,) = org_a.ingest_ok(
        [
            event(
                customer_id="cus_full",
                metric_key="storage_gb",
                timestamp=START + H,
                quantity="2.50",
                properties={"region": "eu", "n": 1},
                idempotency_key="key-1",
                product_id="prod_1",
                subscription_id="sub_1",
                price_key="price_1",
                external_cost_amount="0.125",
                external_cost_currency="EUR",
                wallet_currency="USD",
            )
        ]
    )
    (bare_id,) = org_a.ingest_ok([event(customer_id="cus_bare", timestamp=START)])
    after_us = time.time_ns() // 1000
    full, bare = org_a.usage.ListUsageEvents(pb.ListUsageEventsRequest()).data
    assert (full.id, bare.id) == (full_id, bare_id)
    assert full.id.startswith("evt_")
    assert full.organization_id == "org_a"
    assert full.customer_id == "cus_full"
    assert full.metric_key == "storage_gb"
    assert full.product_id == "prod_1"
    assert full.subscription_id == "sub_1"
    assert full.price_key == "price_1"
    assert full.idempotency_key == "key-1"
    assert full.external_cost_currency == "EUR"
    assert full.wallet_currency == "USD"
    assert full.quantity == "2.5"
    assert full.external_cost_amount == "0.125"
    assert to_dt(full.timestamp) == START + H
    assert json_format.MessageToDict(full.properties) == {"region": "eu", "n": 1}
    for e in (full, bare):
        ingested_us = e.ingested_at.seconds * 1_000_000 + e.ingested_at.nanos // 1000
        assert before_us <= ingested_us <= after_us
    # Unset optionals stay unset; quantity defaults to "1"; properties default to {}.
    assert bare.quantity == "1"
    for name in (
        "product_id",
        "subscription_id",
        "price_key",
        "idempotency_key",
        "external_cost_amount",
        "external_cost_currency",
        "wallet_currency",
    ):
        assert not bare.HasField(name), name
    assert json_format.MessageToDict(bare.properties) == {}


# =============================================================================================
# AggregateUsage
# =============================================================================================
def aggregate(client: Client, since: dt.datetime | str, until: dt.datetime | str | None = None, **kwargs):
    request = pb.AggregateUsageRequest(since=ts(since), **kwargs)
    if until is not None:
        request.until.CopyFrom(ts(until))
    response = client.usage.AggregateUsage(request)
    for s in response.series:
        assert s.total == pytest.approx(sum(p.value for p in s.points))
        assert [p.start for p in s.points] == [p.start for p in response.series[0].points]
    return response


def starts(response) -> list[dt.datetime]:
    return [to_dt(p.start) for p in response.series[0].points]


def values(response, key: str = "") -> list[float]:
    (series,) = [s for s in response.series if s.key == key]
    return [p.value for p in series.points]


@pytest.mark.parametrize(
    ("request_fields", "field"),
    [
        ({"bucket": "minute"}, "bucket"),
        ({"bucket": ""}, "bucket"),
        ({"bucket": "Day"}, "bucket"),
        ({"metric": "avg"}, "metric"),
        ({"group_by": "dim:"}, "group_by"),
        ({"group_by": "dim:bad key"}, "group_by"),
        ({"group_by": "dim:" + "k" * 65}, "group_by"),
        ({"group_by": "customer_id"}, "group_by"),
        ({"time_zone": "Mars/Olympus"}, "time_zone"),
        ({"time_zone": "x" * 65}, "time_zone"),
        ({"top": -1}, "top"),
        ({"since": None}, "since"),
        ({"until": START}, "until"),  # == since
        ({"until": START - H}, "until"),
        ({"metric_key": ["a,b c"]}, "metric_key[0]"),
        ({"customer_id": ""}, "customer_id"),
    ],
)
def test_aggregate_invalid_arguments(org_a: Client, request_fields: dict, field: str) -> None:
    fields = {"bucket": "hour", "since": START, "until": END, **request_fields}
    request = pb.AggregateUsageRequest()
    for name, v in fields.items():
        if v is None:
            continue
        if isinstance(v, dt.datetime):
            getattr(request, name).CopyFrom(ts(v))
        elif isinstance(v, list):
            getattr(request, name).extend(v)
        else:
            setattr(request, name, v)
    expect_invalid(org_a.usage.AggregateUsage, request, field)


def ns_ts(text: str, nanos: int) -> timestamp_pb2.Timestamp:
    out = ts(text)
    out.nanos = nanos
    return out


def test_nanosecond_window_bounds_hold_for_the_stored_microsecond_times(org_a: Client) -> None:
    # Stored to the microsecond; bounds 1.5 us and 0.5 us past a second must still be half-open
    # for the times the API returns (a Go or Java `now()` carries nanoseconds).
    make_aggregator(org_a, "agg")
    [stored] = org_a.ingest_ok([event(timestamp="2026-01-10T00:00:00.000001Z")])
    second, mid, half = "2026-01-10T00:00:00Z", 1500, 500

    def listed(**bounds: timestamp_pb2.Timestamp) -> list[str]:
        return [e.id for e in org_a.usage.ListUsageEvents(pb.ListUsageEventsRequest(**bounds)).data]

    assert listed(occurred_before=ns_ts(second, mid)) == [stored]
    assert listed(occurred_after=ns_ts(second, mid)) == []
    assert listed(occurred_after=ts(second), occurred_before=ns_ts(second, half)) == []  # not an error
    request = pb.ListCustomerUsageEventsRequest(id="cus_1", aggregator_id="agg")
    request.start_date.CopyFrom(ns_ts(second, half))
    request.end_date.CopyFrom(ns_ts(second, mid))
    assert [e.id for e in org_a.usage.ListCustomerUsageEvents(request).data] == [stored]
    request.start_date.CopyFrom(ns_ts(second, mid))
    request.end_date.CopyFrom(ns_ts("2026-01-10T00:00:01Z", 0))
    assert org_a.usage.ListCustomerUsageEvents(request).meta.total == 0
    agg = pb.AggregateUsageRequest(bucket="hour", since=ts(second), until=ns_ts(second, mid))
    response = org_a.usage.AggregateUsage(agg)
    assert values(response) == [1] and to_dt(response.until) == at("2026-01-10T00:00:00.000002Z")


def test_aggregate_windows_are_cut_to_the_years_events_can_have(org_a: Client) -> None:
    org_a.ingest_ok([event(timestamp="1970-01-01T05:00:00Z")])
    r = aggregate(org_a, "1900-01-01T00:00:00Z", "1970-01-02T00:00:00Z", bucket="day")
    assert to_dt(r.since) == at("1970-01-01T00:00:00Z") and values(r) == [1]
    expect_invalid(
        org_a.usage.AggregateUsage,
        pb.AggregateUsageRequest(
            bucket="day", since=ts("1900-01-01T00:00:00Z"), until=ts("1960-01-01T00:00:00Z")
        ),
        "until",
    )


def test_aggregate_valid_group_by_key_of_64_characters(org_a: Client) -> None:
    key = "k" * 60 + ".a-b"
    org_a.ingest_ok([event(timestamp=START, properties={key: "v"}), event(timestamp=START)])
    r = aggregate(org_a, START, START + H, bucket="hour", group_by="dim:" + key)
    assert r.group_by == "dim:" + key
    assert sorted((s.key, s.total) for s in r.series) == [("", 1), ("v", 1)]


def test_aggregate_hourly_count_is_dense_with_defaults(org_a: Client) -> None:
    org_a.ingest_ok(
        [
            event(timestamp="2026-01-10T01:15:00Z"),
            event(timestamp="2026-01-10T01:59:59.999999Z"),
            event(timestamp="2026-01-10T03:00:00Z"),
            event(timestamp="2026-01-10T06:00:00Z"),  # == until: excluded
        ]
    )
    r = aggregate(org_a, "2026-01-10T00:00:00Z", "2026-01-10T06:00:00Z", bucket="hour")
    assert (r.bucket, r.group_by, r.metric) == ("hour", "none", "count")
    assert to_dt(r.since) == at("2026-01-10T00:00:00Z")
    assert to_dt(r.until) == at("2026-01-10T06:00:00Z")
    (series,) = r.series
    assert series.key == "" and not series.other
    assert starts(r) == [at("2026-01-10T00:00:00Z") + i * H for i in range(6)]
    assert values(r) == [0, 2, 0, 1, 0, 0]
    assert series.total == 3


def test_aggregate_no_events_gives_a_zero_series(org_a: Client) -> None:
    r = aggregate(org_a, START, START + 3 * H, bucket="hour")
    (series,) = r.series
    assert values(r) == [0, 0, 0]
    assert series.total == 0


def test_aggregate_sum_quantity_and_filters(org_a: Client) -> None:
    t = at("2026-01-10T10:00:00Z")
    org_a.ingest_ok(
        [
            event(timestamp=t, quantity="1.5", metric_key="a", customer_id="cus_1"),
            event(timestamp=t, quantity="2.25", metric_key="b", customer_id="cus_1", product_id="p1"),
            event(timestamp=t, quantity="100", metric_key="c", customer_id="cus_2", subscription_id="s1"),
            event(timestamp=t + H, metric_key="a", customer_id="cus_1"),  # default quantity 1
        ]
    )
    day = dict(bucket="day")
    assert values(aggregate(org_a, START, END, metric="sum_quantity", **day)) == [104.75]
    assert values(aggregate(org_a, START, END, **day)) == [4]
    r = aggregate(org_a, START, END, metric="sum_quantity", customer_id="cus_1", **day)
    assert r.metric == "sum_quantity"
    assert values(r) == [4.75]
    assert values(aggregate(org_a, START, END, metric="sum_quantity", metric_key=["a,b"], **day)) == [4.75]
    assert values(aggregate(org_a, START, END, metric="sum_quantity", metric_key=["a", "c"], **day)) == [
        102.5
    ]
    assert values(aggregate(org_a, START, END, metric="sum_quantity", product_id="p1", **day)) == [2.25]
    assert values(aggregate(org_a, START, END, metric="sum_quantity", subscription_id="s1", **day)) == [100]
    assert values(aggregate(org_a, START, END, customer_id="cus_nobody", **day)) == [0]


def test_aggregate_group_by_metric_key_and_top_n(org_a: Client) -> None:
    t0 = at("2026-01-10T00:00:00Z")
    totals = {"m_a": 6, "m_b": 5, "m_c": 3, "m_d": 3, "m_e": 2, "m_f": 1}
    events = []
    for key, n in totals.items():
        for i in range(n):
            events.append(event(metric_key=key, timestamp=t0 + (i % 3) * H))
    org_a.ingest_ok(events)
    window = dict(since=t0, until=t0 + 3 * H, bucket="hour", group_by="metric_key")

    def per_bucket(key: str) -> list[float]:
        n = totals[key]
        return [float(sum(1 for i in range(n) if i % 3 == b)) for b in range(3)]

    everything = aggregate(org_a, top=0, **window)
    assert [(s.key, s.total, s.other) for s in everything.series] == [
        ("m_a", 6, False),
        ("m_b", 5, False),
        ("m_c", 3, False),
        ("m_d", 3, False),
        ("m_e", 2, False),
        ("m_f", 1, False),
    ]
    for key in totals:
        assert values(everything, key) == per_bucket(key)

    top2 = aggregate(org_a, top=2, **window)
    assert [(s.key, s.other) for s in top2.series] == [("m_a", False), ("m_b", False), ("Other", True)]
    other = top2.series[-1]
    folded = ["m_c", "m_d", "m_e", "m_f"]
    assert [p.value for p in other.points] == [sum(per_bucket(k)[b] for k in folded) for b in range(3)]
    assert other.total == 9

    # Ties (m_c and m_d both 3) are ranked by key ascending.
    top3 = aggregate(org_a, top=3, **window)
    assert [s.key for s in top3.series] == ["m_a", "m_b", "m_c", "Other"]
    assert top3.series[-1].total == 3 + 2 + 1

    # top equal to the number of series: nothing to fold.
    top6 = aggregate(org_a, top=6, **window)
    assert [s.key for s in top6.series] == list(totals)
    assert not any(s.other for s in top6.series)


def test_aggregate_default_top_is_eight(org_a: Client) -> None:
    org_a.ingest_ok([event(metric_key=f"m{i:02d}", timestamp=START) for i in range(10) for _ in range(i + 1)])
    r = aggregate(org_a, START, START + H, bucket="hour", group_by="metric_key")
    assert [s.key for s in r.series] == [f"m{i:02d}" for i in range(9, 1, -1)] + ["Other"]
    assert r.series[-1].other and r.series[-1].total == 1 + 2


def test_aggregate_group_by_dimension(org_a: Client) -> None:
    org_a.ingest_ok(
        [
            event(timestamp=START, properties={"region": "eu"}),
            event(timestamp=START, properties={"region": "eu"}),
            event(timestamp=START + H, properties={"region": "us"}),
            event(timestamp=START + H, properties={"other": "x"}),
            event(timestamp=START + H),
        ]
    )
    r = aggregate(org_a, START, START + 2 * H, bucket="hour", group_by="dim:region")
    assert r.group_by == "dim:region"
    assert [(s.key, s.total) for s in r.series] == [("", 2), ("eu", 2), ("us", 1)]
    assert values(r, "") == [0, 2]
    assert values(r, "eu") == [2, 0]
    assert values(r, "us") == [0, 1]


def test_aggregate_group_by_dimension_of_scalars(org_a: Client) -> None:
    org_a.ingest_ok(
        [event(timestamp=START, properties={"d": v}) for v in (5, 5.0, 2.5, True, False, "x", "5", -3)]
    )
    r = aggregate(org_a, START, START + H, bucket="hour", group_by="dim:d", top=0)
    # Number 5 and string "5" share a key: series keys are text.
    assert sorted((s.key, s.total) for s in r.series) == [
        ("-3", 1),
        ("2.5", 1),
        ("5", 3),
        ("false", 1),
        ("true", 1),
        ("x", 1),
    ]


def test_aggregate_group_by_dimension_keeps_distinct_numbers_apart(org_a: Client) -> None:
    # Regression: SQLite once rendered JSON reals with 15 significant digits, so 0.3 and
    # 0.1 + 0.2 (0.30000000000000004) fell into one series "0.3".
    org_a.ingest_ok([event(timestamp=START, properties={"d": v}) for v in (0.3, 0.1 + 0.2)])
    r = aggregate(org_a, START, START + H, bucket="hour", group_by="dim:d", top=0)
    assert len(r.series) == 2, [(s.key, s.total) for s in r.series]
    assert sorted(float(s.key) for s in r.series) == sorted([0.3, 0.1 + 0.2])


def test_aggregate_partial_buckets_count_only_the_window(org_a: Client) -> None:
    org_a.ingest_ok(
        [
            event(timestamp="2026-01-10T03:00:00Z"),  # first day, before since: not counted
            event(timestamp="2026-01-10T06:00:00Z"),  # == since: counted
            event(timestamp="2026-01-11T12:00:00Z"),
            event(timestamp="2026-01-12T17:59:59Z"),
            event(timestamp="2026-01-12T18:00:00Z"),  # == until: not counted
            event(timestamp="2026-01-12T23:00:00Z"),
        ]
    )
    r = aggregate(org_a, "2026-01-10T06:00:00Z", "2026-01-12T18:00:00Z", bucket="day")
    assert starts(r) == [at("2026-01-10T00:00:00Z"), at("2026-01-11T00:00:00Z"), at("2026-01-12T00:00:00Z")]
    assert values(r) == [1, 1, 1]
    assert to_dt(r.since) == at("2026-01-10T06:00:00Z")
    assert to_dt(r.until) == at("2026-01-12T18:00:00Z")


def test_aggregate_weeks_start_on_monday(org_a: Client) -> None:
    org_a.ingest_ok(
        [
            event(timestamp="2026-01-11T23:59:59Z"),  # Sunday: week of Monday 2026-01-05
            event(timestamp="2026-01-12T00:00:00Z"),  # Monday: next week
            event(timestamp="2026-01-18T12:00:00Z"),
        ]
    )
    r = aggregate(org_a, "2026-01-07T00:00:00Z", "2026-01-20T00:00:00Z", bucket="week")
    assert starts(r) == [at("2026-01-05T00:00:00Z"), at("2026-01-12T00:00:00Z"), at("2026-01-19T00:00:00Z")]
    assert values(r) == [1, 2, 0]


def test_aggregate_weeks_in_a_time_zone(org_a: Client) -> None:
    # Monday 2026-01-12 00:00 in New York is 05:00 UTC.
    org_a.ingest_ok([event(timestamp="2026-01-12T04:59:59Z"), event(timestamp="2026-01-12T05:00:00Z")])
    r = aggregate(
        org_a, "2026-01-06T00:00:00Z", "2026-01-14T00:00:00Z", bucket="week", time_zone="America/New_York"
    )
    assert starts(r) == [at("2026-01-05T05:00:00Z"), at("2026-01-12T05:00:00Z")]
    assert values(r) == [1, 1]


def test_aggregate_bucket_cap_keeps_until_and_moves_since(db_url: str) -> None:
    h = Harness.start(db_url, max_aggregate_buckets=24)
    try:
        client = h.client("org_a")
        client.ingest_ok(
            [
                event(timestamp="2026-01-10T12:00:00Z"),  # dropped with the start of the window
                event(timestamp="2026-01-11T00:00:00Z"),  # first bucket kept
                event(timestamp="2026-01-11T23:30:00Z"),  # last bucket
            ]
        )
        r = aggregate(client, "2026-01-10T00:00:00Z", "2026-01-12T00:00:00Z", bucket="hour")
        assert to_dt(r.until) == at("2026-01-12T00:00:00Z")
        assert to_dt(r.since) == at("2026-01-11T00:00:00Z")
        assert starts(r) == [at("2026-01-11T00:00:00Z") + i * H for i in range(24)]
        assert values(r) == [1] + [0] * 22 + [1]

        # An unaligned until: the last bucket is partial, 24 buckets in all.
        r = aggregate(client, "2026-01-10T00:00:00Z", "2026-01-12T00:30:00Z", bucket="hour")
        assert to_dt(r.until) == at("2026-01-12T00:30:00Z")
        assert to_dt(r.since) == at("2026-01-11T01:00:00Z")
        assert len(r.series[0].points) == 24
        assert starts(r)[0] == at("2026-01-11T01:00:00Z")
        assert r.series[0].total == 1

        # Exactly the cap: nothing moves.
        r = aggregate(client, "2026-01-10T00:00:00Z", "2026-01-11T00:00:00Z", bucket="hour")
        assert to_dt(r.since) == at("2026-01-10T00:00:00Z")
        assert len(r.series[0].points) == 24
        assert r.series[0].total == 1
    finally:
        h.close()


def test_aggregate_until_defaults_to_now(org_a: Client) -> None:
    before = dt.datetime.now(dt.UTC).replace(microsecond=0)
    org_a.ingest_ok([event(timestamp=before - 2 * H), event(timestamp=before - 30 * H)])
    r = aggregate(org_a, before - 3 * H, bucket="hour")
    after = dt.datetime.now(dt.UTC)
    assert before <= to_dt(r.until) <= after
    assert r.series[0].total == 1


def test_aggregate_paris_spring_forward_days(org_a: Client) -> None:
    # 2026-03-29 in Paris lasts 23 hours: 00:00 CET (23:00Z the day before) to 00:00 CEST (22:00Z).
    org_a.ingest_ok(
        [
            event(timestamp="2026-03-28T22:59:59Z"),  # 2026-03-28 23:59:59 CET
            event(timestamp="2026-03-28T23:00:00Z"),  # 2026-03-29 00:00 CET
            event(timestamp="2026-03-29T21:59:59Z"),  # 2026-03-29 23:59:59 CEST
            event(timestamp="2026-03-29T22:00:00Z"),  # 2026-03-30 00:00 CEST
        ]
    )
    r = aggregate(
        org_a, "2026-03-27T23:00:00Z", "2026-03-30T22:00:00Z", bucket="day", time_zone="Europe/Paris"
    )
    assert starts(r) == [at("2026-03-27T23:00:00Z"), at("2026-03-28T23:00:00Z"), at("2026-03-29T22:00:00Z")]
    assert values(r) == [1, 2, 1]
    assert starts(r)[2] - starts(r)[1] == 23 * H


def test_aggregate_paris_fall_back_day_and_hours(org_a: Client) -> None:
    # 2026-10-25 in Paris lasts 25 hours: 00:00 CEST (22:00Z the day before) to 00:00 CET (23:00Z).
    org_a.ingest_ok(
        [
            event(timestamp="2026-10-25T00:30:00Z"),  # 02:30 CEST
            event(timestamp="2026-10-25T01:30:00Z"),  # 02:30 CET: the repeated hour
            event(timestamp="2026-10-25T22:59:59Z"),  # 23:59:59 CET, still the 25th
            event(timestamp="2026-10-25T23:00:00Z"),  # the 26th
        ]
    )
    days = aggregate(
        org_a, "2026-10-23T22:00:00Z", "2026-10-26T23:00:00Z", bucket="day", time_zone="Europe/Paris"
    )
    assert starts(days) == [
        at("2026-10-23T22:00:00Z"),
        at("2026-10-24T22:00:00Z"),
        at("2026-10-25T23:00:00Z"),
    ]
    assert values(days) == [0, 3, 1]
    assert starts(days)[2] - starts(days)[1] == 25 * H

    hours = aggregate(
        org_a, "2026-10-24T22:00:00Z", "2026-10-25T23:00:00Z", bucket="hour", time_zone="Europe/Paris"
    )
    hour_starts = starts(hours)
    assert len(hour_starts) == 25
    assert len(set(hour_starts)) == 25
    assert hour_starts == [at("2026-10-24T22:00:00Z") + i * H for i in range(25)]
    got = values(hours)
    assert got[2] == 1 and got[3] == 1  # 02:30 CEST and 02:30 CET are two buckets
    assert got[24] == 1 and sum(got) == 3


def test_aggregate_hours_in_a_half_hour_zone(org_a: Client) -> None:
    # Asia/Kolkata is UTC+05:30: local hours start at :30 UTC.
    org_a.ingest_ok([event(timestamp="2026-01-10T00:29:59Z"), event(timestamp="2026-01-10T00:30:00Z")])
    r = aggregate(
        org_a, "2026-01-09T23:30:00Z", "2026-01-10T01:30:00Z", bucket="hour", time_zone="Asia/Kolkata"
    )
    assert starts(r) == [at("2026-01-09T23:30:00Z"), at("2026-01-10T00:30:00Z")]
    assert values(r) == [1, 1]


# =============================================================================================
# IngestUsageEvents
# =============================================================================================
def test_ingest_batch_size_bounds(org_a: Client) -> None:
    expect_invalid(org_a.usage.IngestUsageEvents, pb.IngestUsageEventsRequest(), "events")
    too_many = pb.IngestUsageEventsRequest(events=[event(timestamp=START)] * 5001)
    expect_invalid(org_a.usage.IngestUsageEvents, too_many, "events")
    assert org_a.all_events() == []


def test_ingest_accepts_5000_events(org_a: Client) -> None:
    ids = org_a.ingest_ok([event(timestamp=START + i * US) for i in range(5000)])
    assert len(set(ids)) == 5000
    r = aggregate(org_a, START, START + H, bucket="hour")
    assert r.series[0].total == 5000


def test_ingest_rejects_invalid_events_and_stores_the_valid_ones(org_a: Client) -> None:
    now = dt.datetime.now(dt.UTC)
    nested = event(timestamp=START)
    nested.properties.update({"obj": {"a": 1}})
    cases: list[tuple[object, str | None]] = [
        (event(timestamp=START), None),
        (event(timestamp=None), "timestamp"),
        (event(customer_id="bad id!", timestamp=START), "customer_id"),
        (event(customer_id="", timestamp=START), "customer_id"),
        (event(metric_key="a,b", timestamp=START), "metric_key"),
        (event(metric_key="", timestamp=START), "metric_key"),
        (event(quantity="abc", timestamp=START), "quantity"),
        (event(quantity="1.2.3", timestamp=START), "quantity"),
        (event(timestamp=now + dt.timedelta(minutes=10)), "timestamp"),
        (nested, "properties.obj"),
        (event(timestamp=START, properties={"x": None}), "properties.x"),
        (event(timestamp=START, properties={"arr": ["a", {"b": 1}]}), "properties.arr"),
        (event(timestamp=START, properties={"bad key": 1}), "properties"),
        (event(timestamp=START, properties={"region\n": 1}), "properties"),
        (event(timestamp=START, external_cost_amount="1.5"), "external_cost_currency"),
        (
            event(timestamp=START, external_cost_amount="1.5", external_cost_currency="eur"),
            "external_cost_currency",
        ),
        (event(timestamp=START, wallet_currency="EURO"), "wallet_currency"),
        (event(timestamp=START, idempotency_key=""), "idempotency_key"),
        (event(timestamp=START + US, quantity="-2.5", properties={"ok": [1, "x", True]}), None),
        (event(timestamp=now), None),  # now is fine
    ]
    results = org_a.ingest(*(e for e, _ in cases))
    assert [r.index for r in results] == list(range(len(cases)))
    accepted = []
    for r, (_, field) in zip(results, cases, strict=True):
        if field is None:
            assert r.status == "ACCEPTED", r
            assert r.event_id.startswith("evt_") and not r.violations
            accepted.append(r.event_id)
        else:
            assert r.status == "REJECTED", (field, r)
            assert r.event_id == ""
            assert field in [v.field for v in r.violations], (field, r)
            assert all(v.description for v in r.violations)
    assert sorted(e.id for e in org_a.all_events()) == sorted(accepted)


def test_ingest_timestamp_within_the_allowed_skew_is_accepted(org_a: Client) -> None:
    soon = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=2)
    (r,) = org_a.ingest(event(timestamp=soon))
    assert r.status == "ACCEPTED"


def test_ingest_idempotency(org_a: Client) -> None:
    first = event(timestamp=START, idempotency_key="k1", properties={"a": "x"})
    (r1,) = org_a.ingest(first)
    assert r1.status == "ACCEPTED"
    (r2,) = org_a.ingest(first)
    assert (r2.status, r2.event_id) == ("DUPLICATE", r1.event_id)
    conflicting = event(timestamp=START, idempotency_key="k1", quantity="2", properties={"a": "x"})
    (r3,) = org_a.ingest(conflicting)
    assert (r3.status, r3.event_id) == ("CONFLICT", r1.event_id)
    other_props = event(timestamp=START, idempotency_key="k1", properties={"a": "y"})
    assert org_a.ingest(other_props)[0].status == "CONFLICT"
    other_time = event(timestamp=START + US, idempotency_key="k1", properties={"a": "x"})
    assert org_a.ingest(other_time)[0].status == "CONFLICT"

    stored = org_a.all_events()
    assert [(e.id, e.quantity, e.idempotency_key) for e in stored] == [(r1.event_id, "1", "k1")]

    # Inside one batch: the first is stored, the repeat is a duplicate of it, a change a conflict.
    batch = org_a.ingest(
        event(timestamp=START, idempotency_key="k2"),
        event(timestamp=START, idempotency_key="k2"),
        event(timestamp=START, idempotency_key="k2", quantity="3"),
        event(timestamp=START),  # no key: always a new event
        event(timestamp=START),
    )
    assert [r.status for r in batch] == ["ACCEPTED", "DUPLICATE", "CONFLICT", "ACCEPTED", "ACCEPTED"]
    assert batch[1].event_id == batch[0].event_id == batch[2].event_id
    assert batch[3].event_id != batch[4].event_id
    assert len(org_a.all_events()) == 4


def test_ingest_equivalent_content_is_a_duplicate(org_a: Client) -> None:
    first = org_a.ingest(
        event(timestamp=START, idempotency_key="k", quantity="", properties={"a": 1, "b": 2})
    )[0]
    assert first.status == "ACCEPTED"
    for quantity, props in (("1", {"b": 2, "a": 1}), ("1.0", {"a": 1, "b": 2.0}), ("01", {"a": 1.0, "b": 2})):
        (r,) = org_a.ingest(event(timestamp=START, idempotency_key="k", quantity=quantity, properties=props))
        assert (r.status, r.event_id) == ("DUPLICATE", first.event_id), quantity
    # A rejected event does not claim its key: the valid one after it is stored.
    rejected, accepted = org_a.ingest(
        event(timestamp=None, idempotency_key="k2"), event(timestamp=START, idempotency_key="k2")
    )
    assert (rejected.status, accepted.status) == ("REJECTED", "ACCEPTED")
    # Sub-microsecond timestamps: a retry with the same nanos is a duplicate.
    e = event(timestamp=START, idempotency_key="k3")
    e.timestamp.nanos = 999
    assert [r.status for r in org_a.ingest(e, e)] == ["ACCEPTED", "DUPLICATE"]
    assert len(org_a.all_events()) == 3


@pytest.mark.parametrize(
    "quantity",
    [
        "0.000000000001",
        "123456789012345678901234",
        "-42.5",
        # Regression: canonical_decimal once normalized under the default 28-digit context and
        # rounded these (the proto allows 24 integer + 12 fractional digits).
        "999999999999999999999999.999999999999",
        "1234567890123456789.0123456789",
    ],
)
def test_ingest_quantity_is_stored_exactly(org_a: Client, quantity: str) -> None:
    (eid,) = org_a.ingest_ok([event(timestamp=START, quantity=quantity)])
    (stored,) = org_a.all_events()
    assert (stored.id, stored.quantity) == (eid, quantity)


def test_ingest_quantities_differing_in_the_last_digit_conflict(org_a: Client) -> None:
    # Regression: with quantities rounded to 28 digits, this came back DUPLICATE, not CONFLICT.
    (first,) = org_a.ingest(
        event(timestamp=START, idempotency_key="k", quantity="1234567890123456789.0123456789")
    )
    (second,) = org_a.ingest(
        event(timestamp=START, idempotency_key="k", quantity="1234567890123456789.0123456788")
    )
    assert first.status == "ACCEPTED"
    assert second.status == "CONFLICT"


def test_ingest_registers_customers(org_a: Client) -> None:
    expect_not_found(org_a.catalog.GetCustomer, cpb.GetCustomerRequest(id="cus_new"), "Customer not found")
    org_a.ingest_ok(
        [event(customer_id="cus_new", timestamp=START), event(customer_id="cus_new", timestamp=START)]
    )
    customer = org_a.catalog.GetCustomer(cpb.GetCustomerRequest(id="cus_new")).customer
    assert customer.id == "cus_new"
    assert customer.name == ""
    assert customer.created_at.seconds > 0
    # A customer created beforehand keeps its name.
    org_a.catalog.CreateCustomer(
        cpb.CreateCustomerRequest(customer=catalog_pb2.Customer(id="cus_named", name="N"))
    )
    org_a.ingest_ok([event(customer_id="cus_named", timestamp=START)])
    assert org_a.catalog.GetCustomer(cpb.GetCustomerRequest(id="cus_named")).customer.name == "N"
    listed = org_a.catalog.ListCustomers(cpb.ListCustomersRequest())
    assert [c.id for c in listed.data] == ["cus_named", "cus_new"]


def test_ingest_rejected_event_does_not_register_its_customer(org_a: Client) -> None:
    (r,) = org_a.ingest(event(customer_id="cus_ghost", timestamp=None))
    assert r.status == "REJECTED"
    expect_error(org_a.catalog.GetCustomer, cpb.GetCustomerRequest(id="cus_ghost"), grpc.StatusCode.NOT_FOUND)
