"""Rollups (PostgreSQL): every aggregate answered from them equals the answer from the raw events,
and the rollup tables equal a recount after batches, duplicates, retries and a dimension added late.

The raw answer comes from the same database through `SqlStorage(engine, read_rollups=False)`;
tests/storage/test_contract.py and tests/logic/test_aggregate_property.py check the raw answers
themselves against independent computations.
"""

from __future__ import annotations

import datetime as dt
import itertools
import random
from collections.abc import Iterator
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from rollup_check import assert_rollups_match_events

from server.deadline import Deadline
from server.domain import AggregateQuery, Aggregator, Correction, CustomerPageQuery, EventFilters, NewEvent
from server.logic import buckets
from server.storage import rollups, schema
from server.storage.engine import make_engine
from server.storage.sql_storage import SqlStorage

postgres_only = pytest.mark.parametrize("backend", ["postgres"])

ORG = "org_r"
HOUR = 3_600_000_000
START = dt.datetime(2024, 10, 20, tzinfo=dt.UTC)  # Paris leaves summer time on 2024-10-27
DAYS = 12
NOW_US = buckets.to_us(START + dt.timedelta(days=400))
ZONES = ["UTC", "Europe/Paris", "Asia/Kolkata"]
QUANTITIES = ["1", "0.1", "0.000001", "2.5", "123456789.123456789012", "7"]


def _event(rng: random.Random, n: int) -> NewEvent:
    minute = rng.randrange(DAYS * 24 * 60)
    ts = START + dt.timedelta(minutes=minute, microseconds=rng.choice([0, 0, 1, 999_999]))
    props: dict[str, object] = {}
    if rng.random() < 0.9:
        props["region"] = rng.choice(["eu", "us", "ap", "EU", "é", "a'b"])
    choice = rng.random()
    if choice < 0.3:
        props["tier"] = rng.choice([1, 2, 2.5, 10])
    elif choice < 0.5:
        props["tier"] = rng.choice([True, False, None])
    elif choice < 0.6:
        props["tier"] = {"nested": [1, 2]}
    return NewEvent(
        customer_id=f"cus_{rng.randrange(5)}",
        metric_key=f"m{rng.randrange(4)}",
        timestamp_us=buckets.to_us(ts),
        quantity=rng.choice(QUANTITIES),
        product_id=rng.choice([None, "prod_a", "prod_b"]),
        properties=props,
        idempotency_key=f"k{n}",
    )


@pytest.fixture
def engine(db_url: str) -> Iterator[sa.Engine]:
    eng = make_engine(db_url)
    try:
        yield eng
    finally:
        eng.dispose()


def _load(engine: sa.Engine, count: int, seed: int) -> SqlStorage:
    """`count` events in batches, with retried batches and a dimension added half-way."""
    storage = SqlStorage(engine)
    rng = random.Random(seed)
    events = [_event(rng, n) for n in range(count)]
    with engine.begin() as conn:
        assert rollups.add_dimension(conn, "tier", NOW_US)
    for i in range(0, count, 97):
        batch = events[i : i + 97]
        storage.events.ingest(ORG, batch, NOW_US)
        if i % 3 == 0:  # a retry: every event a DUPLICATE, nothing counted twice
            assert {o.status for o in storage.events.ingest(ORG, batch, NOW_US)} == {"DUPLICATE"}
        if i == 97 * 2:
            with engine.begin() as conn:
                assert rollups.add_dimension(conn, "region", NOW_US)
                assert not rollups.add_dimension(conn, "region", NOW_US)
    # Another organization's events are never counted in ORG's rollups.
    storage.events.ingest("org_other", [_event(rng, n) for n in range(50)], NOW_US)
    return storage


def _query(
    bucket: str,
    zone: str,
    since: dt.datetime,
    until: dt.datetime,
    metric: str,
    group_by: str,
    filters: EventFilters,
) -> AggregateQuery:
    tz = ZoneInfo(zone)
    plan, since = buckets.plan(bucket, tz, since, until, 10_000)
    return AggregateQuery(
        since_us=buckets.to_us(since),
        until_us=buckets.to_us(until),
        bucket=bucket,  # type: ignore[arg-type]
        segments=buckets.offset_segments(tz, since, until),
        metric=metric,  # type: ignore[arg-type]
        group_by=group_by,
        filters=filters,
    )


def _answer(storage: SqlStorage, query: AggregateQuery) -> dict[tuple[str | None, int], Decimal]:
    """{(group, bucket key): exact value}, every group (top 0)."""
    answer = storage.aggregates.aggregate(ORG, query, Deadline(30.0))
    return {(answer.series[c.series][0], c.bucket_key): Decimal(c.value) for c in answer.cells}


WINDOWS = [
    (START, START + dt.timedelta(days=DAYS)),  # whole hours
    (
        START + dt.timedelta(hours=5, minutes=17),
        START + dt.timedelta(days=9, minutes=43, seconds=1),
    ),  # ragged
    (START + dt.timedelta(days=2, minutes=5), START + dt.timedelta(days=2, minutes=55)),  # inside one hour
]
FILTERS = [
    EventFilters(),
    EventFilters(metric_keys=("m1", "m3")),
    EventFilters(customer_id="cus_1"),  # not in the rollups: raw
    EventFilters(occurred_after_us=buckets.to_us(START + dt.timedelta(days=1, minutes=30))),
]


@postgres_only
def test_rollup_answers_equal_raw_answers(engine: sa.Engine) -> None:
    storage = _load(engine, 2_000, seed=7)
    raw = SqlStorage(engine, read_rollups=False)
    served = 0
    for bucket, zone, (since, until), metric, group_by, filters in itertools.product(
        ["hour", "day", "week"],
        ZONES,
        WINDOWS,
        ["count", "sum_quantity"],
        ["none", "metric_key", "dim:region", "dim:tier", "dim:absent"],
        FILTERS,
    ):
        query = _query(bucket, zone, since, until, metric, group_by, filters)
        expected = _answer(raw, query)
        assert _answer(storage, query) == expected, (bucket, zone, since, metric, group_by, filters)
        served += rollups.rollup_window(query) is not None and group_by != "dim:absent"
    assert served > 100  # the comparison above really went through the rollups
    assert assert_rollups_match_events(engine) > 0


@postgres_only
def test_rollup_answers_equal_raw_answers_after_voids(engine: sa.Engine) -> None:
    storage = _load(engine, 1_000, seed=11)
    rng = random.Random(11)
    ids = [event_id for _, event_id, _ in storage.reads.list_events(ORG, EventFilters(), None, 10_000)[0]]
    # A third of the events, and in two rounds: the second voids some of the first's again.
    voided = rng.sample(ids, len(ids) // 3)
    for batch in (voided[: len(voided) // 2], voided[len(voided) // 4 :]):
        storage.corrections.void(ORG, batch, Correction(NOW_US, "user_1", "cleanup"))
    raw = SqlStorage(engine, read_rollups=False)
    for bucket, zone, (since, until), metric, group_by, filters in itertools.product(
        ["hour", "week"],
        ["UTC", "Asia/Kolkata"],
        WINDOWS[:2],
        ["count", "sum_quantity"],
        ["none", "metric_key", "dim:region"],
        FILTERS,
    ):
        query = _query(bucket, zone, since, until, metric, group_by, filters)
        assert _answer(storage, query) == _answer(raw, query), (
            bucket,
            zone,
            since,
            metric,
            group_by,
            filters,
        )
    assert assert_rollups_match_events(engine) > 0


@postgres_only
def test_answers_come_from_the_rollup_where_one_applies(engine: sa.Engine) -> None:
    storage = _load(engine, 300, seed=3)
    raw = SqlStorage(engine, read_rollups=False)
    whole = _query("day", "Europe/Paris", *WINDOWS[0], "count", "none", EventFilters())
    kolkata = _query("day", "Asia/Kolkata", *WINDOWS[0], "count", "none", EventFilters())
    assert rollups.rollup_window(whole) is not None and rollups.rollup_window(kolkata) is None
    before = _answer(storage, whole)
    assert before == _answer(raw, whole)
    # Tamper with one rollup row: the rollup path shows it, the raw path and a non-whole-hour zone do not.
    m = schema.rollup_metric_hourly
    with engine.begin() as conn:
        hour = conn.execute(
            sa.select(sa.func.min(m.c.hour_us)).where(m.c.organization_id == ORG)
        ).scalar_one()
        conn.execute(
            sa.update(m)
            .where(m.c.organization_id == ORG, m.c.hour_us == hour)
            .values(event_count=m.c.event_count + 1000)
        )
    after = _answer(storage, whole)
    assert sum(after.values()) == sum(before.values()) + 1000
    assert _answer(raw, whole) == before
    assert _answer(storage, kolkata) == _answer(raw, kolkata)
    with pytest.raises(AssertionError, match="rollup_metric_hourly"):
        assert_rollups_match_events(engine)


@postgres_only
def test_removed_dimension_is_answered_from_events(engine: sa.Engine) -> None:
    storage = _load(engine, 300, seed=5)
    query = _query("hour", "UTC", *WINDOWS[0], "sum_quantity", "dim:region", EventFilters())
    expected = _answer(SqlStorage(engine, read_rollups=False), query)
    with engine.begin() as conn:
        assert rollups.remove_dimension(conn, "region")
        assert not rollups.remove_dimension(conn, "region")
        assert rollups.dimensions(conn) == ["tier"]
        d = schema.rollup_dimension_hourly
        assert conn.execute(sa.select(sa.func.count()).where(d.c.dim_key == "region")).scalar_one() == 0
    assert _answer(storage, query) == expected
    assert_rollups_match_events(engine)


@postgres_only
def test_customer_page_totals_from_the_rollup_equal_counts_of_events(engine: sa.Engine) -> None:
    """ListCustomerUsageEvents without property conditions counts whole hours from the customer
    rollup and the ragged ends from the events: the same totals as counting every event."""
    storage = _load(engine, 1_500, seed=11)
    windows = [*WINDOWS, (START - dt.timedelta(days=1), START)]
    # Events on and around every window's bounds: the ragged ends count, the outside does not.
    edges = [
        NewEvent(customer, metric, buckets.to_us(t) + delta)
        for customer, metric, (since, until) in itertools.product(["cus_0", "cus_3"], ["m1", "m2"], windows)
        for t in (since, until)
        for delta in (-1, 0, 1, 60_000_000)
    ]
    storage.events.ingest(ORG, edges, NOW_US)
    e = schema.events.c
    checked = 0
    with engine.connect() as conn:
        for customer, metric, (since, until) in itertools.product(["cus_0", "cus_3"], ["m1", "m2"], windows):
            agg_id = f"agg_{metric}"
            if storage.catalog.get_aggregator(ORG, agg_id) is None:
                storage.catalog.create_aggregator(ORG, Aggregator(agg_id, agg_id, metric))
            start_us, end_us = buckets.to_us(since), buckets.to_us(until)
            page = storage.reads.customer_page(
                ORG, CustomerPageQuery(customer, agg_id, None, start_us, end_us, 5, 0)
            )
            counted = conn.execute(
                sa.select(sa.func.count()).where(
                    e.organization_id == ORG,
                    e.customer_id == customer,
                    e.metric_key == metric,
                    e.timestamp_us >= start_us,
                    e.timestamp_us < end_us,
                )
            ).scalar_one()
            assert page.total == counted, (customer, metric, since, until)
            checked += counted
    assert checked > 100


def test_rollup_window() -> None:
    utc = _query("hour", "UTC", *WINDOWS[1], "count", "none", EventFilters())
    start, end = rollups.rollup_window(utc) or (0, 0)
    assert start == buckets.to_us(START + dt.timedelta(hours=6))
    assert end == buckets.to_us(START + dt.timedelta(days=9))
    for filters in (EventFilters(product_id="p"), EventFilters(subscription_id="s")):
        assert rollups.rollup_window(_query("hour", "UTC", *WINDOWS[0], "count", "none", filters)) is None
    # One customer: the customer rollup keeps metric keys, not properties.
    one = EventFilters(customer_id="c")
    for group_by in ("none", "metric_key"):
        assert rollups.rollup_window(_query("hour", "UTC", *WINDOWS[0], "count", group_by, one)) is not None
    assert rollups.rollup_window(_query("hour", "UTC", *WINDOWS[0], "count", "dim:region", one)) is None
    assert rollups.rollup_window(_query("hour", "UTC", *WINDOWS[2], "count", "none", EventFilters())) is None
    assert (
        rollups.rollup_window(_query("day", "Asia/Kolkata", *WINDOWS[0], "count", "none", EventFilters()))
        is None
    )
    paris = _query("week", "Europe/Paris", *WINDOWS[0], "count", "none", EventFilters())
    assert len(paris.segments) == 2 and rollups.rollup_window(paris) is not None
