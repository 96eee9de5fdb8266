"""What aggregators measured: a customer's value of each aggregator over a period (GetCustomerUsage)
and an aggregator's value per customer, ranked and offset-paged (ListAggregatorUsageByCustomer).
An aggregator's time series is AggregateUsage's statement narrowed by the same terms
(aggregates.py, `AggregateQuery.meter`).

An aggregator (a `Meter` once resolved) selects the events ListCustomerUsageEvents lists: its
metric key, the property filters compiled by filters.py. Its value is their count, or the exact
sum of their quantities, or of one property where that property is a JSON number (`prop_decimal`:
NUMERIC on PostgreSQL, the number's JSON text summed by `decimal_sum` on SQLite); events where the
property is absent, null, a string (even "12"), a boolean or an array add nothing and are counted
apart (`unsummed`).

Where a rollup can answer (a count or a quantity sum without property conditions, on a database
that keeps rollups), the whole UTC hours of the period come from `rollup_customer_hourly`, its
ragged ends (under an hour each) from the events; anything else is answered from the events by the
(organization, customer, metric key, time) or (organization, metric key, time) index.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from server.deadline import Deadline
from server.domain import Meter, MeterRanking, MeterValue
from server.storage import clock, rollups, schema
from server.storage.engine import Database
from server.storage.filters import compile_filter
from server.storage.functions import exact_order, exact_text, prop_decimal, quantity_sum, text_order

E = schema.events
R = rollups.C
_HOUR_US = rollups.HOUR_US
# The total column of a count (typed, so that a union of counts alone still sums on PostgreSQL).
_NO_TOTAL = sa.cast(sa.null(), E.c.quantity.type)


def meter_conditions(meter: Meter) -> list[Any]:
    """The WHERE terms of a meter's property filters (its metric key is the caller's to add)."""
    return [compile_filter(E.c.properties, f) for f in meter.conditions()]


def meter_value(meter: Meter) -> Any:
    """What a sum adds per event (NULL: nothing), or None for a count."""
    if meter.operation == "count":
        return None
    return prop_decimal(E.c.properties, meter.property) if meter.property else E.c.quantity


def rollup_serves(meter: Meter) -> bool:
    """Whether the rollups hold this meter: they keep counts and quantity sums per metric key, not
    properties, so neither a property condition nor a sum of a property."""
    return not meter.conditions() and not meter.sums_property()


def _whole_hours(start_us: int, end_us: int) -> tuple[int, int] | None:
    first, end = -(-start_us // _HOUR_US) * _HOUR_US, end_us // _HOUR_US * _HOUR_US
    return (first, end) if first < end else None


class MeterReads:
    """Aggregator values over the events (and rollups) of one database."""

    def __init__(self, db: Database, read_rollups: bool = True) -> None:
        self._db = db
        self._read_rollups = db.dialect.keeps_rollups and read_rollups

    def customer_values(
        self,
        org: str,
        customer_id: str,
        meters: Sequence[Meter],
        start_us: int,
        end_us: int,
        deadline: Deadline | None = None,
        as_of_us: int | None = None,
    ) -> tuple[list[MeterValue], int]:
        """One customer's value of each meter in [start_us, end_us), in the meters' order, and the
        clock it was read at (as CustomerPage.clock_us): one statement."""
        parts = [
            part
            for i, meter in enumerate(meters)
            for part in self._parts(
                org, meter, start_us, end_us, sa.literal_column(str(i)), customer_id, as_of_us
            )
        ]
        stamp = clock.stamp(org, as_of_us).label("clock")
        if parts:
            totals = _totals(_union(parts)).subquery("totals")
            stmt = sa.select(stamp, *totals.c).select_from(_one().outerjoin(totals, sa.true()))
        else:
            stmt = sa.select(stamp)
        with self._db.read(deadline) as conn:
            rows = conn.execute(clock.in_past(stmt, org, as_of_us)).all()
        found = {int(row[1]): row[2:] for row in rows if len(row) > 1 and row[1] is not None}
        values = [_value(meter, *found.get(i, (0, None, None, 0))) for i, meter in enumerate(meters)]
        return values, int(rows[0][0])

    def ranking(
        self,
        org: str,
        meter: Meter,
        start_us: int,
        end_us: int,
        take: int,
        skip: int,
        deadline: Deadline | None = None,
        as_of_us: int | None = None,
    ) -> MeterRanking:
        """Customers with events of the meter in [start_us, end_us), by value descending then id, the
        page [skip, skip + take) of them, and how many there are: one statement."""
        parts = self._parts(org, meter, start_us, end_us, None, None, as_of_us)
        per = _totals(_union(parts)).cte("per_customer")
        value = per.c.n if meter.operation == "count" else sa.func.coalesce(per.c.total_sum, 0)
        page = sa.select(
            per.c.grp,
            per.c.n,
            per.c.total,
            per.c.total_sum,
            per.c.summed,
            sa.func.row_number()
            .over(order_by=(exact_order(value).desc(), text_order(per.c.grp)))
            .label("rank"),
        ).subquery("ranked")
        customers = sa.select(sa.func.count()).select_from(per).scalar_subquery()
        window = sa.and_(page.c.rank > skip, page.c.rank <= skip + take)
        stmt = (
            sa.select(customers.label("customers"), *page.c, clock.stamp(org, as_of_us).label("clock"))
            .select_from(_one().outerjoin(page, window))
            .order_by(page.c.rank)
        )
        with self._db.read(deadline) as conn:
            rows = conn.execute(clock.in_past(stmt, org, as_of_us)).all()
        return MeterRanking(
            int(rows[0][0]),
            tuple((row[1], _value(meter, *row[2:6])) for row in rows if row[1] is not None),
            int(rows[0][-1]),
        )

    def _parts(
        self,
        org: str,
        meter: Meter,
        start_us: int,
        end_us: int,
        group: Any,
        customer_id: str | None,
        as_of_us: int | None,
    ) -> list[sa.Select[Any]]:
        """(grp, n, total, summed) rows whose sums by grp are the meter's value: `group` (None: the
        customer) over [start_us, end_us), from the rollup's whole hours and the events around them
        when the rollup serves the meter (and the answer is of now), else from the events alone."""
        serves = self._read_rollups and rollup_serves(meter) and as_of_us is None
        hours = _whole_hours(start_us, end_us) if serves else None
        if hours is None:
            return [_events_part(org, meter, start_us, end_us, group, customer_id)]
        first, end = hours
        where = [R.c.organization_id == org, R.c.metric_key == meter.event_type]
        where += [R.c.hour_us >= first, R.c.hour_us < end]
        if customer_id is not None:
            where.append(R.c.customer_id == customer_id)
        n = sa.func.sum(R.c.event_count)
        total = _NO_TOTAL if meter.operation == "count" else quantity_sum(R.c.quantity_sum)
        parts = [_grouped(R.c.customer_id, group, n, total, n, where)]
        if start_us < first:
            parts.append(_events_part(org, meter, start_us, first, group, customer_id))
        if end < end_us:
            parts.append(_events_part(org, meter, end, end_us, group, customer_id))
        return parts


def _events_part(
    org: str, meter: Meter, start_us: int, end_us: int, group: Any, customer_id: str | None
) -> sa.Select[Any]:
    where = [E.c.organization_id == org, E.c.metric_key == meter.event_type]
    if customer_id is not None:
        where.append(E.c.customer_id == customer_id)
    where += [E.c.timestamp_us >= start_us, E.c.timestamp_us < end_us, *meter_conditions(meter)]
    value = meter_value(meter)
    total = _NO_TOTAL if value is None else quantity_sum(value)
    summed = sa.func.count() if value is None else sa.func.count(value)
    return _grouped(E.c.customer_id, group, sa.func.count(), total, summed, where)


def _grouped(customer: Any, group: Any, n: Any, total: Any, summed: Any, where: list[Any]) -> sa.Select[Any]:
    """SELECT grp, n, total, summed: per customer when `group` is None, else one row labelled `group`."""
    cols = (n.label("n"), total.label("total"), summed.label("summed"))
    if group is None:
        return sa.select(customer.label("grp"), *cols).where(*where).group_by(customer)
    return sa.select(group.label("grp"), *cols).where(*where)


def _one() -> Any:
    """A one-row FROM: outer-joined to an answer, it comes back with its clock even when empty."""
    return sa.select(sa.literal_column("1").label("one")).subquery("one")


def _union(parts: list[sa.Select[Any]]) -> Any:
    return (sa.union_all(*parts) if len(parts) > 1 else parts[0]).subquery("cells")


def _totals(cells: Any) -> sa.Select[Any]:
    """Per grp: the number of events, the exact total as text (NULL for a count) and the number of
    events whose value was added."""
    total = quantity_sum(cells.c.total)
    return sa.select(
        cells.c.grp,
        sa.cast(sa.func.sum(cells.c.n), sa.BigInteger).label("n"),
        exact_text(total).label("total"),
        total.label("total_sum"),
        sa.cast(sa.func.sum(cells.c.summed), sa.BigInteger).label("summed"),
    ).group_by(cells.c.grp)


def _value(meter: Meter, n: Any, total: Any, _total_sum: Any, summed: Any) -> MeterValue:
    # A rollup part over no hour row sums to NULL; so does a sum without one number on PostgreSQL
    # (SQLite's decimal_sum says "0").
    count = int(n or 0)
    if meter.operation == "count":
        return MeterValue(count, str(count))
    return MeterValue(count, total or "0", count - int(summed or 0))
