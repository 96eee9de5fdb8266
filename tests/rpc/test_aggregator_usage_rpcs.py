"""GetCustomerUsage, GetAggregatorTimeSeries and ListAggregatorUsageByCustomer through a real channel,
on SQLite and PostgreSQL (docs/api.md: What customers used). The values themselves are checked
against ListCustomerUsageEvents by tests/logic/test_aggregator_usage.py."""

from __future__ import annotations

import datetime as dt

import pytest
from grpc_harness import Client, at, condition, event, expect_invalid, expect_not_found, filt, to_dt, ts
from usage.v1 import catalog_pb2
from usage.v1 import catalog_service_pb2 as cpb
from usage.v1 import usage_service_pb2 as pb

START = at("2026-01-01T00:00:00Z")
END = at("2026-02-01T00:00:00Z")
H = dt.timedelta(hours=1)


def make(client: Client, agg_id: str, event_type: str = "gb", operation: str = "sum", **fields) -> None:
    agg = catalog_pb2.Aggregator(
        id=agg_id, name=f"n_{agg_id}", event_type=event_type, operation=operation, **fields
    )
    client.catalog.CreateAggregator(cpb.CreateAggregatorRequest(aggregator=agg))


def usage(client: Client, customer: str = "cus_1", **kwargs) -> pb.GetCustomerUsageResponse:
    return client.usage.GetCustomerUsage(
        pb.GetCustomerUsageRequest(id=customer, start_date=ts(START), end_date=ts(END), **kwargs)
    )


@pytest.fixture
def loaded(org_a: Client) -> Client:
    """cus_1: four `gb` events (size 0.1, 0.2, "7", absent; region eu/us), cus_2 two, cus_3 one;
    one event outside the period; aggregators: count, sum of the quantity, sum of `size`."""
    org_a.ingest_ok(
        [
            event("cus_1", "gb", "2026-01-05T10:00:00Z", "1.5", {"size": 0.1, "region": "eu"}),
            event("cus_1", "gb", "2026-01-06T10:00:00Z", "2", {"size": 0.2, "region": "us"}),
            event("cus_1", "gb", "2026-01-07T10:00:00Z", "1", {"size": "7", "region": "eu"}),
            event("cus_1", "gb", "2026-01-31T23:59:59.999999Z", "1", {"region": "eu"}),
            event("cus_1", "gb", "2026-02-01T00:00:00Z", "100", {"size": 100}),  # outside
            event("cus_2", "gb", "2026-01-10T10:00:00Z", "3", {"size": 1}),
            event("cus_2", "gb", "2026-01-11T10:00:00Z", "3", {"size": 2}),
            event("cus_3", "gb", "2026-01-12T10:00:00Z", "6", {"size": 3}),
            event("cus_1", "api", "2026-01-12T10:00:00Z"),
        ]
    )
    make(org_a, "agg_count", operation="count")
    make(org_a, "agg_qty", unit_name="GB")
    make(org_a, "agg_size", property="size")
    return org_a


def test_customer_usage_of_one_aggregator(loaded: Client) -> None:
    got = usage(loaded, aggregator_id="agg_size")
    assert got.customer_id == "cus_1" and to_dt(got.start_date) == START and to_dt(got.end_date) == END
    (row,) = got.data
    assert (row.aggregator_id, row.name, row.event_type, row.operation, row.property) == (
        "agg_size",
        "n_agg_size",
        "gb",
        "sum",
        "size",
    )
    # 0.1 + 0.2 exactly; the numeric string "7" and the absent property are counted apart.
    assert (row.exact_total, row.total, row.count, row.unsummed_count) == ("0.3", 0.3, 4, 2)
    assert not row.HasField("aggregator_filter_id")
    assert got.pagination.cursor == "" and not got.pagination.has_more


def test_customer_usage_of_every_aggregator_by_pages(loaded: Client) -> None:
    first = usage(loaded, limit=2)
    assert [r.aggregator_id for r in first.data] == ["agg_count", "agg_qty"]
    assert first.pagination.has_more
    second = usage(loaded, limit=2, cursor=first.pagination.cursor)
    assert [r.aggregator_id for r in second.data] == ["agg_size"] and not second.pagination.has_more
    rows = {r.aggregator_id: r for r in [*first.data, *second.data]}
    assert (rows["agg_count"].exact_total, rows["agg_count"].count) == ("4", 4)
    assert (rows["agg_qty"].exact_total, rows["agg_qty"].unit_name, rows["agg_qty"].unsummed_count) == (
        "5.5",
        "GB",
        0,
    )
    # A cursor is bound to its organization: another one cannot use it.
    expect_invalid(
        loaded.usage.GetCustomerUsage,
        pb.GetCustomerUsageRequest(
            id="cus_1", start_date=ts(START), end_date=ts(END), cursor=first.pagination.cursor + "x"
        ),
        "cursor",
    )


def test_customer_usage_with_an_aggregator_filter(loaded: Client) -> None:
    flt = catalog_pb2.AggregatorFilter(
        id="flt_eu", aggregator_id="agg_qty", name="eu", filter=filt(condition("region", "equals", "eu"))
    )
    loaded.catalog.CreateAggregatorFilter(cpb.CreateAggregatorFilterRequest(aggregator_filter=flt))
    (row,) = usage(loaded, aggregator_id="agg_qty", aggregator_filter_id="flt_eu").data
    assert (row.exact_total, row.count, row.aggregator_filter_id) == ("3.5", 3, "flt_eu")
    # The same filter named with another aggregator does not exist for it.
    expect_not_found(
        loaded.usage.GetCustomerUsage,
        pb.GetCustomerUsageRequest(
            id="cus_1",
            start_date=ts(START),
            end_date=ts(END),
            aggregator_id="agg_size",
            aggregator_filter_id="flt_eu",
        ),
        "Aggregator filter not found",
    )


def test_customer_usage_errors(loaded: Client) -> None:
    call = loaded.usage.GetCustomerUsage
    req = pb.GetCustomerUsageRequest
    expect_not_found(call, req(id="cus_x", start_date=ts(START), end_date=ts(END)), "Customer not found")
    expect_not_found(
        call,
        req(id="cus_1", start_date=ts(START), end_date=ts(END), aggregator_id="agg_x"),
        "Aggregator not found",
    )
    expect_invalid(call, req(id="cus_1", start_date=ts(START), end_date=ts(START)), "end_date")
    expect_invalid(call, req(id="cus_1", start_date=ts(START)), "end_date")
    expect_invalid(
        call,
        req(id="cus_1", start_date=ts(START), end_date=ts(END), aggregator_filter_id="f"),
        "aggregator_filter_id",
    )
    expect_invalid(call, req(id="cus_1", start_date=ts(START), end_date=ts(END), limit=-1), "limit")


def test_time_series_in_months_and_days(loaded: Client) -> None:
    got = loaded.usage.GetAggregatorTimeSeries(
        pb.GetAggregatorTimeSeriesRequest(
            aggregator_id="agg_qty",
            start_date=ts("2025-12-15T00:00:00Z"),
            end_date=ts("2026-02-28T23:00:00Z"),  # March 1st, 00:00 in Paris
            bucket="month",
            time_zone="Europe/Paris",
        )
    )
    assert (got.bucket, got.time_zone) == ("month", "Europe/Paris")
    # Paris months start at 23:00Z the day before; the event at 2026-01-31T23:59:59Z is February's.
    assert [to_dt(p.start) for p in got.points] == [
        at("2025-11-30T23:00:00Z"),
        at("2025-12-31T23:00:00Z"),
        at("2026-01-31T23:00:00Z"),
    ]
    assert [p.exact_value for p in got.points] == ["0", "16.5", "101"]
    assert (got.exact_total, got.total) == ("117.5", 117.5)
    one = loaded.usage.GetAggregatorTimeSeries(
        pb.GetAggregatorTimeSeriesRequest(
            aggregator_id="agg_size",
            start_date=ts(START),
            end_date=ts(START + 7 * 24 * H),
            bucket="day",
            customer_id="cus_1",
        )
    )
    assert [p.exact_value for p in one.points] == ["0", "0", "0", "0", "0.1", "0.2", "0"]
    assert one.time_zone == "UTC" and one.exact_total == "0.3"


def test_time_series_errors(loaded: Client) -> None:
    call = loaded.usage.GetAggregatorTimeSeries
    req = pb.GetAggregatorTimeSeriesRequest
    expect_invalid(
        call, req(aggregator_id="agg_qty", start_date=ts(START), end_date=ts(END), bucket="year"), "bucket"
    )
    expect_invalid(
        call,
        req(
            aggregator_id="agg_qty",
            start_date=ts(START),
            end_date=ts(END),
            bucket="day",
            time_zone="Mars/Base",
        ),
        "time_zone",
    )
    expect_not_found(
        call,
        req(
            aggregator_id="agg_qty", start_date=ts(START), end_date=ts(END), bucket="day", customer_id="cus_x"
        ),
        "Customer not found",
    )
    expect_not_found(
        call,
        req(aggregator_id="agg_x", start_date=ts(START), end_date=ts(END), bucket="day"),
        "Aggregator not found",
    )


def test_usage_by_customer_ranked_and_paged(loaded: Client) -> None:
    def page(agg: str, **kwargs) -> pb.ListAggregatorUsageByCustomerResponse:
        return loaded.usage.ListAggregatorUsageByCustomer(
            pb.ListAggregatorUsageByCustomerRequest(
                aggregator_id=agg, start_date=ts(START), end_date=ts(END), **kwargs
            )
        )

    # Quantities: cus_1 5.5, cus_2 6, cus_3 6 (a tie: by customer id).
    got = page("agg_qty")
    assert [(r.customer_id, r.exact_total, r.count) for r in got.data] == [
        ("cus_2", "6", 2),
        ("cus_3", "6", 1),
        ("cus_1", "5.5", 4),
    ]
    assert (got.meta.total, got.meta.taken, got.meta.skipped) == (3, 3, 0)
    got = page("agg_size", take=1, skip=1)
    assert [(r.customer_id, r.exact_total, r.unsummed_count) for r in got.data] == [("cus_3", "3", 0)]
    assert (got.meta.total, got.meta.taken, got.meta.skipped) == (3, 1, 1)
    got = page("agg_count", take=0)
    assert (got.meta.total, list(got.data)) == (3, [])
    got = page("agg_count", skip=10)
    assert (got.meta.total, got.meta.taken, got.meta.skipped) == (3, 0, 10)
    call, req = loaded.usage.ListAggregatorUsageByCustomer, pb.ListAggregatorUsageByCustomerRequest
    expect_invalid(
        call, req(aggregator_id="agg_qty", start_date=ts(START), end_date=ts(END), take=101), "take"
    )
    expect_invalid(
        call, req(aggregator_id="agg_qty", start_date=ts(START), end_date=ts(END), skip=-1), "skip"
    )
    expect_not_found(
        call, req(aggregator_id="agg_x", start_date=ts(START), end_date=ts(END)), "Aggregator not found"
    )
