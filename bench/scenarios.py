"""The query scenarios: for each, the RPC request sent to the service (and to the bare server),
the same question as hand-written SQL (the database baseline), and a check that both answered
the same (so a fast wrong answer cannot pass for a fast right one).

All scenarios query the big organization (a third of all events). Windows end at the first full
hour after the newest event (`end_us`), so they cover the data set whatever the day of the run.

SQL baselines are written the obvious way, straight on the `events` table:
- lists: SELECT <all columns> ... ORDER BY timestamp_us DESC, id DESC LIMIT n with the same filters;
- ListCustomerUsageEvents: count(*) of the window, then the page (LIMIT take OFFSET skip);
- AggregateUsage: GROUP BY over raw events, buckets with date_trunc(unit, to_timestamp(..), zone);
  no top-N folding (the database returns every group).

AggregateUsage scenarios come twice: as dashboards send them (the same request again: answered
from the answer cache while the data is unchanged), and "fresh" (`until` one microsecond later at
each call, so every call computes its answer: the cost of a first view).
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any

from google.protobuf import timestamp_pb2
from usage.v1 import usage_service_pb2 as pb

from bench import dataset as d

HOUR_US = 3_600_000_000
DAY_US = 24 * HOUR_US
AGGREGATOR_ID = "agg_bench_api_calls"
# The same metric with a property filter of its own: its customer pages count events, not rollups.
FILTERED_AGGREGATOR_ID = "agg_bench_api_get"
FILTERED_AGGREGATOR_EQUALS = ("method", "GET")
ROW_COLUMNS = (
    "organization_id, id, customer_id, metric_key, timestamp_us, ingested_at_us, quantity, product_id, "
    "subscription_id, price_key, idempotency_key, external_cost_amount, external_cost_currency, "
    "wallet_currency, properties"
)

Rows = list[Sequence[Any]]
Check = Callable[[Any, list[Rows]], str | None]


@dataclasses.dataclass
class Scenario:
    name: str
    group: str  # "list" | "customer" | "aggregate"
    method: str  # the UsageService RPC
    request: Any
    sql: list[tuple[str, tuple[Any, ...]]]  # statements run in order by one baseline call
    check: Check
    note: str = ""
    # When set, the service gets a new request from it at each call (instead of `request`).
    request_for: Callable[[], Any] | None = None
    # When set, the request is asked as of a moment the service gave out (set by the driver before
    # any call: the as_of of a current answer, as a caller passes it back for the next page).
    as_of: bool = False


def ts(us: int) -> timestamp_pb2.Timestamp:
    seconds, micros = divmod(us, 1_000_000)
    return timestamp_pb2.Timestamp(seconds=seconds, nanos=micros * 1000)


def window_end(data_end_us: int) -> int:
    """The first full hour after the newest event."""
    return (data_end_us // HOUR_US + 1) * HOUR_US


# ---- checks -----------------------------------------------------------------------------------
def _same_ids(response: Any, rows: list[Rows]) -> str | None:
    got = [e.id for e in response.data]
    want = [r[1] for r in rows[-1]]
    return None if got == want else f"ids differ: service {got[:3]}..., SQL {want[:3]}..."


def _same_total_and_ids(response: Any, rows: list[Rows]) -> str | None:
    if response.meta.total != rows[0][0][0]:
        return f"total differs: service {response.meta.total}, SQL {rows[0][0][0]}"
    return _same_ids(response, rows)


def _same_sum(response: Any, rows: list[Rows]) -> str | None:
    """The exact sum of every series' exact total equals SQL's exact sum of every bucket."""
    got = sum((Decimal(s.exact_total) for s in response.series), Decimal(0))
    want = sum((Decimal(r[2] or 0) for r in rows[0]), Decimal(0))
    return None if got == want else f"sum of all buckets differs: service {got}, SQL {want}"


# ---- ListUsageEvents --------------------------------------------------------------------------
def _list(name: str, note: str = "", limit: int = 25, **filters: Any) -> Scenario:
    where = ["organization_id = %s"]
    params: list[Any] = [d.BIG_ORG]
    request = pb.ListUsageEventsRequest(limit=limit)
    for column in ("customer_id", "product_id"):
        if column in filters:
            where.append(f"{column} = %s")
            params.append(filters[column])
            setattr(request, column, filters[column])
    if "metric_key" in filters:
        where.append("metric_key = %s")
        params.append(filters["metric_key"])
        request.metric_key.append(filters["metric_key"])
    if "after_us" in filters:
        where.append("timestamp_us >= %s")
        params.append(filters["after_us"])
        request.occurred_after.CopyFrom(ts(filters["after_us"]))
    if "before_us" in filters:
        where.append("timestamp_us < %s")
        params.append(filters["before_us"])
        request.occurred_before.CopyFrom(ts(filters["before_us"]))
    sql = (
        f"SELECT {ROW_COLUMNS} FROM events WHERE {' AND '.join(where)} "
        "ORDER BY timestamp_us DESC, id DESC LIMIT %s"
    )
    return Scenario(
        f"ListUsageEvents {name}",
        "list",
        "ListUsageEvents",
        request,
        [(sql, (*params, limit))],
        _same_ids,
        note,
    )


def list_scenarios(end_us: int) -> list[Scenario]:
    ds = d.Dataset
    return [
        _list("no filter"),
        _list("customer=heavy", customer_id=ds.heavy_customer),
        _list("customer=light", "rank-300 customer: few events", customer_id=ds.light_customer),
        _list("metric_key", f"{ds.list_metric}, ~5% of events", metric_key=ds.list_metric),
        _list(
            "customer+metric",
            "heavy customer, api_call",
            customer_id=ds.heavy_customer,
            metric_key="api_call",
        ),
        _list("product_id", f"{ds.list_product}, ~3.5% of events", product_id=ds.list_product),
        _list(
            "time window",
            "one day, a week before the end",
            after_us=end_us - 7 * DAY_US,
            before_us=end_us - 6 * DAY_US,
        ),
    ]


# ---- ListCustomerUsageEvents ------------------------------------------------------------------
def _customer(
    name: str, customer: str, skip: int, start_us: int, end_us: int, take: int = 50, filtered: bool = False
) -> Scenario:
    request = pb.ListCustomerUsageEventsRequest(
        id=customer,
        aggregator_id=FILTERED_AGGREGATOR_ID if filtered else AGGREGATOR_ID,
        start_date=ts(start_us),
        end_date=ts(end_us),
        take=take,
        skip=skip,
    )
    where = (
        "organization_id = %s AND customer_id = %s AND metric_key = %s "
        "AND timestamp_us >= %s AND timestamp_us < %s"
    )
    if filtered:
        prop, value = FILTERED_AGGREGATOR_EQUALS
        where += f" AND properties ->> '{prop}' = '{value}'"
    params = (d.BIG_ORG, customer, d.Dataset.aggregator_metric, start_us, end_us)
    return Scenario(
        f"ListCustomerUsageEvents {name}",
        "customer",
        "ListCustomerUsageEvents",
        request,
        [
            (f"SELECT count(*) FROM events WHERE {where}", params),
            (
                f"SELECT {ROW_COLUMNS} FROM events WHERE {where} "
                "ORDER BY timestamp_us DESC, id DESC LIMIT %s OFFSET %s",
                (*params, take, skip),
            ),
        ],
        _same_total_and_ids,
        "90-day window, take 50" + (", aggregator filter method=GET" if filtered else ""),
    )


def customer_scenarios(end_us: int) -> list[Scenario]:
    start = end_us - 90 * DAY_US
    heavy, light = d.Dataset.heavy_customer, d.Dataset.light_customer
    return [
        _customer("heavy skip=0", heavy, 0, start, end_us),
        _customer("heavy skip=1000", heavy, 1000, start, end_us),
        _customer("heavy skip=10000", heavy, 10000, start, end_us),
        _customer("light skip=0", light, 0, start, end_us),
        _customer("heavy skip=0, filtered aggregator", heavy, 0, start, end_us, filtered=True),
    ]


# ---- AggregateUsage ---------------------------------------------------------------------------
HOURLY_A = "(a) 30d hourly count, metric_key"


def _aggregate(
    name: str,
    note: str,
    bucket: str,
    since_us: int,
    until_us: int,
    metric: str,
    group_by: str,
    time_zone: str = "UTC",
    fresh: bool = False,
    **filters: str,
) -> Scenario:
    request = pb.AggregateUsageRequest(
        bucket=bucket,
        since=ts(since_us),
        until=ts(until_us),
        metric=metric,
        group_by=group_by,
        time_zone=time_zone,
    )
    for column, value in filters.items():
        setattr(request, column, value)
    if group_by == "metric_key":
        group_sql: str = "metric_key"
        params: tuple[Any, ...] = ()
    elif group_by == "none":
        group_sql, params = "''", ()
    else:
        group_sql = "properties ->> %s"
        params = (group_by[4:],)
    value_sql = "count(*)" if metric == "count" else "sum(quantity)"
    filter_sql = "".join(f" AND {column} = %s" for column in filters)
    sql = (
        f"SELECT {group_sql} AS grp, date_trunc(%s, to_timestamp(timestamp_us / 1000000.0), %s) AS bucket, "
        f"{value_sql} FROM events "
        f"WHERE organization_id = %s AND timestamp_us >= %s AND timestamp_us < %s{filter_sql} GROUP BY 1, 2"
    )
    request_for = None
    if fresh:
        # A new `until` at each call (one microsecond later): no two calls ask the same question.
        later = itertools.count(1)

        def request_for() -> pb.AggregateUsageRequest:
            fresh_request = pb.AggregateUsageRequest()
            fresh_request.CopyFrom(request)
            fresh_request.until.CopyFrom(ts(until_us + next(later)))
            return fresh_request

        name, note = f"{name}, fresh", f"{note}; a new until each call"
    return Scenario(
        f"AggregateUsage {name}",
        "aggregate",
        "AggregateUsage",
        request,
        [(sql, (*params, bucket, time_zone, d.BIG_ORG, since_us, until_us, *filters.values()))],
        _same_sum,
        note,
        request_for,
    )


def aggregate_scenarios(end_us: int) -> list[Scenario]:
    hour_start = end_us - 30 * DAY_US
    day_end = (end_us // DAY_US + 1) * DAY_US
    day_start = day_end - 90 * DAY_US
    ds = d.Dataset
    out = []
    for fresh in (False, True):
        out += [
            _aggregate(
                HOURLY_A,
                "720 buckets",
                "hour",
                hour_start,
                end_us,
                "count",
                "metric_key",
                fresh=fresh,
            ),
            _aggregate(
                "(b) 90d daily sum, dim:region",
                "sum_quantity, 90 buckets",
                "day",
                day_start,
                day_end,
                "sum_quantity",
                "dim:region",
                fresh=fresh,
            ),
            _aggregate(
                "(c) 90d daily count, dim:endpoint",
                "a dimension without rollup",
                "day",
                day_start,
                day_end,
                "count",
                "dim:endpoint",
                fresh=fresh,
            ),
            _aggregate(
                "(c2) 90d daily count, dim:user_id",
                "high cardinality (~100k values), top 8 + Other",
                "day",
                day_start,
                day_end,
                "count",
                "dim:user_id",
                fresh=fresh,
            ),
            _aggregate(
                "(d) = (a) in Europe/Paris",
                "DST time zone",
                "hour",
                hour_start,
                end_us,
                "count",
                "metric_key",
                "Europe/Paris",
                fresh=fresh,
            ),
        ]
    # Stated paths (each fresh): a zone of half-hour offsets and the three filters.
    out += [
        _aggregate(
            "(e) = (a) in Asia/Kolkata",
            "half-hour offset: raw events",
            "hour",
            hour_start,
            end_us,
            "count",
            "metric_key",
            "Asia/Kolkata",
            fresh=True,
        ),
        _aggregate(
            "(f) 90d daily sum by metric_key, customer=heavy",
            "the customer rollup",
            "day",
            day_start,
            day_end,
            "sum_quantity",
            "metric_key",
            fresh=True,
            customer_id=ds.heavy_customer,
        ),
        _aggregate(
            "(g) 90d daily count, product_id",
            "raw events, product index",
            "day",
            day_start,
            day_end,
            "count",
            "none",
            fresh=True,
            product_id=ds.list_product,
        ),
        _aggregate(
            "(h) 90d daily count, subscription_id",
            "raw events, subscription index",
            "day",
            day_start,
            day_end,
            "count",
            "none",
            fresh=True,
            subscription_id="sub_00001",
        ),
    ]
    return out


def as_of_scenarios(end_us: int) -> list[Scenario]:
    """Questions asked again as of a moment given out earlier (the walk of a cursor, an invoice's
    figure reproduced), with a change made since (the driver ingests one event outside every
    window): read from the events as they were (server/storage/clock.py), never from the rollups.
    Their SQL baselines are the current ones, since that change is in none of their answers."""
    heavy, light = d.Dataset.heavy_customer, d.Dataset.light_customer
    start = end_us - 90 * DAY_US
    chosen = [
        _list("no filter"),
        _list("customer=heavy", customer_id=heavy),
        _customer("heavy skip=0", heavy, 0, start, end_us),
        _customer("light skip=0", light, 0, start, end_us),
        *(
            s
            for s in aggregate_scenarios(end_us)
            if s.name == "AggregateUsage (a) 30d hourly count, metric_key"
        ),
    ]
    return [
        dataclasses.replace(
            s, name=f"{s.name}, as_of", group="as_of", as_of=True, note=f"{s.note}; past as_of".lstrip("; ")
        )
        for s in chosen
    ]


def all_scenarios(data_end_us: int) -> list[Scenario]:
    from bench.usage_scenarios import usage_scenarios  # it imports this module

    end = window_end(data_end_us)
    return [
        *list_scenarios(end),
        *customer_scenarios(end),
        *aggregate_scenarios(end),
        *usage_scenarios(end),
        *as_of_scenarios(end),
    ]
