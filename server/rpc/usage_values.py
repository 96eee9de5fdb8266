"""The adapters of GetCustomerUsage, GetAggregatorTimeSeries and ListAggregatorUsageByCustomer:
proto requests to the logic's requests (logic/aggregator_usage.py), its answers to responses.
UsageServicer validates and calls them. Values leave as the exact decimal string with the double
nearest to it beside (`float` of a decimal string rounds correctly), never a sum of doubles."""

from __future__ import annotations

import datetime as dt
from typing import Any

from usage.v1 import usage_service_pb2 as pb

from server.deadline import Deadline
from server.domain import MeterValue
from server.logic.aggregator_usage import (
    AggregatorUsage,
    CustomerUsageRequest,
    Period,
    RankingRequest,
    TimeSeriesRequest,
)
from server.logic.buckets import to_us
from server.rpc import convert
from server.rpc.convert import optional
from server.rpc.interceptors import current_org


def _period(request: Any) -> Period:
    return Period(
        convert.bound_to_us(request.start_date),
        convert.bound_to_us(request.end_date),
        optional(request, "aggregator_filter_id"),
        convert.as_of_us(request),
    )


def _value_fields(v: MeterValue) -> dict[str, Any]:
    """The value fields shared by AggregatorUsage and CustomerUsageTotal."""
    return {"total": float(v.total), "exact_total": v.total, "count": v.count, "unsummed_count": v.unsummed}


def customer_usage(
    usage: AggregatorUsage, request: pb.GetCustomerUsageRequest, deadline: Deadline
) -> pb.GetCustomerUsageResponse:
    req = CustomerUsageRequest(
        customer_id=request.id,
        period=_period(request),
        aggregator_id=optional(request, "aggregator_id"),
        limit=optional(request, "limit"),
        cursor=request.cursor,
    )
    answer = usage.customer_usage(current_org(), req, deadline)
    response = pb.GetCustomerUsageResponse(
        customer_id=request.id,
        start_date=convert.us_to_ts(req.period.start_us),
        end_date=convert.us_to_ts(req.period.end_us),
        as_of=convert.us_to_ts(answer.as_of_us),
    )
    response.pagination.cursor = answer.cursor
    response.pagination.has_more = bool(answer.cursor)
    for item in answer.values:
        a, v = item.aggregator, item.value
        response.data.add(
            aggregator_id=a.id,
            name=a.name,
            event_type=a.event_type,
            operation=a.operation,
            property=a.property,
            unit_name=a.unit_name,
            aggregator_filter_id=req.period.aggregator_filter_id,
            **_value_fields(v),
        )
    return response


def time_series(
    usage: AggregatorUsage, request: pb.GetAggregatorTimeSeriesRequest, deadline: Deadline
) -> pb.GetAggregatorTimeSeriesResponse:
    req = TimeSeriesRequest(
        aggregator_id=request.aggregator_id,
        period=_period(request),
        bucket=request.bucket,
        customer_id=optional(request, "customer_id"),
        time_zone=request.time_zone,
    )
    result = usage.time_series(current_org(), req, deadline, dt.datetime.now(dt.UTC))
    (series,) = result.series
    response = pb.GetAggregatorTimeSeriesResponse(
        aggregator_id=request.aggregator_id,
        bucket=result.bucket,
        time_zone=request.time_zone or "UTC",
        start_date=convert.us_to_ts(to_us(result.since)),
        end_date=convert.us_to_ts(to_us(result.until)),
        total=float(series.total),
        exact_total=series.total,
        as_of=convert.us_to_ts(result.as_of_us),
    )
    points = response.points
    for start, value in zip(result.starts, series.values, strict=True):
        points.add(start=convert.us_to_ts(to_us(start)), value=float(value), exact_value=value)
    return response


def by_customer(
    usage: AggregatorUsage, request: pb.ListAggregatorUsageByCustomerRequest, deadline: Deadline
) -> pb.ListAggregatorUsageByCustomerResponse:
    req = RankingRequest(
        aggregator_id=request.aggregator_id,
        period=_period(request),
        take=optional(request, "take"),
        skip=optional(request, "skip"),
    )
    ranking = usage.by_customer(current_org(), req, deadline)
    response = pb.ListAggregatorUsageByCustomerResponse(
        meta=pb.PageMeta(total=ranking.customers, taken=len(ranking.rows), skipped=ranking.skipped),
        start_date=convert.us_to_ts(req.period.start_us),
        end_date=convert.us_to_ts(req.period.end_us),
        as_of=convert.us_to_ts(ranking.as_of_us),
    )
    for customer_id, v in ranking.rows:
        response.data.add(customer_id=customer_id, **_value_fields(v))
    return response
