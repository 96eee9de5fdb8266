"""An independent oracle of AggregateUsage for the tests: plain Python, zoneinfo and decimal.Decimal
(it never calls server.logic.buckets or server.decimals). Importable as `aggregate_oracle`.

    starts, series = oracle_aggregate(events, bucket="day", tz=ZoneInfo("Europe/Paris"), since=..., ...)
    series[0].values[i]        # the exact value of bucket i, a Decimal
    canonical(series[0].total) # the API's exact string
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable
from decimal import Context, Decimal, Inexact
from typing import Any
from zoneinfo import ZoneInfo

from server.domain import NewEvent

UTC = dt.UTC
EPOCH = dt.datetime(1970, 1, 1, tzinfo=UTC)
US = dt.timedelta(microseconds=1)
# Sums of billions of 24 + 12 digit quantities, never rounded (the default context keeps 28 digits).
EXACT = Context(prec=100, traps=[Inexact])


def exact_sum(values: Iterable[Decimal]) -> Decimal:
    total = Decimal(0)
    for v in values:
        total = EXACT.add(total, v)
    return total


def canonical(d: Decimal) -> str:
    """The API's canonical decimal string, written independently: no exponent, no trailing zeros."""
    if d == 0:
        return "0"
    text = format(d, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def to_us(t: dt.datetime) -> int:
    return (t - EPOCH) // US


def from_us(us: int) -> dt.datetime:
    return EPOCH + dt.timedelta(microseconds=us)


# ------------------------------------------------------------------------------------------------
# The oracle


def oracle_bucket_start(bucket: str, tz: ZoneInfo, t: dt.datetime) -> dt.datetime:
    """Start (UTC) of the bucket holding `t`. The zones used here shift by whole hours at whole
    hours and have midnight every day, so wall-clock flooring (keeping the fold) is exact."""
    local = t.astimezone(tz)
    if bucket == "hour":
        return local.replace(minute=0, second=0, microsecond=0).astimezone(UTC)
    day = local.date()
    if bucket == "week":
        day -= dt.timedelta(days=day.weekday())
    if bucket == "month":
        day = day.replace(day=1)
    return dt.datetime(day.year, day.month, day.day, tzinfo=tz).astimezone(UTC)


def oracle_starts(bucket: str, tz: ZoneInfo, since: dt.datetime, until: dt.datetime) -> list[dt.datetime]:
    """Every bucket start touched by [since, until): probe `since`, the last instant before `until`
    and every whole UTC hour between (every bucket here is at least one hour long, so each bucket
    between the first and the last holds a whole UTC hour)."""
    starts = {oracle_bucket_start(bucket, tz, since), oracle_bucket_start(bucket, tz, until - US)}
    t = since.replace(minute=0, second=0, microsecond=0) + dt.timedelta(hours=1)
    while t < until:
        starts.add(oracle_bucket_start(bucket, tz, t))
        t += dt.timedelta(hours=1)
    return sorted(starts)


def dim_text(value: Any) -> str:
    """The series key of a dimension value: strings as is, numbers and booleans as JSON text."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    return repr(value) if isinstance(value, float) else str(value)


@dataclasses.dataclass(frozen=True)
class OracleSeries:
    key: str
    other: bool
    values: list[Decimal]

    @property
    def total(self) -> Decimal:
        return exact_sum(self.values)


def oracle_aggregate(
    events: list[NewEvent],
    *,
    bucket: str,
    tz: ZoneInfo,
    since: dt.datetime,
    until: dt.datetime,
    metric: str,
    group_by: str,
    top: int,
    customer_id: str | None,
    product_id: str | None,
    metric_keys: set[str],
    starts: list[dt.datetime] | None = None,
) -> tuple[list[dt.datetime], list[OracleSeries]]:
    if starts is None:
        starts = oracle_starts(bucket, tz, since, until)
    position = {s: i for i, s in enumerate(starts)}
    dense: dict[str, list[Decimal]] = {}
    if group_by == "none":
        dense[""] = [Decimal(0)] * len(starts)
    for e in events:
        t = from_us(e.timestamp_us)
        if not since <= t < until:
            continue
        if customer_id is not None and e.customer_id != customer_id:
            continue
        if product_id is not None and e.product_id != product_id:
            continue
        if metric_keys and e.metric_key not in metric_keys:
            continue
        if group_by == "none":
            key = ""
        elif group_by == "metric_key":
            key = e.metric_key
        else:
            key = dim_text(e.properties.get(group_by.removeprefix("dim:")))
        values = dense.setdefault(key, [Decimal(0)] * len(starts))
        i = position[oracle_bucket_start(bucket, tz, t)]
        values[i] = EXACT.add(values[i], Decimal(1) if metric == "count" else Decimal(e.quantity))
    ranked = sorted(dense.items(), key=lambda kv: (-exact_sum(kv[1]), kv[0]))
    kept = ranked if top == 0 else ranked[:top]
    series = [OracleSeries(k, False, v) for k, v in kept]
    rest = ranked[len(kept) :]
    if rest:
        columns = zip(*(v for _, v in rest), strict=True)
        series.append(OracleSeries("Other", True, [exact_sum(col) for col in columns]))
    return starts, series
