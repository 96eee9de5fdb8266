"""AggregateUsage in SQL: bucket keys in a time zone, exact sums, top-N ranking and folding, bounds.

One statement answers a query. Its `cells` are (group, bucket key, value) rows: from the events, or
from the hourly rollups for the whole hours of the window plus the events of its ragged ends
(rollups.py says when). The statement then ranks the groups by their total (descending, ties by key
in code point order), keeps the first `top`, folds the others bucket by bucket into one series, and
returns only what the response shows: one header row per series (its key and exact total) and one
row per non-zero (series, bucket) value. So a query over 100,000 groups sends 9 series out of the
database, not 100,000.

Values stay exact end to end: counts are BIGINT, quantity sums NUMERIC on PostgreSQL and decimal
text summed by `decimal_sum` on SQLite (dialects/sqlite.py); both leave the database as decimal
text (`exact_text`), which the logic turns into the nearest double and the canonical string.

Bounds: with `max_series` set and nothing folded (top 0, or top at least max_series), series past
max_series + 1 are cut in the database, so an answer over its bound costs no more than one over it
by a series; the logic refuses it, naming the count of groups (AggregateAnswer.groups).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from server.deadline import Deadline
from server.domain import AggregateAnswer, AggregateCell, AggregateQuery
from server.storage import clock, meters, rollups, schema
from server.storage.engine import Database
from server.storage.event_reads import event_where
from server.storage.functions import exact_order, exact_text, month_start_day, quantity_sum, text_order

E = schema.events
_HOUR_US = 3_600_000_000
_DAY_US = 24 * _HOUR_US
_WEEK_US = 7 * _DAY_US
# Shifts keep integer division operands positive (SQL division truncates toward zero).
_SHIFT_WEEKS = 1000
_MONDAY_US = 4 * _DAY_US  # 1970-01-05, the first Monday after the epoch
# "No cut": more series than any query can have.
_NO_CUT = 2**62


class Aggregates:
    """Aggregates over the events (and rollups) of one database."""

    def __init__(self, db: Database, read_rollups: bool = True) -> None:
        self._db = db
        # `read_rollups=False` answers every aggregate from the events (to compare the two).
        self._read_rollups = db.dialect.keeps_rollups and read_rollups

    def aggregate(self, org: str, query: AggregateQuery, deadline: Deadline | None = None) -> AggregateAnswer:
        past = query.as_of_us is not None
        with self._db.read(deadline) as conn:
            # As of a past moment: from the events as they were (the rollups hold the present).
            window = rollups.rollup_window(query) if self._read_rollups and not past else None
            dimension = query.group_by[4:] if query.group_by.startswith("dim:") else None
            if window is not None and dimension is not None and not rollups.has_dimension(conn, dimension):
                window = None
            rows = conn.execute(clock.in_past(_statement(org, query, window), org, query.as_of_us)).all()
        return _answer(rows, query.as_of_us)


def _statement(org: str, query: AggregateQuery, window: tuple[int, int] | None) -> sa.Select[Any]:
    if window is None:
        parts = [_raw_part(org, query, query.since_us, query.until_us)]
    else:
        # Whole hours from the rollup; the ragged ends (under an hour each) from the events.
        start, end = window
        hour, group, column, where, one_row_per_cell = rollups.source(query, org, start, end)
        if query.bucket == "hour" and one_row_per_cell:
            # Hour buckets of a whole-hour zone are UTC hours: each rollup row is a cell as it is.
            cols = (group.label("grp"), hour.label("bucket_key"), column.label("value"))
            parts = [sa.select(*cols).where(*where)]
        else:
            parts = [_bucketed(query, hour, group, _sum(column, query), where)]
        if query.since_us < start:
            parts.append(_raw_part(org, query, query.since_us, start))
        if end < query.until_us:
            parts.append(_raw_part(org, query, end, query.until_us))
    # Rows of several parts may share a (group, bucket): the sums below add them up.
    cells = (parts[0] if len(parts) == 1 else sa.union_all(*parts)).cte("cells")
    totals = (
        sa.select(cells.c.grp, _sum(cells.c.value, query).label("total"))
        .group_by(cells.c.grp)
        .subquery("totals")
    )
    ranked = sa.select(
        totals.c.grp,
        totals.c.total,
        sa.func.row_number()
        .over(order_by=(exact_order(totals.c.total).desc(), text_order(totals.c.grp)))
        .label("rank"),
        sa.func.count().over().label("groups"),
    ).subquery("ranked")
    fold = query.top > 0 and (query.max_series == 0 or query.top < query.max_series)
    if fold:
        keep, cut = query.top, _NO_CUT
    else:
        keep = cut = query.max_series + 1 if query.max_series else _NO_CUT
    slot = sa.case((ranked.c.rank <= keep, ranked.c.rank), else_=keep + 1)
    slotted = (
        sa.select(ranked.c.grp, ranked.c.total, ranked.c.groups, slot.label("slot"))
        .where(ranked.c.rank <= cut)
        .cte("slotted")
    )
    s = slotted.c
    headers = sa.select(
        s.slot,
        sa.case((s.slot <= keep, sa.func.min(s.grp)), else_=sa.null()).label("key"),
        sa.cast(sa.null(), sa.BigInteger).label("bucket_key"),
        exact_text(_sum(s.total, query)).label("value"),
        sa.func.max(s.groups).label("groups"),
    ).group_by(s.slot)
    values = (
        sa.select(
            s.slot,
            sa.cast(sa.null(), sa.String).label("key"),
            cells.c.bucket_key,
            exact_text(_sum(cells.c.value, query)).label("value"),
            sa.cast(sa.null(), sa.BigInteger).label("groups"),
        )
        .select_from(cells.join(slotted, s.grp == cells.c.grp))
        .group_by(s.slot, cells.c.bucket_key)
    )
    # And one row of the organization's commit clock (slot 0), read in the same snapshot.
    clock_row = sa.select(
        sa.literal(0).label("slot"),
        sa.cast(sa.null(), sa.String).label("key"),
        sa.cast(sa.null(), sa.BigInteger).label("bucket_key"),
        sa.cast(sa.null(), sa.String).label("value"),
        clock.clock_of(org).label("groups"),
    )
    return sa.union_all(headers, values, clock_row)  # type: ignore[return-value]


def _answer(rows: Sequence[Any], as_of_us: int | None) -> AggregateAnswer:
    (clock_us,) = (r[4] for r in rows if r[0] == 0)
    headers = sorted((r for r in rows if r[2] is None and r[0] != 0), key=lambda r: r[0])
    groups = int(headers[0][4]) if headers else 0
    # Slots are ranks: 1, 2, ... without gaps, so a series' index is its slot - 1.
    series = [(key, total) for _, key, _, total, _ in headers]
    cells = [
        AggregateCell(slot - 1, bucket_key, value)
        for slot, _, bucket_key, value, _ in rows
        if bucket_key is not None
    ]
    return AggregateAnswer(groups, series, cells, int(clock_us) if as_of_us is None else as_of_us)


def _sum(value: Any, query: AggregateQuery) -> Any:
    """The exact sum of counts (BIGINT: PostgreSQL's sum of integers is NUMERIC) or of quantities."""
    if query.metric == "count":
        return sa.cast(sa.func.sum(value), sa.BigInteger)
    return quantity_sum(value)


def _raw_part(org: str, query: AggregateQuery, since_us: int, until_us: int) -> sa.Select[Any]:
    """(grp, bucket_key, value) of the events in [since_us, until_us)."""
    ts = E.c.timestamp_us
    if query.group_by == "metric_key":
        group: Any = E.c.metric_key
    elif query.group_by.startswith("dim:"):
        group = rollups.dimension_value(E.c.properties, query.group_by[4:])
    else:
        group = sa.literal("")
    where = [*event_where(org, query.filters), ts >= since_us, ts < until_us]
    summed: Any = E.c.quantity
    if query.meter is not None:
        where += meters.meter_conditions(query.meter)
        summed = meters.meter_value(query.meter)
    value: Any = sa.func.count() if query.metric == "count" else quantity_sum(summed)
    if query.meter is not None and query.meter.sums_property():
        # A bucket whose events have no number to add is 0, not NULL (PostgreSQL's sum of nothing).
        value = sa.func.coalesce(value, 0)
    return _bucketed(query, ts, group, value, where)


def _bucketed(query: AggregateQuery, ts: Any, group: Any, value: Any, where: list[Any]) -> sa.Select[Any]:
    """SELECT grp, bucket_key, value ... GROUP BY grp, bucket_key, with the query's bucket keys of `ts`."""
    offset = _offset_expr(ts, query)
    local = ts + offset
    if query.bucket == "hour":
        shift = _SHIFT_WEEKS * _WEEK_US
        key = ((local + shift) // _HOUR_US) * _HOUR_US - shift - offset
    elif query.bucket in ("day", "month"):
        shift_days = _SHIFT_WEEKS * 7
        key = (local + shift_days * _DAY_US) // _DAY_US - shift_days
        if query.bucket == "month":
            key = month_start_day(key)
    else:
        key = (local - _MONDAY_US + _SHIFT_WEEKS * _WEEK_US) // _WEEK_US - _SHIFT_WEEKS
    key_col, group_col = key.label("bucket_key"), group.label("grp")
    return sa.select(group_col, key_col, value.label("value")).where(*where).group_by(group_col, key_col)


def _offset_expr(ts: Any, query: AggregateQuery) -> Any:
    segments = query.segments
    if len(segments) == 1:
        return sa.literal(segments[0].offset_us, sa.BigInteger)
    whens = [
        (ts < nxt.start_us, sa.literal(seg.offset_us, sa.BigInteger))
        for seg, nxt in zip(segments, segments[1:], strict=False)
    ]
    return sa.case(*whens, else_=sa.literal(segments[-1].offset_us, sa.BigInteger))
