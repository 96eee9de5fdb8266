"""AggregateUsage end to end below the RPC layer: `UsageQueries.aggregate` over a real `SqlStorage`
(SQLite and PostgreSQL, via the `storage` fixture) compared with an independent oracle written here
in plain Python and zoneinfo (it never calls server.logic.buckets).

Hypothesis draws a window around one of the 2026 DST changes of Europe/Paris and America/New_York
(partial first and last buckets included), events mostly inside it (biased to local midnights and to
the window's bounds), filters and `top`; each example then checks every bucket x metric x group_by
combination in the zone of that DST change, and every bucket x group_by for one metric in a second
zone (UTC, Asia/Kolkata or the other DST zone). Each example writes into a fresh random
organization, so examples are independent while sharing the test's database.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from aggregate_oracle import (
    OracleSeries,
    canonical,
    from_us,
    oracle_aggregate,
    oracle_bucket_start,
    oracle_starts,
    to_us,
)
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from server.domain import NewEvent
from server.errors import InvalidArgument
from server.logic.as_of import AsOf
from server.logic.cursors import CursorCodec
from server.logic.queries import AggregateRequest, AggregateResult, FilterRequest, UsageQueries
from server.storage.sql_storage import SqlStorage

UTC = dt.UTC
EPOCH = dt.datetime(1970, 1, 1, tzinfo=UTC)
US = dt.timedelta(microseconds=1)
INGESTED_AT_US = 1_900_000_000_000_000

CUSTOMERS = ["cus_a", "cus_b", "cus_c"]
PRODUCTS = ["prod_1", "prod_2"]
METRIC_KEYS = ["api.call", "storage:gb", "seats", "x-y/z"]
# Dimension values: strings (one equal to the fold key "Other", one non-ASCII), numbers, booleans, null.
DIM_VALUES: list[Any] = ["eu", "us", "", "Other", "é", 1, 2, 2.5, -3, True, False, None]
ZONES = ["UTC", "Asia/Kolkata", "Europe/Paris", "America/New_York"]
# DST changes: New York spring forward, Paris spring forward, Paris fall back, New York fall back.
ANCHORS = [
    (dt.datetime(2026, 3, 8, 7, tzinfo=UTC), "America/New_York"),
    (dt.datetime(2026, 3, 29, 1, tzinfo=UTC), "Europe/Paris"),
    (dt.datetime(2026, 10, 25, 1, tzinfo=UTC), "Europe/Paris"),
    (dt.datetime(2026, 11, 1, 6, tzinfo=UTC), "America/New_York"),
]
# Local midnights as UTC hours, summer and winter time.
MIDNIGHT_UTC_HOURS = {"Europe/Paris": [22, 23], "America/New_York": [4, 5]}
SPREAD_US = 9 * 86_400_000_000  # events and windows within +-9 days of the anchor
HALF_HOUR_US = 1_800_000_000
HOUR_US = 2 * HALF_HOUR_US
DAY_US = 24 * HOUR_US


# ------------------------------------------------------------------------------------------------
# Strategies


def _quantity(eighths: int) -> str:
    # Multiples of 1/8: many equal totals, so ties (broken by key) are common.
    return canonical(Decimal(eighths) / 8)


def _wide_quantity(negative: bool, integer: int, fraction: int, fraction_digits: int) -> str:
    """Up to 24 integer and 12 fractional digits, either sign: no double holds these exactly."""
    fraction %= 10**fraction_digits
    d = Decimal(integer) + Decimal(fraction).scaleb(-fraction_digits)
    return canonical(-d if negative else d)


QUANTITIES = st.one_of(
    st.integers(0, 8 * 10**6).map(_quantity),
    st.integers(0, 40).map(_quantity),
    st.builds(
        _wide_quantity,
        st.booleans(),
        st.integers(0, 10**24 - 1) | st.integers(0, 10),
        st.integers(0, 10**12 - 1),
        st.integers(0, 12),
    ),
)


@st.composite
def scenarios(draw: st.DrawFn) -> dict[str, Any]:
    anchor_at, anchor_zone = draw(st.sampled_from(ANCHORS))
    anchor = to_us(anchor_at)
    # Every example checks the zone whose DST change the anchor is, and one more drawn zone.
    other_zone = draw(st.sampled_from([z for z in ZONES if z != anchor_zone]))
    time_zones = [anchor_zone, other_zone]
    utc_midnight = to_us(anchor_at.replace(hour=0))

    def near_midnight(first_day: int, last_day: int) -> st.SearchStrategy[int]:
        return st.builds(
            lambda day, hour, delta: utc_midnight + day * DAY_US + hour * HOUR_US + delta,
            st.integers(first_day, last_day),
            st.sampled_from(MIDNIGHT_UTC_HOURS[anchor_zone]),
            st.sampled_from([0, 1, -1, HALF_HOUR_US, -HALF_HOUR_US]),
        )

    anywhere = st.one_of(
        st.integers(-SPREAD_US, SPREAD_US).map(lambda d: anchor + d),
        st.integers(-SPREAD_US // HALF_HOUR_US, SPREAD_US // HALF_HOUR_US).map(
            lambda k: anchor + k * HALF_HOUR_US
        ),
        near_midnight(-9, 9),
    )
    # The window first: around the DST change (bounds often mid-bucket), or anywhere near it.
    if draw(st.booleans()):
        since_us = draw(st.integers(anchor - SPREAD_US, anchor) | near_midnight(-9, -1))
        until_us = draw(st.integers(anchor + 1, anchor + SPREAD_US) | near_midnight(1, 9))
    else:
        a, b = draw(anywhere), draw(anywhere)
        if a == b:
            b = a + 1
        since_us, until_us = min(a, b), max(a, b)
    # Events: mostly inside the window, some on and just outside its bounds, some anywhere.
    instant = st.one_of(
        st.integers(since_us, until_us - 1),
        near_midnight(-9, 9).map(lambda t: min(max(t, since_us), until_us - 1)),
        st.sampled_from([since_us, since_us - 1, until_us - 1, until_us]),
        anywhere,
    )
    properties = st.fixed_dictionaries(
        {},
        optional={
            "region": st.sampled_from(DIM_VALUES),
            "name": st.sampled_from(["a", "b"]),
            # Many values: most series of dim:u are folded into Other.
            "u": st.integers(0, 40).map(lambda i: f"u{i}"),
        },
    )
    event = st.builds(
        NewEvent,
        customer_id=st.sampled_from(CUSTOMERS),
        metric_key=st.sampled_from(METRIC_KEYS),
        timestamp_us=instant,
        quantity=QUANTITIES,
        product_id=st.none() | st.sampled_from(PRODUCTS),
        properties=properties,
    )
    events = draw(st.lists(event, min_size=8, max_size=40))
    # Some events share a timestamp exactly.
    if draw(st.booleans()):
        events.append(dataclass_replace_ts(events[0], draw(st.sampled_from(events)).timestamp_us))
    # Often, events one microsecond either side of both bounds (only since and until - 1 count).
    if draw(st.integers(0, 2)) > 0:
        for i, ts in enumerate((since_us - 1, since_us, until_us - 1, until_us)):
            events.append(dataclasses.replace(events[i], timestamp_us=ts))
    pieces = st.lists(st.sampled_from([*METRIC_KEYS, "", " ", "unknown.key"]), min_size=1, max_size=3).map(
        ",".join
    )
    return {
        "events": events,
        "time_zones": time_zones,
        "second_metric": draw(st.sampled_from(["count", "sum_quantity"])),
        "since_us": since_us,
        "until_us": until_us,
        "until_given": draw(st.booleans()),  # else until is left to default to `now`
        "top": draw(st.integers(0, 4)),
        "defaults": draw(st.booleans()),  # metric "count" / group_by "none" sent as ""
        # Filters: mostly absent, so that most examples aggregate many events.
        "customer_id": draw(st.sampled_from([None, None, None, *CUSTOMERS, "cus_unknown"])),
        "product_id": draw(st.sampled_from([None, None, None, *PRODUCTS])),
        "metric_key": tuple(draw(st.lists(pieces, max_size=2))) if draw(st.integers(0, 2)) == 0 else (),
    }


def dense_scenario(anchor_index: int, second_zone: str) -> dict[str, Any]:
    """An explicit example: events every 20 minutes (and at local midnight +-1 us) for three days
    either side of a DST change, a window with partial first and last buckets around it."""
    anchor_at, anchor_zone = ANCHORS[anchor_index]
    anchor = to_us(anchor_at)
    events: list[NewEvent] = []
    for i, ts in enumerate(range(anchor - 3 * DAY_US, anchor + 3 * DAY_US, HOUR_US // 3)):
        events.append(
            NewEvent(
                customer_id=CUSTOMERS[i % 3],
                metric_key=METRIC_KEYS[i % 4],
                timestamp_us=ts + i % 7,
                quantity=_quantity(i % 29),
                product_id=PRODUCTS[i % 2] if i % 5 else None,
                properties={"region": DIM_VALUES[i % len(DIM_VALUES)]} if i % 11 else {},
            )
        )
    midnight = to_us(anchor_at.replace(hour=0))
    for day in range(-3, 4):
        for hour in MIDNIGHT_UTC_HOURS[anchor_zone]:
            for delta in (-1, 0, 1):
                ts = midnight + day * DAY_US + hour * HOUR_US + delta
                events.append(NewEvent("cus_a", "seats", ts, "0.5"))
    return {
        "events": events,
        "time_zones": [anchor_zone, second_zone],
        "second_metric": "sum_quantity",
        "since_us": anchor - 2 * DAY_US - 7 * 60_000_000,
        "until_us": anchor + 2 * DAY_US + 11 * 60_000_000,
        "until_given": anchor_index % 2 == 0,
        "top": anchor_index + 1,
        "defaults": False,
        "customer_id": None,
        "product_id": None,
        "metric_key": (),
    }


def dataclass_replace_ts(e: NewEvent, ts: int) -> NewEvent:
    return dataclasses.replace(e, timestamp_us=ts, metric_key=METRIC_KEYS[0])


# ------------------------------------------------------------------------------------------------
# Comparison


def assert_matches(
    got: AggregateResult,
    starts: list[dt.datetime],
    series: list[OracleSeries],
    since: dt.datetime,
    until: dt.datetime,
    context: str,
) -> None:
    assert got.since == since, context
    assert got.until == until, context
    assert list(got.starts) == starts, context
    assert [(s.key, s.other) for s in got.series] == [(s.key, s.other) for s in series], context
    # Exact: every value and total is the canonical string of the exact decimal result.
    for g, o in zip(got.series, series, strict=True):
        assert len(g.values) == len(starts), context  # dense: one point per bucket
        assert g.values == [canonical(v) for v in o.values], (context, g, o)
        assert g.total == canonical(o.total), (context, g.key, g.total, o.total)
    if series:
        totals = [Decimal(g.total) for g in got.series if not g.other]
        assert totals == sorted(totals, reverse=True), context


def queries_for(storage: SqlStorage, max_buckets: int = 1000) -> UsageQueries:
    cursors = CursorCodec("x")
    return UsageQueries(
        storage, cursors, max_aggregate_buckets=max_buckets, as_of=AsOf(storage, horizon_days=400)
    )


def new_org() -> str:
    return f"org_{uuid.uuid4().hex}"


# ------------------------------------------------------------------------------------------------
# The property


@settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(sc=scenarios())
@example(sc=dense_scenario(0, "Europe/Paris"))
@example(sc=dense_scenario(1, "America/New_York"))
@example(sc=dense_scenario(2, "Asia/Kolkata"))
@example(sc=dense_scenario(3, "UTC"))
def test_aggregate_matches_oracle(storage: SqlStorage, sc: dict[str, Any]) -> None:
    org = new_org()
    events: list[NewEvent] = sc["events"]
    if events:
        outcomes = storage.events.ingest(org, events, INGESTED_AT_US)
        assert [o.status for o in outcomes] == ["ACCEPTED"] * len(events)
    q = queries_for(storage)
    since = from_us(sc["since_us"])
    until = from_us(sc["until_us"])
    metric_keys = {p.strip() for v in sc["metric_key"] for p in v.split(",") if p.strip()}
    in_window = sum(sc["since_us"] <= e.timestamp_us < sc["until_us"] for e in events)
    event(f"events in the window: {'0' if not in_window else '1-5' if in_window <= 5 else '6+'}")
    event(f"filtered: {bool(sc['customer_id'] or sc['product_id'] or metric_keys)}")
    event(f"time zones: {sc['time_zones']}")
    for i, zone_name in enumerate(sc["time_zones"]):
        tz = ZoneInfo(zone_name)
        # The anchor's zone gets both metrics; the second zone one drawn metric (keeps the run short).
        metrics = ("count", "sum_quantity") if i == 0 else (sc["second_metric"],)
        for bucket in ("hour", "day", "week", "month"):
            bucket_starts = oracle_starts(bucket, tz, since, until)
            for metric in metrics:
                for group_by in ("none", "metric_key", "dim:region", "dim:u"):
                    req = AggregateRequest(
                        bucket=bucket,
                        since_us=sc["since_us"],
                        until_us=sc["until_us"] if sc["until_given"] else None,
                        filters=FilterRequest(
                            customer_id=sc["customer_id"],
                            product_id=sc["product_id"],
                            metric_key=sc["metric_key"],
                        ),
                        metric="" if sc["defaults"] and metric == "count" else metric,
                        group_by="" if sc["defaults"] and group_by == "none" else group_by,
                        top=sc["top"],
                        time_zone="" if sc["defaults"] and zone_name == "UTC" else zone_name,
                    )
                    # An explicit until wins over `now`; otherwise until is `now`.
                    now = from_us(sc["until_us"] + 3 * DAY_US) if sc["until_given"] else until
                    got = q.aggregate(org, req, None, now=now)
                    assert (got.bucket, got.metric, got.group_by) == (bucket, metric, group_by)
                    starts, series = oracle_aggregate(
                        events,
                        bucket=bucket,
                        tz=tz,
                        since=since,
                        until=until,
                        metric=metric,
                        group_by=group_by,
                        top=sc["top"],
                        customer_id=sc["customer_id"],
                        product_id=sc["product_id"],
                        metric_keys=metric_keys,
                        starts=bucket_starts,
                    )
                    assert_matches(
                        got, starts, series, since, until, f"{zone_name}/{bucket}/{metric}/{group_by}"
                    )


# ------------------------------------------------------------------------------------------------
# Focused cases


def z(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


def ev(ts: dt.datetime, metric: str = "api.call", quantity: str = "1", **props: Any) -> NewEvent:
    return NewEvent(
        customer_id="cus_a", metric_key=metric, timestamp_us=to_us(ts), quantity=quantity, properties=props
    )


def aggregate(
    storage: SqlStorage,
    org: str,
    since: dt.datetime,
    until: dt.datetime | None,
    now: dt.datetime,
    max_buckets: int = 1000,
    **kw: Any,
) -> AggregateResult:
    req = AggregateRequest(
        since_us=to_us(since),
        until_us=None if until is None else to_us(until),
        filters=FilterRequest(),
        **kw,
    )
    return queries_for(storage, max_buckets).aggregate(org, req, None, now=now)


def test_bucket_cap_keeps_until_and_moves_since(storage: SqlStorage) -> None:
    org = new_org()
    # One event per hour from 00:10Z to 09:10Z, plus one exactly on each hour from 00:00Z.
    events = [ev(z(f"2026-03-10T{h:02d}:10"), quantity=str(h)) for h in range(10)]
    events += [ev(z(f"2026-03-10T{h:02d}:00")) for h in range(10)]
    storage.events.ingest(org, events, INGESTED_AT_US)
    since, until = z("2026-03-10T00:30"), z("2026-03-10T09:45")
    got = aggregate(
        storage, org, since, until, now=until, max_buckets=3, bucket="hour", metric="sum_quantity"
    )
    assert got.since == z("2026-03-10T07:00")  # moved to the first bucket kept
    assert got.until == until
    assert got.starts == (z("2026-03-10T07:00"), z("2026-03-10T08:00"), z("2026-03-10T09:00"))
    assert [(s.key, s.values, s.total) for s in got.series] == [("", ["8", "9", "10"], "27")]
    # Uncapped, the same window has 10 buckets and the event at 00:00Z and 00:10Z (before since) do not count.
    got = aggregate(storage, org, since, until, now=until, bucket="hour")
    assert got.since == since and len(got.starts) == 10
    assert got.series[0].values == ["0"] + ["2"] * 9
    # until defaults to now, and the cap counts back from it.
    got = aggregate(storage, org, since, None, now=z("2026-03-10T05:00"), max_buckets=2, bucket="hour")
    assert (got.since, got.until) == (z("2026-03-10T03:00"), z("2026-03-10T05:00"))
    assert got.series[0].values == ["2", "2"]


def test_bucket_cap_over_a_dst_day(storage: SqlStorage) -> None:
    org = new_org()
    paris = ZoneInfo("Europe/Paris")
    days = [dt.datetime(2026, 10, d, 12, tzinfo=paris) for d in range(20, 28)]
    storage.events.ingest(
        org, [ev(d.astimezone(UTC)) for d in days] + [ev(z("2026-10-25T22:30"))], INGESTED_AT_US
    )
    since, until = z("2026-10-19T22:00"), z("2026-10-27T23:00")  # Paris days 20..27 (8)
    got = aggregate(
        storage, org, since, until, now=until, max_buckets=3, bucket="day", time_zone="Europe/Paris"
    )
    assert got.starts == (z("2026-10-24T22:00"), z("2026-10-25T23:00"), z("2026-10-26T23:00"))
    assert got.since == z("2026-10-24T22:00") and got.until == until
    # 2026-10-25T22:30Z is 23:30 on the 25th in Paris (CET): the 25-hour day holds it.
    assert got.series[0].values == ["2", "1", "1"]


def test_invalid_time_zone(storage: SqlStorage) -> None:
    for name in ("Mars/Olympus_Mons", "Europe/Pariss", "UTC+1"):
        with pytest.raises(InvalidArgument) as info:
            aggregate(
                storage,
                new_org(),
                z("2026-01-01T00:00"),
                z("2026-01-02T00:00"),
                now=z("2026-01-03T00:00"),
                bucket="day",
                time_zone=name,
            )
        assert info.value.violations[0].field == "time_zone"


def test_until_not_after_since(storage: SqlStorage) -> None:
    t = z("2026-01-01T00:00")
    for until, now in ((t, t), (None, t), (None, t - US)):
        with pytest.raises(InvalidArgument) as info:
            aggregate(storage, new_org(), t, until, now=now, bucket="day")
        assert info.value.violations[0].field == "until"


def test_fold_other_and_ties(storage: SqlStorage) -> None:
    org = new_org()
    t = z("2026-05-04T10:00")  # a Monday
    events = (
        [ev(t, region="b")] * 3
        + [ev(t, region="a")] * 3  # ties with "b": key ascending puts "a" first
        + [ev(t + dt.timedelta(hours=1), region="Other")] * 2  # a real series named "Other"
        + [
            ev(t, region="c"),
            ev(t + dt.timedelta(hours=2), region=7),
            ev(t, metric="seats"),
        ]  # 7, and "" (missing)
    )
    storage.events.ingest(org, events, INGESTED_AT_US)
    since, until = z("2026-05-04T10:00"), z("2026-05-04T13:00")
    got = aggregate(storage, org, since, until, now=until, bucket="hour", group_by="dim:region", top=3)
    assert [(s.key, s.other, s.values) for s in got.series] == [
        ("a", False, ["3", "0", "0"]),
        ("b", False, ["3", "0", "0"]),
        ("Other", False, ["0", "2", "0"]),
        ("Other", True, ["2", "0", "1"]),  # "" (1 at 10:00), "7" (at 12:00), "c" (at 10:00)
    ]
    got = aggregate(storage, org, since, until, now=until, bucket="hour", group_by="dim:region", top=0)
    assert [s.key for s in got.series] == ["a", "b", "Other", "", "7", "c"]
    assert not any(s.other for s in got.series)
    # Grouped with nothing in the window: no series; ungrouped: one all-zero series.
    empty_until = z("2026-05-04T09:00")
    got = aggregate(
        storage,
        org,
        z("2026-05-04T07:00"),
        empty_until,
        now=empty_until,
        bucket="hour",
        group_by="metric_key",
    )
    assert got.series == []
    got = aggregate(storage, org, z("2026-05-04T07:00"), empty_until, now=empty_until, bucket="hour")
    assert [(s.key, s.other, s.values, s.total) for s in got.series] == [("", False, ["0", "0"], "0")]


def test_sum_quantity_decimal_values(storage: SqlStorage) -> None:
    org = new_org()
    t = z("2026-05-04T10:00")
    quantities = ["0.1", "0.2", "0.3", "123456789.123456", "0.000001"]
    storage.events.ingest(org, [ev(t, quantity=q) for q in quantities], INGESTED_AT_US)
    got = aggregate(storage, org, t, t + dt.timedelta(hours=1), now=t, bucket="hour", metric="sum_quantity")
    assert sum(Decimal(q) for q in quantities) == Decimal("123456789.723457")
    assert got.series[0].values[0] == got.series[0].total == "123456789.723457"


@pytest.mark.parametrize(
    ("value", "key"),
    [
        ("eu", "eu"),
        (12, "12"),
        (-3, "-3"),
        (2.5, "2.5"),
        (True, "true"),
        (False, "false"),
        (None, ""),
        ("", ""),
    ],
)
def test_dimension_keys_are_json_text(storage: SqlStorage, value: Any, key: str) -> None:
    org = new_org()
    t = z("2026-05-04T10:00")
    storage.events.ingest(org, [ev(t, region=value)], INGESTED_AT_US)
    got = aggregate(storage, org, t, t + dt.timedelta(hours=1), now=t, bucket="hour", group_by="dim:region")
    assert [s.key for s in got.series] == [key]


def test_half_hour_dst_hour_and_day_buckets(storage: SqlStorage) -> None:
    """Australia/Lord_Howe shifts by 30 minutes: the bucket after a shift starts at the shift."""
    org = new_org()
    lord_howe = "Australia/Lord_Howe"
    fall = [
        z("2026-04-04T14:10"),
        z("2026-04-04T14:40"),
        z("2026-04-04T15:00"),
        z("2026-04-04T15:10"),
        z("2026-04-04T15:40"),
    ]
    spring = [z("2026-10-03T15:10"), z("2026-10-03T15:30"), z("2026-10-03T15:40"), z("2026-10-03T16:10")]
    storage.events.ingest(org, [ev(t) for t in fall + spring], INGESTED_AT_US)
    # Fall back at 15:00Z: 01:00 +11 (14:00Z..15:00Z), 01:30 +10:30 (15:00Z..15:30Z), 02:00 +10:30.
    until = z("2026-04-04T16:30")
    got = aggregate(storage, org, z("2026-04-04T14:00"), until, now=until, bucket="hour", time_zone=lord_howe)
    assert got.starts == (z("2026-04-04T14:00"), z("2026-04-04T15:00"), z("2026-04-04T15:30"))
    assert got.series[0].values == ["2", "2", "1"]
    # Spring forward at 15:30Z: 01:00 +10:30 (14:30Z..15:30Z), 02:30 +11 (15:30Z..16:00Z), 03:00 +11.
    until = z("2026-10-03T17:00")
    got = aggregate(storage, org, z("2026-10-03T14:30"), until, now=until, bucket="hour", time_zone=lord_howe)
    assert got.starts == (z("2026-10-03T14:30"), z("2026-10-03T15:30"), z("2026-10-03T16:00"))
    assert got.series[0].values == ["1", "2", "1"]
    # Days: Sunday 2026-04-05 lasts 24.5 h (13:00Z..13:30Z next day), Sunday 2026-10-04 23.5 h.
    until = z("2026-10-05T13:00")
    got = aggregate(storage, org, z("2026-04-03T13:00"), until, now=until, bucket="day", time_zone=lord_howe)
    starts = list(got.starts)
    i = starts.index(z("2026-04-04T13:00"))
    assert starts[i + 1] - starts[i] == dt.timedelta(hours=24, minutes=30)
    j = starts.index(z("2026-10-03T13:30"))
    assert starts[j + 1] - starts[j] == dt.timedelta(hours=23, minutes=30)
    assert got.series[0].values[i] == "5" and got.series[0].values[j] == "4"
    assert got.series[0].total == "9"


@pytest.mark.parametrize("bucket", ["hour", "day", "week", "month"])
@pytest.mark.parametrize("zone_name", ["America/New_York", "Asia/Kolkata", "Europe/Paris"])
def test_window_at_the_extremes(storage: SqlStorage, bucket: str, zone_name: str) -> None:
    """since = 1970-01-01T00:00Z (the first bucket starts before the epoch west of UTC) and
    until = 9000-01-01T00:00Z (the last local day/week reaches past it east of UTC)."""
    tz = ZoneInfo(zone_name)
    org = new_org()
    first, last = z("1970-01-01T00:00"), z("9000-01-01T00:00")
    early = [first, first + dt.timedelta(hours=3, minutes=59), first + dt.timedelta(days=3)]
    late = [last - dt.timedelta(days=2), last - dt.timedelta(hours=5, minutes=31), last - US]
    storage.events.ingest(org, [ev(t) for t in early + late], INGESTED_AT_US)
    for since, until, instants in (
        (first, first + dt.timedelta(days=9), early),
        (last - dt.timedelta(days=9), last, late),
    ):
        got = aggregate(storage, org, since, until, now=until, bucket=bucket, time_zone=zone_name)
        starts = oracle_starts(bucket, tz, since, until)
        assert list(got.starts) == starts
        expected = [0] * len(starts)
        for t in instants:
            expected[starts.index(oracle_bucket_start(bucket, tz, t))] += 1
        assert got.series[0].values == [str(n) for n in expected]


@pytest.mark.parametrize("zone_name", ["UTC", "Europe/Paris", "Asia/Kolkata", "America/New_York"])
def test_month_buckets_over_a_year(storage: SqlStorage, zone_name: str) -> None:
    """One event at the first and the last microsecond of each local month of 2026 (and one just
    before and after the year): twelve dense buckets of two each, whatever the DST changes."""
    tz = ZoneInfo(zone_name)
    org = new_org()
    starts = [dt.datetime(2026, m, 1, tzinfo=tz).astimezone(UTC) for m in range(1, 13)]
    end = dt.datetime(2027, 1, 1, tzinfo=tz).astimezone(UTC)
    instants = [t for a, b in zip(starts, [*starts[1:], end], strict=True) for t in (a, b - US)]
    storage.events.ingest(
        org, [ev(t, quantity="0.5") for t in [*instants, starts[0] - US, end]], INGESTED_AT_US
    )
    for metric, per_month in (("count", "2"), ("sum_quantity", "1")):
        got = aggregate(
            storage, org, starts[0], end, now=end, bucket="month", time_zone=zone_name, metric=metric
        )
        assert list(got.starts) == starts
        assert got.series[0].values == [per_month] * 12
    # The bucket cap counts months: three kept, the window's start moved to the 1st of October.
    got = aggregate(storage, org, starts[0], end, now=end, max_buckets=3, bucket="month", time_zone=zone_name)
    assert list(got.starts) == starts[-3:] and got.since == starts[9]
    assert got.series[0].values == ["2", "2", "2"]


def test_top_defaults_to_eight(storage: SqlStorage) -> None:
    org = new_org()
    t = z("2026-05-04T10:00")
    # Group "g<n>" has n events: g10 .. g1, ten series.
    storage.events.ingest(
        org, [ev(t, region=f"g{n:02d}") for n in range(1, 11) for _ in range(n)], INGESTED_AT_US
    )
    until = t + dt.timedelta(hours=1)
    got = aggregate(storage, org, t, until, now=until, bucket="day", group_by="dim:region")
    assert [(s.key, s.other, s.total) for s in got.series] == [
        *((f"g{n:02d}", False, str(n)) for n in range(10, 2, -1)),
        ("Other", True, "3"),  # g02 + g01
    ]
