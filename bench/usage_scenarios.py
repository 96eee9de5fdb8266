"""The scenarios of the aggregator-value RPCs (group `usage`): GetCustomerUsage,
GetAggregatorTimeSeries and ListAggregatorUsageByCustomer, on the aggregators the customer
scenarios create (`api_call` counted; the same with its own filter method=GET, which no rollup
holds), each beside the same question as plain SQL on the events table:

- a month of the heavy customer: count(*) of its events in the window;
- 90 days daily: count(*) GROUP BY the day (date_trunc in the time zone);
- the customers of a month ranked: count(*) GROUP BY customer ORDER BY count DESC, customer
  LIMIT 50, and the number of customers.
"""

from __future__ import annotations

from typing import Any

from usage.v1 import usage_service_pb2 as pb

from bench import dataset as d
from bench.scenarios import (
    AGGREGATOR_ID,
    DAY_US,
    FILTERED_AGGREGATOR_EQUALS,
    FILTERED_AGGREGATOR_ID,
    Rows,
    Scenario,
    ts,
)


def _where(filtered: bool, customer: bool) -> str:
    where = "organization_id = %s AND metric_key = %s AND timestamp_us >= %s AND timestamp_us < %s"
    if customer:
        where += " AND customer_id = %s"
    if filtered:
        prop, value = FILTERED_AGGREGATOR_EQUALS
        where += f" AND properties ->> '{prop}' = '{value}'"
    return where


def _aggregator(filtered: bool) -> str:
    return FILTERED_AGGREGATOR_ID if filtered else AGGREGATOR_ID


def _note(filtered: bool, what: str) -> str:
    return f"{what}; " + ("aggregator filter method=GET: events" if filtered else "rollup")


# ---- checks -------------------------------------------------------------------------------------
def _same_count(response: Any, rows: list[Rows]) -> str | None:
    (row,) = response.data
    want = rows[0][0][0]
    return None if (row.count, row.exact_total) == (want, str(want)) else f"service {row.count}, SQL {want}"


def _same_points(response: Any, rows: list[Rows]) -> str | None:
    got = sorted(int(p.exact_value) for p in response.points if p.exact_value != "0")
    want = sorted(int(r[1]) for r in rows[0])
    return None if got == want else f"buckets differ: service {got[:5]}..., SQL {want[:5]}..."


def _same_ranking(response: Any, rows: list[Rows]) -> str | None:
    if response.meta.total != rows[0][0][0]:
        return f"customers differ: service {response.meta.total}, SQL {rows[0][0][0]}"
    got = [(r.customer_id, r.count) for r in response.data]
    want = [(r[0], r[1]) for r in rows[1]]
    return None if got == want else f"ranking differs: service {got[:3]}..., SQL {want[:3]}..."


# ---- scenarios ----------------------------------------------------------------------------------
def _customer_month(end_us: int, filtered: bool) -> Scenario:
    start = end_us - 30 * DAY_US
    customer = d.Dataset.heavy_customer
    request = pb.GetCustomerUsageRequest(
        id=customer, start_date=ts(start), end_date=ts(end_us), aggregator_id=_aggregator(filtered)
    )
    params = (d.BIG_ORG, d.Dataset.aggregator_metric, start, end_us, customer)
    return Scenario(
        "GetCustomerUsage heavy, 30 days" + (", filtered" if filtered else ""),
        "usage",
        "GetCustomerUsage",
        request,
        [(f"SELECT count(*) FROM events WHERE {_where(filtered, True)}", params)],
        _same_count,
        _note(filtered, "one heavy customer's month"),
    )


def _daily(end_us: int, filtered: bool, customer: str | None) -> Scenario:
    day_end = (end_us // DAY_US + 1) * DAY_US
    start = day_end - 90 * DAY_US
    request = pb.GetAggregatorTimeSeriesRequest(
        aggregator_id=_aggregator(filtered), start_date=ts(start), end_date=ts(day_end), bucket="day"
    )
    params: tuple[Any, ...] = (d.BIG_ORG, d.Dataset.aggregator_metric, start, day_end)
    if customer is not None:
        request.customer_id = customer
        params = (*params, customer)
    sql = (
        "SELECT date_trunc('day', to_timestamp(timestamp_us / 1000000.0), 'UTC') AS day, count(*) "
        f"FROM events WHERE {_where(filtered, customer is not None)} GROUP BY 1"
    )
    who = "heavy customer" if customer is not None else "all customers"
    return Scenario(
        f"GetAggregatorTimeSeries 90d daily, {who}" + (", filtered" if filtered else ""),
        "usage",
        "GetAggregatorTimeSeries",
        request,
        [(sql, params)],
        _same_points,
        _note(filtered, "90 buckets"),
    )


def _ranking(end_us: int, filtered: bool) -> Scenario:
    start = end_us - 30 * DAY_US
    request = pb.ListAggregatorUsageByCustomerRequest(
        aggregator_id=_aggregator(filtered), start_date=ts(start), end_date=ts(end_us), take=50
    )
    params = (d.BIG_ORG, d.Dataset.aggregator_metric, start, end_us)
    where = _where(filtered, False)
    return Scenario(
        "ListAggregatorUsageByCustomer 30 days" + (", filtered" if filtered else ""),
        "usage",
        "ListAggregatorUsageByCustomer",
        request,
        [
            (f"SELECT count(DISTINCT customer_id) FROM events WHERE {where}", params),
            (
                f"SELECT customer_id, count(*) FROM events WHERE {where} "
                'GROUP BY customer_id ORDER BY 2 DESC, customer_id COLLATE "C" LIMIT 50',
                params,
            ),
        ],
        _same_ranking,
        _note(filtered, "every customer ranked, the first 50"),
    )


def usage_scenarios(end_us: int) -> list[Scenario]:
    heavy = d.Dataset.heavy_customer
    return [
        _customer_month(end_us, False),
        _customer_month(end_us, True),
        _daily(end_us, False, None),
        _daily(end_us, False, heavy),
        _daily(end_us, True, heavy),
        _ranking(end_us, False),
        _ranking(end_us, True),
    ]
