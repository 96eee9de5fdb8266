"""What customers used of each billable metric: the value of an aggregator for one customer over a
period (or of every aggregator, a page at a time), its time series, and its value per customer,
ranked and offset-paged.

An aggregator is resolved here into a `Meter` (its event type, operation, property and filters,
with the named aggregator filter when one is given): the events it selects are exactly those
ListCustomerUsageEvents lists for the same customer, aggregator, filter and period, and its value
is their count or the exact sum of their quantity or property (storage/meters.py). The time series
is AggregateUsage's computation (queries.py) narrowed to the meter. Unknown customers, aggregators
and filters are NOT_FOUND as in ListCustomerUsageEvents, the customer checked first.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

from server.deadline import Deadline
from server.decimals import trim_decimal
from server.domain import Aggregator, Meter, MeterRanking, MeterValue
from server.errors import InvalidArgument, NotFound
from server.logic.as_of import AsOf
from server.logic.catalog import Catalog
from server.logic.queries import DEFAULT_TAKE, AggregateRequest, AggregateResult, FilterRequest, UsageQueries
from server.storage.interface import Storage

# Customers per page of a ranking (the request's `take`, 0 to 100, is checked by the contract).
MAX_TAKE = 100


@dataclasses.dataclass(frozen=True)
class Period:
    """A half-open period [start_us, end_us), and the filter named with the aggregator, if any."""

    start_us: int
    end_us: int
    aggregator_filter_id: str | None = None
    as_of_us: int | None = None  # None: now (logic/as_of.py)


@dataclasses.dataclass(frozen=True)
class CustomerUsageRequest:
    customer_id: str
    period: Period
    aggregator_id: str | None = None  # None: every aggregator, a page of ListAggregators at a time
    limit: int | None = None
    cursor: str = ""


@dataclasses.dataclass(frozen=True)
class AggregatorValue:
    aggregator: Aggregator
    value: MeterValue  # total in canonical form


@dataclasses.dataclass(frozen=True)
class CustomerUsage:
    values: list[AggregatorValue]
    cursor: str  # the next page of aggregators ("" when none, and when one aggregator was asked)
    as_of_us: int


@dataclasses.dataclass(frozen=True)
class TimeSeriesRequest:
    aggregator_id: str
    period: Period
    bucket: str
    customer_id: str | None = None
    time_zone: str = ""


@dataclasses.dataclass(frozen=True)
class RankingRequest:
    aggregator_id: str
    period: Period
    take: int | None = None
    skip: int | None = None


@dataclasses.dataclass(frozen=True)
class Ranking:
    customers: int  # customers with at least one event of the aggregator in the period
    skipped: int
    rows: list[tuple[str, MeterValue]]  # totals in canonical form
    as_of_us: int


class AggregatorUsage:
    def __init__(self, storage: Storage, catalog: Catalog, queries: UsageQueries, as_of: AsOf) -> None:
        self._storage = storage
        self._catalog = catalog
        self._queries = queries
        self._as_of = as_of

    def customer_usage(
        self, org: str, req: CustomerUsageRequest, deadline: Deadline | None = None
    ) -> CustomerUsage:
        period = _checked(req.period)
        if period.aggregator_filter_id is not None and req.aggregator_id is None:
            raise InvalidArgument.field(
                "aggregator_filter_id", "needs aggregator_id: a filter belongs to one aggregator"
            )
        self._customer(org, req.customer_id, deadline)
        if req.aggregator_id is not None:
            aggregator, meter = self._meter(org, req.aggregator_id, period.aggregator_filter_id, deadline)
            pairs, cursor = [(aggregator, meter)], ""
        else:
            aggregators, cursor = self._catalog.list_aggregators(org, req.limit, req.cursor, deadline)
            pairs = [(a, _meter_of(a)) for a in aggregators]
        moment = self._as_of.resolve(org, period.as_of_us, "as_of", deadline)
        values, as_of_us = self._as_of.answer(
            moment,
            lambda at: self._storage.meters.customer_values(
                org, req.customer_id, [m for _, m in pairs], period.start_us, period.end_us, deadline, at
            ),
        )
        return CustomerUsage(
            [AggregatorValue(a, _canonical(v)) for (a, _), v in zip(pairs, values, strict=True)],
            cursor,
            as_of_us,
        )

    def time_series(
        self, org: str, req: TimeSeriesRequest, deadline: Deadline | None, now: dt.datetime
    ) -> AggregateResult:
        period = _checked(req.period)
        if req.customer_id is not None:
            self._customer(org, req.customer_id, deadline)
        _, meter = self._meter(org, req.aggregator_id, period.aggregator_filter_id, deadline)
        request = AggregateRequest(
            bucket=req.bucket,
            since_us=period.start_us,
            until_us=period.end_us,
            filters=FilterRequest(customer_id=req.customer_id),
            top=0,
            time_zone=req.time_zone,
            meter=meter,
            window_fields=("start_date", "end_date"),
            as_of_us=period.as_of_us,
        )
        return self._queries.aggregate(org, request, deadline, now)

    def by_customer(self, org: str, req: RankingRequest, deadline: Deadline | None = None) -> Ranking:
        period = _checked(req.period)
        _, meter = self._meter(org, req.aggregator_id, period.aggregator_filter_id, deadline)
        take = DEFAULT_TAKE if req.take is None else min(req.take, MAX_TAKE)
        skip = req.skip or 0
        moment = self._as_of.resolve(org, period.as_of_us, "as_of", deadline)

        def read(at: int | None) -> tuple[MeterRanking, int]:
            got = self._storage.meters.ranking(
                org, meter, period.start_us, period.end_us, take, skip, deadline, at
            )
            return got, got.clock_us

        ranking, as_of_us = self._as_of.answer(moment, read)
        return Ranking(ranking.customers, skip, [(c, _canonical(v)) for c, v in ranking.rows], as_of_us)

    def _customer(self, org: str, customer_id: str, deadline: Deadline | None) -> None:
        if self._storage.catalog.get_customer(org, customer_id, deadline) is None:
            raise NotFound("Customer not found", resource="customer")

    def _meter(
        self, org: str, aggregator_id: str, filter_id: str | None, deadline: Deadline | None
    ) -> tuple[Aggregator, Meter]:
        aggregator = self._catalog.get_aggregator(org, aggregator_id, deadline)
        meter = _meter_of(aggregator)
        if filter_id is not None:
            flt = self._storage.catalog.get_aggregator_filter(org, filter_id, deadline)
            if flt is None or flt.aggregator_id != aggregator_id:
                raise NotFound("Aggregator filter not found", resource="aggregator_filter")
            meter = dataclasses.replace(meter, filters=(*meter.filters, flt.filter))
        return aggregator, meter


def _meter_of(aggregator: Aggregator) -> Meter:
    return Meter(
        event_type=aggregator.event_type,
        operation=aggregator.operation,
        property=aggregator.property,
        filters=() if aggregator.filter is None else (aggregator.filter,),
    )


def _checked(period: Period) -> Period:
    if period.end_us <= period.start_us:
        raise InvalidArgument.field("end_date", "must be after start_date")
    return period


def _canonical(value: MeterValue) -> MeterValue:
    return dataclasses.replace(value, total=trim_decimal(value.total))
