"""AggregateUsage is billing-exact over the wire, on SQLite and PostgreSQL (rollups included).

Events go in through IngestUsageEvents and the answers come back through AggregateUsage on a real
channel; an independent oracle (tests/aggregate_oracle.py, decimal.Decimal) computes what every
answer must be, and each is compared for EQUALITY, no tolerance: every point's `exact_value` and
every series' `exact_total` is the canonical string of the exact decimal result, and `value` and
`total` are the doubles nearest to it (Python's float(Decimal) rounds correctly), never sums of
doubles. Quantities reach 24 integer and 12 fractional digits, either sign; `dim:u` has dozens of
values, so most series are folded into `Other`; buckets are hours, days and weeks in Europe/Paris
around a DST change (rollup path and raw path both, on PostgreSQL: `u` is a rolled-up dimension
there, `region` is not).
"""

from __future__ import annotations

import datetime as dt
import itertools
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from aggregate_oracle import EXACT, canonical, exact_sum, oracle_aggregate, to_us
from grpc_harness import Harness, event, to_dt, ts
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from usage.v1 import usage_service_pb2 as pb

from server.domain import NewEvent
from server.storage import rollups

UTC = dt.UTC
PARIS = ZoneInfo("Europe/Paris")
# The window: a week around Paris' fall-back night (2026-10-25, 01:00Z), bounds mid-hour.
SINCE = dt.datetime(2026, 10, 21, 21, 17, tzinfo=UTC)
UNTIL = dt.datetime(2026, 10, 28, 9, 43, 1, tzinfo=UTC)
SPAN_US = to_us(UNTIL) - to_us(SINCE)
BIG = "9" * 24 + "." + "9" * 12


@pytest.fixture
def harness(db_url: str) -> Iterator[Harness]:
    h = Harness.start(db_url)
    if h.storage.db.dialect.keeps_rollups:
        with h.storage.db.write() as conn:
            rollups.add_dimension(conn, "u", 0)
    try:
        yield h
    finally:
        h.close()


def decimal_text(negative: bool, integer: int, fraction: int, digits: int) -> str:
    d = Decimal(integer) + Decimal(fraction % 10**digits).scaleb(-digits)
    return canonical(-d if negative else d)


QUANTITY = st.one_of(
    st.sampled_from(["1", "0.1", "0.2", "0.3", "2.5", BIG, "-" + BIG, "0.000000000001"]),
    st.builds(
        decimal_text,
        st.booleans(),
        st.integers(0, 10**24 - 1) | st.integers(0, 1000),
        st.integers(0, 10**12 - 1),
        st.integers(0, 12),
    ),
)
EVENT = st.fixed_dictionaries(
    {
        "offset": st.integers(-3_600_000_000, SPAN_US + 3_600_000_000),
        "quantity": QUANTITY,
        "metric": st.sampled_from(["api.call", "tokens", "gb"]),
        # Many values (most series folded into Other), or a few (series of many points).
        "u": st.integers(0, 60) | st.integers(0, 3),
        "region": st.sampled_from(["eu", "us", None]),
    }
)


def to_new_event(spec: dict[str, Any]) -> NewEvent:
    props: dict[str, Any] = {"u": f"u{spec['u']:02d}"}
    if spec["region"] is not None:
        props["region"] = spec["region"]
    return NewEvent(
        "cus_1", spec["metric"], to_us(SINCE) + spec["offset"], spec["quantity"], properties=props
    )


def check_answer(got: pb.AggregateUsageResponse, events: list[NewEvent], **query: Any) -> None:
    starts, series = oracle_aggregate(
        events,
        tz=PARIS,
        since=SINCE,
        until=UNTIL,
        customer_id=None,
        product_id=None,
        metric_keys=set(),
        **query,
    )
    context = str(query)
    assert [(s.key, s.other) for s in got.series] == [(s.key, s.other) for s in series], context
    for g, o in zip(got.series, series, strict=True):
        assert [to_dt(p.start) for p in g.points] == starts, context
        assert [p.exact_value for p in g.points] == [canonical(v) for v in o.values], (context, g.key)
        # The double nearest to the exact value: the same object float() makes of the Decimal.
        assert [p.value for p in g.points] == [float(v) for v in o.values], (context, g.key)
        assert (g.exact_total, g.total) == (canonical(o.total), float(o.total)), (context, g.key)


@settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(specs=st.lists(EVENT, min_size=1, max_size=60), top=st.sampled_from([0, 1, 3, 8]))
@example(
    # A bucket where the widest quantities cancel exactly is "0"; in the same series, buckets of
    # 0.1, 0.2 and 0.3 total 0.6 (a sum of their doubles is 0.6000000000000001), in every bucket size.
    specs=[
        {"offset": 10, "quantity": BIG, "metric": "api.call", "u": 1, "region": "eu"},
        {"offset": 20, "quantity": "-" + BIG, "metric": "api.call", "u": 1, "region": "eu"},
        {"offset": 30, "quantity": "0.1", "metric": "tokens", "u": 1, "region": "us"},
        {"offset": 86_400_000_000, "quantity": "0.2", "metric": "tokens", "u": 1, "region": "us"},
        {"offset": 6 * 86_400_000_000, "quantity": "0.3", "metric": "gb", "u": 1, "region": "us"},
    ],
    top=1,
)
def test_aggregate_values_and_totals_are_exact(
    harness: Harness, specs: list[dict[str, Any]], top: int
) -> None:
    client = harness.client(f"org_{uuid.uuid4().hex}")
    events = [to_new_event(s) for s in specs]
    client.ingest_ok(
        event(
            customer_id=e.customer_id,
            metric_key=e.metric_key,
            timestamp=dt.datetime(1970, 1, 1, tzinfo=UTC) + dt.timedelta(microseconds=e.timestamp_us),
            quantity=e.quantity,
            properties=e.properties,
        )
        for e in events
    )
    for bucket, metric, group_by in itertools.product(
        ["hour", "day", "week"], ["sum_quantity", "count"], ["dim:u", "dim:region", "metric_key", "none"]
    ):
        got = client.usage.AggregateUsage(
            pb.AggregateUsageRequest(
                bucket=bucket,
                since=ts(SINCE),
                until=ts(UNTIL),
                metric=metric,
                group_by=group_by,
                top=top,
                time_zone="Europe/Paris",
            )
        )
        check_answer(got, events, bucket=bucket, metric=metric, group_by=group_by, top=top)


def test_totals_of_many_widest_quantities_keep_every_digit(harness: Harness) -> None:
    """1,000 quantities of 24 + 12 digits: a total no double holds, exact in the strings."""
    client = harness.client(f"org_{uuid.uuid4().hex}")
    quantity = "123456789012345678901234.123456789012"
    client.ingest_ok(
        event(
            timestamp=SINCE + dt.timedelta(seconds=i), quantity=quantity, properties={"u": f"u{i % 40:02d}"}
        )
        for i in range(1000)
    )
    got = client.usage.AggregateUsage(
        pb.AggregateUsageRequest(
            bucket="week", since=ts(SINCE), until=ts(UNTIL), metric="sum_quantity", group_by="dim:u", top=3
        )
    )
    assert [s.key for s in got.series] == ["u00", "u01", "u02", "Other"]
    assert exact_sum(Decimal(s.exact_total) for s in got.series) == EXACT.multiply(Decimal(quantity), 1000)
    other = got.series[-1]
    folded = EXACT.multiply(Decimal(quantity), 25 * 37)
    assert other.other and other.exact_total == "114197529836419752983641564.1975298361" == canonical(folded)
    assert other.total == float(folded)
