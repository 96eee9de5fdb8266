"""The three read questions: one customer's events of an aggregator (offset pages with a total),
the organization's events (signed keyset cursors), and bucketed aggregates with top-N folding.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections.abc import Callable, Iterator

from server.deadline import Deadline
from server.decimals import trim_decimal
from server.domain import (
    AggregateAnswer,
    AggregateQuery,
    CustomerPage,
    CustomerPageQuery,
    EventFilters,
    Meter,
    PageRow,
)
from server.errors import InvalidArgument, NotFound
from server.logic import buckets
from server.logic.answer_cache import AnswerCache
from server.logic.as_of import AsOf
from server.logic.cursors import CursorCodec, fingerprint, walk_position
from server.storage.interface import Storage

DEFAULT_TAKE = 50
DEFAULT_LIMIT = 25
MAX_LIMIT = 100
DEFAULT_TOP = 8
DEFAULT_CHUNK = 1000
MAX_CHUNK = 5000
# An export chunk's bytes at most (a 5000-event chunk of 16 KiB events would pass gRPC's 16 MiB
# message limit), and the rows one export statement reads: what one stream holds at most.
MAX_CHUNK_BYTES = 4 * 1024 * 1024
FETCH_ROWS = 1000
OTHER_KEY = "Other"
# Aggregate windows stay where calendar arithmetic in any time zone is defined (no events predate 1970).
AGGREGATE_MIN_US = 0
AGGREGATE_MAX_US = 221_845_392_000_000_000  # 9000-01-01T00:00:00Z
_METRIC_KEY_RE = re.compile(r"^[A-Za-z0-9_.:/-]{1,128}$")
# Distinct metric keys a filter may name, comma-separated ones included (each is a bound parameter).
MAX_METRIC_KEYS = 100


@dataclasses.dataclass(frozen=True)
class CustomerEventsRequest:
    customer_id: str
    aggregator_id: str
    start_us: int
    end_us: int
    aggregator_filter_id: str | None = None
    take: int | None = None
    skip: int | None = None
    as_of_us: int | None = None


@dataclasses.dataclass(frozen=True)
class CustomerEventsPage:
    total: int
    skipped: int
    # (wire form, display name) per event, newest first (server/wire.py).
    events: tuple[tuple[bytes, str], ...]
    as_of_us: int


@dataclasses.dataclass(frozen=True)
class FilterRequest:
    """Filters as the caller sent them: metric keys may still be comma-separated."""

    customer_id: str | None = None
    product_id: str | None = None
    subscription_id: str | None = None
    metric_key: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class ListEventsRequest:
    filters: FilterRequest
    occurred_after_us: int | None = None
    occurred_before_us: int | None = None
    limit: int | None = None
    cursor: str = ""
    as_of_us: int | None = None


@dataclasses.dataclass(frozen=True)
class EventsPage:
    # The events' wire forms, newest first (server/wire.py).
    events: list[bytes]
    cursor: str
    as_of_us: int


@dataclasses.dataclass(frozen=True)
class ExportRequest:
    filters: FilterRequest
    occurred_after_us: int | None = None
    occurred_before_us: int | None = None
    oldest_first: bool = False
    chunk_size: int | None = None
    resume_token: str = ""
    as_of_us: int | None = None


@dataclasses.dataclass(frozen=True)
class AggregateRequest:
    bucket: str
    since_us: int
    filters: FilterRequest
    until_us: int | None = None
    metric: str = ""
    group_by: str = ""
    top: int | None = None
    time_zone: str = ""
    # An aggregator's time series (logic/aggregator_usage.py): its events and value, not `metric`.
    meter: Meter | None = None
    # The request's names of since and until, for the errors about the window.
    window_fields: tuple[str, str] = ("since", "until")
    as_of_us: int | None = None


@dataclasses.dataclass(frozen=True)
class Series:
    """One series of an aggregate: exact values as canonical decimal strings."""

    key: str
    other: bool
    total: str
    values: list[str]


@dataclasses.dataclass(frozen=True)
class AggregateResult:
    bucket: str
    group_by: str
    metric: str
    since: dt.datetime
    until: dt.datetime
    starts: tuple[dt.datetime, ...]
    series: list[Series]
    as_of_us: int


def parse_metric_keys(values: tuple[str, ...] | list[str], field: str = "metric_key") -> tuple[str, ...]:
    """Repeated and comma-separated metric keys -> a sorted set; empty pieces are ignored."""
    keys: set[str] = set()
    for i, value in enumerate(values):
        for piece in value.split(","):
            piece = piece.strip()
            if not piece:
                continue
            if not _METRIC_KEY_RE.fullmatch(piece):
                raise InvalidArgument.field(
                    f"{field}[{i}]",
                    f"invalid metric key {piece[:64]!r}: a metric key is 1 to 128 letters, digits"
                    " or the characters _ . : / -",
                )
            keys.add(piece)
            if len(keys) > MAX_METRIC_KEYS:
                raise InvalidArgument.field(
                    f"{field}[{i}]", f"at most {MAX_METRIC_KEYS} metric keys, comma-separated ones included"
                )
    return tuple(sorted(keys))


class UsageQueries:
    def __init__(
        self,
        storage: Storage,
        cursors: CursorCodec,
        max_aggregate_buckets: int,
        max_aggregate_points: int = 0,
        answers: AnswerCache | None = None,
        *,
        as_of: AsOf,
    ) -> None:
        self._storage = storage
        self._as_of = as_of
        self._cursors = cursors
        self._max_buckets = max_aggregate_buckets
        self._max_points = max_aggregate_points  # 0: no bound
        self._answers = answers  # None: every aggregate is computed

    def aggregate_encoded(
        self,
        org: str,
        req: AggregateRequest,
        deadline: Deadline | None,
        now: dt.datetime,
        encode: Callable[[AggregateResult], bytes],
    ) -> bytes:
        """`encode(aggregate(...))`, kept in the answer cache while the organization's data is
        unchanged (logic/answer_cache.py says why that is never stale). An answer whose window
        ends at `now` (no `until`) depends on the clock and is always computed."""
        if self._answers is None or req.until_us is None:
            return encode(self.aggregate(org, req, deadline, now))
        key = ("AggregateUsage", org, req)
        version = self._storage.reads.data_version(org, deadline)  # before computing: see the module
        kept = self._answers.get(key, version)
        if kept is not None:
            return kept
        data = encode(self.aggregate(org, req, deadline, now))
        self._answers.put(key, version, data)
        return data

    def list_customer_events(
        self, org: str, req: CustomerEventsRequest, deadline: Deadline | None = None
    ) -> CustomerEventsPage:
        if req.end_us <= req.start_us:
            raise InvalidArgument.field("end_date", "must be after start_date")
        skip = req.skip or 0
        query = CustomerPageQuery(
            customer_id=req.customer_id,
            aggregator_id=req.aggregator_id,
            aggregator_filter_id=req.aggregator_filter_id,
            start_us=req.start_us,
            end_us=req.end_us,
            take=DEFAULT_TAKE if req.take is None else req.take,
            skip=skip,
        )
        moment = self._as_of.resolve(org, req.as_of_us, "as_of", deadline)

        def read(as_of_us: int | None) -> tuple[CustomerPage, int]:
            at = dataclasses.replace(query, as_of_us=as_of_us)
            page = self._storage.reads.customer_page(org, at, deadline)
            return page, page.clock_us

        page, as_of_us = self._as_of.answer(moment, read)
        if page.missing == "customer":
            raise NotFound("Customer not found", resource="customer")
        if page.missing == "aggregator":
            raise NotFound("Aggregator not found", resource="aggregator")
        if page.missing == "aggregator_filter":
            raise NotFound("Aggregator filter not found", resource="aggregator_filter")
        return CustomerEventsPage(total=page.total, skipped=skip, events=page.events, as_of_us=as_of_us)

    def list_events(self, org: str, req: ListEventsRequest, deadline: Deadline | None = None) -> EventsPage:
        filters = _event_filters(
            req.filters, req.occurred_after_us, req.occurred_before_us, "occurred_before"
        )
        limit = min(req.limit or DEFAULT_LIMIT, MAX_LIMIT)
        # The filters' fields by name, as dataclasses.asdict would give them (without its deep copy).
        bound = fingerprint(org, "ListUsageEvents", filters.__dict__)
        after, as_of_us = None, None
        if req.cursor:
            after, as_of_us = walk_position(self._cursors.decode(req.cursor, bound))
        if as_of_us is not None and req.as_of_us is not None and req.as_of_us != as_of_us:
            raise InvalidArgument.field(
                "as_of",
                "the cursor's walk is as of another moment: pass the as_of of its first page, or none",
            )
        if as_of_us is None:  # (a cursor's as_of was given out by this service: it is settled)
            as_of_us = self._as_of.past(org, req.as_of_us, "as_of", deadline)
        rows, clock_us = self._storage.reads.list_events(
            org, filters, after, limit + 1, deadline, as_of_us=as_of_us
        )
        if as_of_us is None:
            as_of_us = self._as_of.issued(clock_us)
        page, more = rows[:limit], len(rows) > limit
        # Every later page of the walk is read as of this one: none repeats or misses an event.
        cursor = self._cursors.encode(bound, [*page[-1][:2], as_of_us]) if more else ""
        return EventsPage([wire for _, _, wire in page], cursor, as_of_us)

    def export_events(self, org: str, req: ExportRequest, deadline: Deadline) -> Iterator[EventsPage]:
        """Every matching event, in chunks of keyset pages: each chunk's `cursor` is the resume token
        of the position after it. Checked before the first chunk is read; each chunk is one indexed
        statement, so the stream holds no transaction and no more than one chunk in memory."""
        filters = _event_filters(
            req.filters, req.occurred_after_us, req.occurred_before_us, "occurred_before"
        )
        size = min(req.chunk_size or DEFAULT_CHUNK, MAX_CHUNK)
        order = "oldest_first" if req.oldest_first else "newest_first"
        bound = fingerprint(org, f"ExportUsageEvents:{order}", filters.__dict__)
        after, as_of_us = None, None
        if req.resume_token:
            position = self._cursors.decode(req.resume_token, bound, "resume_token")
            after, as_of_us = walk_position(position, "resume_token")
            if req.as_of_us is not None and req.as_of_us != as_of_us:
                raise InvalidArgument.field(
                    "as_of", "the resume token's export is as of another moment: pass the same as_of, or none"
                )
        if as_of_us is None:
            as_of_us = self._as_of.past(org, req.as_of_us, "as_of", deadline)
        if as_of_us is None:  # the whole export, however long, is as of its start
            as_of_us = self._storage.clocks.state(org, deadline).issued_us
        return self._chunks(org, filters, bound, after, size, req.oldest_first, deadline, as_of_us)

    def _chunks(
        self,
        org: str,
        filters: EventFilters,
        bound: str,
        after: tuple[int, str] | None,
        size: int,
        oldest_first: bool,
        deadline: Deadline,
        as_of_us: int,
    ) -> Iterator[EventsPage]:
        """Chunks of at most `size` events and MAX_CHUNK_BYTES: events with large properties make
        smaller chunks, so no message nears gRPC's limit and a stream holds at most one fetch."""
        chunk: list[bytes] = []
        held = 0
        last: tuple[int, str] = (0, "")
        fetch = min(size, FETCH_ROWS)
        for rows in self._fetches(org, filters, after, fetch, oldest_first, deadline, as_of_us):
            wires = [wire for _, _, wire in rows]
            total = sum(map(len, wires))
            if len(chunk) + len(rows) <= size and held + total <= MAX_CHUNK_BYTES:  # the usual case
                chunk.extend(wires)
                held += total
                last = rows[-1][:2]
                if len(chunk) == size:
                    yield EventsPage(chunk, self._cursors.encode(bound, [*last, as_of_us]), as_of_us)
                    chunk, held = [], 0
                continue
            for ts_us, event_id, wire in rows:  # large events: cut where the bounds say
                if chunk and (len(chunk) == size or held + len(wire) > MAX_CHUNK_BYTES):
                    yield EventsPage(chunk, self._cursors.encode(bound, [*last, as_of_us]), as_of_us)
                    chunk, held = [], 0
                chunk.append(wire)
                held += len(wire)
                last = (ts_us, event_id)
        if chunk:
            yield EventsPage(chunk, self._cursors.encode(bound, [*last, as_of_us]), as_of_us)

    def _fetches(
        self,
        org: str,
        filters: EventFilters,
        after: tuple[int, str] | None,
        fetch: int,
        oldest_first: bool,
        deadline: Deadline,
        as_of_us: int,
    ) -> Iterator[list[PageRow]]:
        """Every matching event after `after`, `fetch` rows per keyset statement, each statement run
        only once the rows before it were taken."""
        while True:
            deadline.check()
            rows, _ = self._storage.reads.list_events(
                org, filters, after, fetch, deadline, oldest_first, as_of_us
            )
            if rows:
                yield rows
            if len(rows) < fetch:
                return
            after = rows[-1][:2]

    def aggregate(
        self, org: str, req: AggregateRequest, deadline: Deadline | None, now: dt.datetime
    ) -> AggregateResult:
        tz = buckets.zone(req.time_zone)
        metric = req.metric or "count"
        filters = _event_filters(req.filters, None, None, "until")
        if req.meter is not None:
            metric = "count" if req.meter.operation == "count" else "sum_quantity"
            filters = dataclasses.replace(filters, metric_keys=(req.meter.event_type,))
        group_by = req.group_by or "none"
        top = DEFAULT_TOP if req.top is None else req.top
        since_field, until_field = req.window_fields
        moment = self._as_of.resolve(org, req.as_of_us, "as_of", deadline)
        if moment is not None and req.until_us is None:  # until would have defaulted to then
            now = buckets.from_us(moment.us)
        # No event lies before 1970 or after 9000 (ingestion refuses them): a window reaching past
        # either is cut there, and the response says so, as with the bucket cap.
        if req.until_us is not None and req.until_us <= AGGREGATE_MIN_US:
            raise InvalidArgument.field(until_field, "must be after 1970-01-01T00:00:00Z")
        if req.since_us >= AGGREGATE_MAX_US:
            raise InvalidArgument.field(since_field, "must be before 9000-01-01T00:00:00Z")
        since = buckets.from_us(max(req.since_us, AGGREGATE_MIN_US))
        until = buckets.from_us(min(req.until_us, AGGREGATE_MAX_US)) if req.until_us is not None else now
        if until <= since:
            raise InvalidArgument.field(
                until_field,
                f"must be after {since_field}" + (" (until defaults to now)" if req.until_us is None else ""),
            )
        plan, since = buckets.plan(req.bucket, tz, since, until, self._max_buckets)
        n = len(plan.starts)
        max_series = max(1, self._max_points // n) if self._max_points else 0
        query = AggregateQuery(
            since_us=buckets.to_us(since),
            until_us=buckets.to_us(until),
            bucket=req.bucket,  # type: ignore[arg-type]
            segments=buckets.offset_segments(tz, since, until),
            metric=metric,  # type: ignore[arg-type]
            group_by=group_by,
            filters=filters,
            top=top,
            max_series=max_series,
            meter=req.meter,
        )

        def read(as_of_us: int | None) -> tuple[AggregateAnswer, int]:
            got = self._storage.aggregates.aggregate(
                org, dataclasses.replace(query, as_of_us=as_of_us), deadline
            )
            return got, got.clock_us

        answer, as_of_us = self._as_of.answer(moment, read)
        if max_series and len(answer.series) > max_series:
            raise _too_many_points(answer.groups, n, self._max_points, max_series)
        series = [
            Series(OTHER_KEY if key is None else key, key is None, trim_decimal(total), ["0"] * n)
            for key, total in answer.series
        ]
        index = plan.index_of()
        for cell in answer.cells:
            series[cell.series].values[index[cell.bucket_key]] = trim_decimal(cell.value)
        if not series and group_by == "none":
            series.append(Series("", False, "0", ["0"] * n))
        return AggregateResult(
            bucket=req.bucket,
            group_by=group_by,
            metric=metric,
            since=since,
            until=until,
            starts=plan.starts,
            series=series,
            as_of_us=as_of_us,
        )


def _too_many_points(groups: int, buckets_: int, max_points: int, max_series: int) -> InvalidArgument:
    return InvalidArgument.field(
        "top",
        f"the answer would hold {groups:,} series of {buckets_:,} buckets, over the limit of "
        f"{max_points:,} points per answer: set top to at most {max(1, max_series - 1):,} (the other "
        "series are folded into Other), or ask for a coarser bucket, a shorter window or a narrower filter",
    )


def _event_filters(
    f: FilterRequest, after_us: int | None, before_us: int | None, before_field: str
) -> EventFilters:
    if after_us is not None and before_us is not None and before_us <= after_us:
        raise InvalidArgument.field(before_field, "must be after occurred_after")
    return EventFilters(
        customer_id=f.customer_id,
        product_id=f.product_id,
        subscription_id=f.subscription_id,
        metric_keys=parse_metric_keys(f.metric_key),
        occurred_after_us=after_us,
        occurred_before_us=before_us,
    )
