"""Aggregator values (GetCustomerUsage), their time series and their ranking by customer, below the
RPC layer on both databases, against what ListCustomerUsageEvents lists.

The property: for random events (property values of every JSON type, numbers from tiny to huge),
random aggregators (count, sum of the quantity, sum of a property; with an own filter and a named
filter or not) and a random period, the value of each aggregator for each customer equals the exact
sum over the events ListCustomerUsageEvents pages through for the same inputs: `count` is its
`meta.total`, `total` the exact sum of the listed events' quantity or property where it is a number,
`unsummed` the listed events where it is not. The ranking and the time series (one customer and
all) are checked against the same per-customer sums.
"""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from aggregate_oracle import canonical, exact_sum, from_us, oracle_bucket_start, oracle_starts
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from stored_events import StoredEvent, decode

from server.domain import Aggregator, AggregatorFilter, Condition, Customer, NewEvent, PropertyFilter
from server.errors import InvalidArgument, NotFound
from server.logic.aggregator_usage import (
    AggregatorUsage,
    CustomerUsageRequest,
    Period,
    RankingRequest,
    TimeSeriesRequest,
)
from server.logic.as_of import AsOf
from server.logic.catalog import Catalog
from server.logic.cursors import CursorCodec
from server.logic.queries import CustomerEventsRequest, UsageQueries
from server.storage.sql_storage import SqlStorage

UTC = dt.UTC
HOUR_US = 3_600_000_000
DAY_US = 24 * HOUR_US
T0 = 1_780_000_000_000_000 // HOUR_US * HOUR_US  # 2026-05-28T20:00Z
INGESTED_AT_US = 1_900_000_000_000_000
CUSTOMERS = ["cus_a", "cus_b", "cus_c", "cus_d"]
METRICS = ["api.call", "storage"]
# Values of the summed property `v`: numbers (tiny, huge, negative, whole, fractional) and values
# that are not numbers (a numeric string, booleans, arrays, the empty string).
V_VALUES: list[Any] = [1, 2, -3, 0, 0.1, 0.2, 2.5, 1e20, 1e-20, 1e300, -1e300, 5e-324, 9007199254740993.0]
NOT_NUMBERS: list[Any] = ["12", "", True, False, [1, 2], "x"]
ZONE = ZoneInfo("Europe/Paris")


def _make_usage(storage: SqlStorage) -> tuple[AggregatorUsage, UsageQueries]:
    cursors = CursorCodec("x")
    as_of = AsOf(storage, horizon_days=400)
    queries = UsageQueries(storage, cursors, max_aggregate_buckets=1000, as_of=as_of)
    return AggregatorUsage(storage, Catalog(storage.catalog, cursors), queries, as_of), queries


def _listed(
    queries: UsageQueries, org: str, customer: str, agg: str, flt: str | None, p: Period
) -> tuple[int, list[StoredEvent]]:
    """Every event ListCustomerUsageEvents lists (all its pages) and its meta.total."""
    events: list[StoredEvent] = []
    totals = set()
    while True:
        page = queries.list_customer_events(
            org, CustomerEventsRequest(customer, agg, p.start_us, p.end_us, flt, take=100, skip=len(events))
        )
        totals.add(page.total)
        events += decode([w for w, _ in page.events])
        if not page.events:
            break
    assert len(totals) == 1 and totals == {len(events)}
    return len(events), events


def _number(value: Any) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return Decimal(repr(value)) if isinstance(value, float) else Decimal(value)


def _expected(aggregator: Aggregator, events: list[StoredEvent]) -> tuple[int, str, int]:
    """(count, total, unsummed) of the listed events, computed here."""
    if aggregator.operation == "count":
        return len(events), str(len(events)), 0
    if not aggregator.property:
        return len(events), canonical(exact_sum(Decimal(e.quantity) for e in events)), 0
    numbers = [_number(e.properties.get(aggregator.property)) for e in events]
    summed = [n for n in numbers if n is not None]
    return len(events), canonical(exact_sum(summed)), len(events) - len(summed)


FILTERS = [
    PropertyFilter("and", (Condition("region", "equals", "eu"),)),
    PropertyFilter("or", (Condition("region", "not_equals", "us"), Condition("v", "gt", 1))),
    PropertyFilter("and", (Condition("v", "is_not_null"),)),
    PropertyFilter("and", ()),
]


@st.composite
def scenarios(draw: st.DrawFn) -> dict[str, Any]:
    props = st.fixed_dictionaries(
        {},
        optional={
            "v": st.sampled_from(V_VALUES + NOT_NUMBERS),
            "region": st.sampled_from(["eu", "us", 1]),
        },
    )
    event = st.builds(
        NewEvent,
        customer_id=st.sampled_from(CUSTOMERS),
        metric_key=st.sampled_from(METRICS),
        # Within 3 days of T0, often on and around whole hours (rollup bounds).
        timestamp_us=st.one_of(
            st.integers(T0 - 3 * DAY_US, T0 + 3 * DAY_US),
            st.builds(lambda h, d: T0 + h * HOUR_US + d, st.integers(-72, 72), st.sampled_from([-1, 0, 1])),
        ),
        quantity=st.sampled_from(["1", "0.5", "2.25", "-1", "123456789012345678901234.123456789012"]),
        properties=props,
    )
    start = draw(st.integers(T0 - 4 * DAY_US, T0) | st.sampled_from([T0 - DAY_US, T0 - HOUR_US + 1]))
    end = draw(st.integers(start + 1, T0 + 4 * DAY_US) | st.just(start + 2 * DAY_US))
    aggregators = draw(
        st.lists(
            st.tuples(
                st.sampled_from(METRICS),
                st.sampled_from([("count", ""), ("sum", ""), ("sum", "v"), ("sum", "absent")]),
                st.none() | st.sampled_from(FILTERS),
                st.none() | st.sampled_from(FILTERS),
            ),
            min_size=1,
            max_size=4,
        )
    )
    return {
        "events": draw(st.lists(event, min_size=0, max_size=30)),
        "period": Period(start, end),
        "aggregators": aggregators,
    }


def _setup(storage: SqlStorage, sc: dict[str, Any]) -> tuple[str, list[tuple[Aggregator, str | None]]]:
    org = f"org_{uuid.uuid4().hex}"
    if sc["events"]:
        outcomes = storage.events.ingest(org, sc["events"], INGESTED_AT_US)
        assert {o.status for o in outcomes} == {"ACCEPTED"}
    for c in CUSTOMERS:
        if storage.catalog.get_customer(org, c) is None:
            storage.catalog.create_customer(org, Customer(c))
    made = []
    for i, (metric, (operation, prop), own, named) in enumerate(sc["aggregators"]):
        agg = storage.catalog.create_aggregator(
            org,
            Aggregator(f"agg_{i}", f"a{i}", metric, operation, prop, filter=own),  # type: ignore[arg-type]
        )
        flt = None
        if named is not None:
            flt = storage.catalog.create_aggregator_filter(
                org, AggregatorFilter(f"flt_{i}", agg.id, "f", named)
            )
        made.append((agg, flt.id if flt is not None else None))
    return org, made


@settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(sc=scenarios())
def test_values_agree_with_the_listed_events(storage: SqlStorage, sc: dict[str, Any]) -> None:
    org, made = _setup(storage, sc)
    usage, queries = _make_usage(storage)
    base: Period = sc["period"]
    for agg, flt in made:
        period = Period(base.start_us, base.end_us, flt)
        per_customer = {}
        for customer in CUSTOMERS:
            _, listed = _listed(queries, org, customer, agg.id, flt, period)
            expected = _expected(agg, listed)
            per_customer[customer] = (expected, listed)
            got = usage.customer_usage(org, CustomerUsageRequest(customer, period, agg.id))
            assert [
                (v.aggregator.id, v.value.count, v.value.total, v.value.unsummed) for v in got.values
            ] == [(agg.id, *expected)], (agg, flt, customer)
        # Ranked: customers with events, by value descending then id; an exact count of them.
        ranked = sorted(
            ((c, e) for c, (e, _) in per_customer.items() if e[0] > 0),
            key=lambda ce: (-Decimal(ce[1][1]), ce[0]),
        )
        ranking = usage.by_customer(org, RankingRequest(agg.id, period, take=2, skip=1))
        assert ranking.customers == len(ranked)
        assert [(c, (v.count, v.total, v.unsummed)) for c, v in ranking.rows] == ranked[1:3]
        # The time series of one customer and of all, in day buckets: dense, bucket by bucket.
        since, until = from_us(period.start_us), from_us(period.end_us)
        starts = oracle_starts("day", ZONE, since, until)
        for customer in (None, "cus_a"):
            series = usage.time_series(
                org, TimeSeriesRequest(agg.id, period, "day", customer, "Europe/Paris"), None, until
            )
            sums = [[] for _ in starts]  # type: list[list[Decimal]]
            for c, (_, listed) in per_customer.items():
                if customer is not None and c != customer:
                    continue
                for e in listed:
                    value = _expected(agg, [e])[1] if agg.operation == "sum" else "1"
                    sums[starts.index(oracle_bucket_start("day", ZONE, from_us(e.timestamp_us)))].append(
                        Decimal(value)
                    )
            assert list(series.starts) == starts
            assert series.series[0].values == [canonical(exact_sum(s)) for s in sums], (agg, customer)


# ------------------------------------------------------------------------------------------------
# Focused cases


def _one(storage: SqlStorage, events: list[NewEvent], *aggregators: Aggregator) -> str:
    org = f"org_{uuid.uuid4().hex}"
    storage.events.ingest(org, events, INGESTED_AT_US)
    for agg in aggregators:
        storage.catalog.create_aggregator(org, agg)
    return org


def test_sums_of_extreme_numbers_keep_every_digit(storage: SqlStorage) -> None:
    values: list[Any] = [1e308, 5e-324, 0.1, 0.2, -1e308, 9007199254740993.0, "7", None]
    events = [
        NewEvent("cus_a", "gb", T0 + i, properties={} if v is None else {"v": v})
        for i, v in enumerate(values)
    ]
    org = _one(storage, events, Aggregator("agg_v", "v", "gb", "sum", "v"))
    usage, _ = _make_usage(storage)
    (got,) = usage.customer_usage(org, CustomerUsageRequest("cus_a", Period(T0, T0 + DAY_US), "agg_v")).values
    # 5e-324 + 0.1 + 0.2 + 9007199254740992 (the double nearest 9007199254740993): 1e308 - 1e308 = 0.
    assert got.value.total == "9007199254740992.3" + "0" * 322 + "5"
    assert (got.value.count, got.value.unsummed) == (8, 2)
    assert float(got.value.total) == 9007199254740992.0


def test_not_found_and_invalid(storage: SqlStorage) -> None:
    org = _one(
        storage, [NewEvent("cus_a", "gb", T0)], Aggregator("agg_1", "a", "gb"), Aggregator("agg_2", "b", "gb")
    )
    storage.catalog.create_aggregator_filter(org, AggregatorFilter("flt_2", "agg_2", "f", FILTERS[0]))
    usage, _ = _make_usage(storage)
    p = Period(T0, T0 + HOUR_US)
    cases: list[tuple[Any, str]] = [
        (lambda: usage.customer_usage(org, CustomerUsageRequest("cus_x", p, "agg_x")), "customer"),
        (lambda: usage.customer_usage(org, CustomerUsageRequest("cus_a", p, "agg_x")), "aggregator"),
        (
            lambda: usage.customer_usage(
                org, CustomerUsageRequest("cus_a", Period(T0, T0 + 1, "flt_2"), "agg_1")
            ),
            "aggregator_filter",
        ),
        (
            lambda: usage.time_series(org, TimeSeriesRequest("agg_1", p, "day", "cus_x"), None, from_us(T0)),
            "customer",
        ),
        (lambda: usage.by_customer(org, RankingRequest("agg_x", p)), "aggregator"),
        (
            lambda: usage.by_customer(org, RankingRequest("agg_1", Period(T0, T0 + 1, "flt_x"))),
            "aggregator_filter",
        ),
    ]
    for call, resource in cases:
        with pytest.raises(NotFound) as info:
            call()
        assert info.value.resource == resource
    with pytest.raises(InvalidArgument, match="aggregator_filter_id"):
        usage.customer_usage(org, CustomerUsageRequest("cus_a", Period(T0, T0 + 1, "flt_2")))
    for end in (T0, T0 - 1):
        with pytest.raises(InvalidArgument, match="end_date"):
            usage.by_customer(org, RankingRequest("agg_1", Period(T0, end)))


def test_every_aggregator_a_page_at_a_time(storage: SqlStorage) -> None:
    aggregators = [Aggregator(f"agg_{i}", f"a{i}", "gb", "sum" if i % 2 else "count") for i in range(5)]
    events = [NewEvent("cus_a", "gb", T0 + i, quantity="1.5") for i in range(3)]
    org = _one(storage, events, *aggregators)
    usage, _ = _make_usage(storage)
    seen, cursor = [], ""
    while True:
        page = usage.customer_usage(
            org, CustomerUsageRequest("cus_a", Period(T0, T0 + DAY_US), limit=2, cursor=cursor)
        )
        seen += [(v.aggregator.id, v.value.count, v.value.total) for v in page.values]
        cursor = page.cursor
        if not cursor:
            break
    assert seen == [(f"agg_{i}", 3, "4.5" if i % 2 else "3") for i in range(5)]
    # A customer without events: every aggregator at zero.
    storage.catalog.create_customer(org, Customer("cus_idle"))
    page = usage.customer_usage(org, CustomerUsageRequest("cus_idle", Period(T0, T0 + DAY_US), limit=100))
    assert [(v.value.count, v.value.total) for v in page.values] == [(0, "0")] * 5
