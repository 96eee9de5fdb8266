"""Reading events: the organization's keyset pages (ListUsageEvents) and one customer's offset pages
of one aggregator's events with their exact total (ListCustomerUsageEvents).

Both are answered by the indexes of schema.py, newest first by (timestamp, id), and return each
event's stored wire form (server/wire.py), not its columns: a page is sent as stored. Property
filters are compiled to SQL (filters.py), never evaluated in Python.

The hot statements are built once per shape (which filters are present) and run as `Prepared`
statements on the driver's cursor (engine.py). A customer page is one connection and two round
trips: the catalog lookups in one statement, then the total and the page in another; a property
filter's statement is compiled once per filter and kept (its values become its parameters).
"""

from __future__ import annotations

import functools
import json
from typing import Any

import sqlalchemy as sa

from server.deadline import Deadline
from server.domain import (
    Condition,
    CustomerPage,
    CustomerPageQuery,
    EventFilters,
    EventVerdicts,
    FilterVerdict,
    PageRow,
    PropertyFilter,
    VoidRecord,
)
from server.storage import clock, rollups, schema
from server.storage.catalog_store import filter_from_json
from server.storage.engine import Database, Prepared
from server.storage.filters import compile_condition, compile_filter, holds
from server.storage.functions import prop_text, prop_type

E = schema.events
A = schema.aggregators
F = schema.aggregator_filters
C = schema.customers
V = schema.voided_events
_HOUR_US = rollups.HOUR_US


def event_where(org: Any, f: EventFilters) -> list[Any]:
    """The WHERE terms of ListUsageEvents' (and AggregateUsage's) filters."""
    where: list[Any] = [E.c.organization_id == org]
    if f.customer_id is not None:
        where.append(E.c.customer_id == f.customer_id)
    if f.product_id is not None:
        where.append(E.c.product_id == f.product_id)
    if f.subscription_id is not None:
        where.append(E.c.subscription_id == f.subscription_id)
    if f.metric_keys:
        where.append(E.c.metric_key.in_(f.metric_keys))
    if f.occurred_after_us is not None:
        where.append(E.c.timestamp_us >= f.occurred_after_us)
    if f.occurred_before_us is not None:
        where.append(E.c.timestamp_us < f.occurred_before_us)
    return where


class EventReads:
    """Pages of events of one database."""

    def __init__(self, db: Database) -> None:
        self._db = db

    # ---- ListUsageEvents ------------------------------------------------------------------------
    def list_events(
        self,
        org: str,
        filters: EventFilters,
        after: tuple[int, str] | None,
        limit: int,
        deadline: Deadline | None = None,
        oldest_first: bool = False,
        as_of_us: int | None = None,
    ) -> tuple[list[PageRow], int]:
        """Events strictly after the keyset position `after` (timestamp_us, id), newest first (or
        oldest first: ExportUsageEvents), read from the same indexes in either direction; with
        the organization's commit clock read in the same statement (or as of `as_of_us`, and that)."""
        f = filters
        keys = f.metric_keys
        values: dict[str, Any] = {"org": org, "limit": limit}
        values.update((f"k{i}", k) for i, k in enumerate(keys))
        for name in (
            "customer_id",
            "product_id",
            "subscription_id",
            "occurred_after_us",
            "occurred_before_us",
        ):
            value = getattr(f, name)
            if value is not None:
                values[name] = value
        if after is not None:
            values["after_ts"], values["after_id"] = after
        if as_of_us is not None:
            values["as_of"] = as_of_us
        shape = (
            *(name in values for name in _OPTIONAL_FILTERS),
            len(keys),
            after is not None,
            oldest_first,
            as_of_us is not None,
        )
        rows: list[Any] = self._db.fetch(self._list_statement(shape), values, deadline)
        if as_of_us is not None:
            return rows, as_of_us
        return rows, _take_clock_row(rows)

    @functools.lru_cache(maxsize=512)  # noqa: B019 (one EventReads per database, for the process's life)
    def _list_statement(self, shape: tuple[Any, ...]) -> Prepared:
        *present, n_keys, has_after, oldest_first, past = shape
        p = sa.bindparam

        def page(table: sa.Table, *terms: Any) -> sa.Subquery:
            """The page's rows of `table` (events or voided_events: the same columns), by its index."""
            stmt = sa.select(table.c.timestamp_us, table.c.id, table.c.wire).where(
                table.c.organization_id == p("org"), *terms
            )
            for name, here in zip(_OPTIONAL_FILTERS, present, strict=True):
                if here:
                    stmt = stmt.where(_OPTIONAL_FILTERS[name](table, p(name)))
            if n_keys:
                stmt = stmt.where(table.c.metric_key.in_([p(f"k{i}") for i in range(n_keys)]))
            position = sa.tuple_(table.c.timestamp_us, table.c.id)
            after = sa.tuple_(p("after_ts"), p("after_id"))
            if has_after:
                stmt = stmt.where(position > after if oldest_first else position < after)
                # Implied by the row comparison, but said on the time alone: partition pruning
                # (storage/partitions.py) reads no row comparison, and skips the months past it.
                ts = table.c.timestamp_us
                stmt = stmt.where(ts >= p("after_ts") if oldest_first else ts <= p("after_ts"))
            return stmt.order_by(*_order(table, oldest_first)).limit(p("limit")).subquery()

        if past:
            # As of `as_of` (storage/clock.py events_at), each part paged by its own index: the
            # events recorded by then, and the versions voided since. (A page of events_at as one
            # UNION ALL is sorted whole: PostgreSQL merges the parts' index orders only when each
            # part is limited on its own.)
            as_of = p("as_of", type_=sa.BigInteger)
            parts = [
                page(E, E.c.ingested_at_us <= as_of),
                page(V, V.c.voided_at_us > as_of, V.c.ingested_at_us <= as_of),
            ]
            rows = sa.union_all(*(sa.select(*part.c) for part in parts)).subquery("rows")
            stmt = sa.select(*rows.c).order_by(*_order(rows, oldest_first)).limit(p("limit"))
            return Prepared(self._db.engine, stmt)
        # The page and one more row, of the clock (id NULL), in one statement: one snapshot.
        live = page(E)
        clock_row = sa.select(
            clock.clock_of(p("org")),
            sa.cast(sa.null(), E.c.id.type),
            sa.cast(sa.null(), E.c.wire.type),
        )
        rows = sa.union_all(sa.select(*live.c), clock_row).subquery("rows")
        return Prepared(self._db.engine, sa.select(*rows.c).order_by(*_order(rows, oldest_first)))

    # ---- the organization's data version ----------------------------------------------------------
    def data_version(self, org: str, deadline: Deadline | None = None) -> int:
        """Incremented by every transaction that changes the organization's events (0: none yet)."""
        rows = self._db.fetch(self._version_statement(), {"org": org}, deadline)
        return int(rows[0][0]) if rows else 0

    @functools.lru_cache(maxsize=1)  # noqa: B019
    def _version_statement(self) -> Prepared:
        v = schema.organization_versions.c
        return Prepared(
            self._db.engine,
            sa.select(v.data_version).where(v.organization_id == sa.bindparam("org", type_=sa.String)),
        )

    # ---- ListCustomerUsageEvents ----------------------------------------------------------------
    def customer_page(self, org: str, q: CustomerPageQuery, deadline: Deadline | None = None) -> CustomerPage:
        # The main pool: a property filter's page must be planned for its values (below).
        with self._db.reader(deadline, single=False) as read:
            values: dict[str, Any] = {"org": org, "customer": q.customer_id, "aggregator": q.aggregator_id}
            values["filter"] = q.aggregator_filter_id or ""
            ((customer, event_type, display, agg_filter, filter_owner, extra_filter),) = (
                self._lookup_statement().read(read, values)
            )
            if customer is None:
                return CustomerPage("customer")
            if event_type is None:
                return CustomerPage("aggregator")
            filters = [_filter(agg_filter)]
            if q.aggregator_filter_id is not None:
                if filter_owner != q.aggregator_id:
                    return CustomerPage("aggregator_filter")
                filters.append(_filter(extra_filter))
            values = {
                "org": org,
                "customer": q.customer_id,
                "metric": event_type,
                "start": q.start_us,
                "end": q.end_us,
                "take": q.take,
                "skip": q.skip,
                "display": display,
            }
            conditions = tuple(f for f in filters if f is not None and f.conditions)
            past = q.as_of_us is not None
            if past:
                values["as_of"], values["reach"] = q.as_of_us, q.skip + q.take
            if conditions:
                statement = self._filtered_page_statement(_filters_key(conditions), past)
            else:
                # Whole hours counted by the customer rollup, the ragged ends from the events.
                values["first_hour"] = -(-q.start_us // _HOUR_US) * _HOUR_US
                values["end_hour"] = q.end_us // _HOUR_US * _HOUR_US
                from_rollup = (
                    not past and self._db.dialect.keeps_rollups and values["first_hour"] < values["end_hour"]
                )
                statement = self._unfiltered_page_statement(from_rollup, past)
            rows = statement.read(read, values)
        total = int(rows[0][0])
        events = tuple((wire, name) for _, wire, name, _ in rows if wire is not None)
        return CustomerPage(None, total, events, int(rows[0][3]))

    @functools.lru_cache(maxsize=1)  # noqa: B019
    def _lookup_statement(self) -> Prepared:
        p = sa.bindparam
        one = sa.select(sa.literal_column("1").label("one")).subquery("one")
        customer = (
            sa.select(sa.literal_column("1"))
            .where(C.c.organization_id == p("org"), C.c.id == p("customer"))
            .scalar_subquery()
        )
        stmt = sa.select(
            customer.label("customer"),
            A.c.event_type,
            A.c.display_name_property,
            A.c.filter,
            F.c.aggregator_id,
            F.c.filter.label("extra_filter"),
        ).select_from(
            one.outerjoin(A, sa.and_(A.c.organization_id == p("org"), A.c.id == p("aggregator"))).outerjoin(
                F, sa.and_(F.c.organization_id == p("org"), F.c.id == p("filter"))
            )
        )
        return Prepared(self._db.engine, stmt)

    @functools.lru_cache(maxsize=4)  # noqa: B019
    def _unfiltered_page_statement(self, from_rollup: bool, past: bool) -> Prepared:
        return Prepared(self._db.engine, _page_statement([], from_rollup, past))

    # The filters of the aggregators (and their filters) paged lately: each its own statement, its
    # values bound as parameters of it, compiled once. Never prepared: planned for the filter's
    # values at each call, as a generic plan of a property condition (key and value unknown to the
    # planner) ran a heavy customer's filtered page past 30 s where its own plan takes about 0.4 s.
    @functools.lru_cache(maxsize=256)  # noqa: B019
    def _filtered_page_statement(self, filters_key: str, past: bool) -> Prepared:
        filters = [
            PropertyFilter(conditional, tuple(Condition(*c) for c in conditions))
            for conditional, conditions in json.loads(filters_key)
        ]
        return Prepared(self._db.engine, _page_statement(filters, False, past), prepare=False)

    # ---- ExplainUsageEvent ----------------------------------------------------------------------
    def explain(
        self,
        org: str,
        event_id: str,
        aggregator_id: str,
        aggregator_filter_id: str | None,
        customer_id: str | None,
        deadline: Deadline | None = None,
        as_of_us: int | None = None,
    ) -> EventVerdicts:
        """One event and the aggregator's (and the named filter's) verdicts on it, each condition's
        too, computed by the SQL the customer pages filter with (filters.py), so an explanation
        cannot disagree with a page."""
        with self._db.read(deadline) as conn:
            # Where the event is (its live version, or as of `as_of_us`), else its voided version.
            table: Any = E if as_of_us is None else clock.events_at(org, as_of_us)
            stamp = clock.stamp(org, as_of_us)
            event: Any = conn.execute(
                sa.select(
                    table.c.customer_id,
                    table.c.metric_key,
                    table.c.timestamp_us,
                    table.c.wire,
                    stamp.label("clock"),
                ).where(table.c.organization_id == org, table.c.id == event_id)
            ).first()
            void = None
            if event is None:  # a voided or replaced version: explained as it was, with its void
                table = V
                voided = [V.c.organization_id == org, V.c.id == event_id]
                if as_of_us is not None:  # voided by then (else it was live, or not recorded yet)
                    voided.append(V.c.voided_at_us <= as_of_us)
                event = conn.execute(
                    sa.select(
                        V.c.customer_id,
                        V.c.metric_key,
                        V.c.timestamp_us,
                        V.c.wire,
                        stamp.label("clock"),
                        V.c.voided_at_us,
                        V.c.voided_by,
                        V.c.void_reason,
                        V.c.replaced_by,
                    ).where(*voided)
                ).first()
                if event is None:
                    return EventVerdicts("event")
                void = VoidRecord(event.voided_at_us, event.voided_by, event.void_reason, event.replaced_by)
            # The catalog lookups of the customer pages, in their one statement and order.
            values = {
                "org": org,
                "customer": customer_id if customer_id is not None else event.customer_id,
                "aggregator": aggregator_id,
                "filter": aggregator_filter_id or "",
            }
            ((customer, event_type, _, agg_filter, filter_owner, extra_filter),) = (
                self._lookup_statement().fetch(self._db, conn, values)
            )
            if customer is None:
                return EventVerdicts("customer")
            if event_type is None:
                return EventVerdicts("aggregator")
            filters = [_filter(agg_filter) or PropertyFilter()]
            if aggregator_filter_id is not None:
                if filter_owner != aggregator_id:
                    return EventVerdicts("aggregator_filter")
                filters.append(_filter(extra_filter) or PropertyFilter())
            column = table.c.properties
            verdicts = [holds(compile_filter(column, f)) if f.conditions else sa.true() for f in filters] + [
                holds(compile_condition(column, c)) for f in filters for c in f.conditions
            ]
            row = conn.execute(
                sa.select(*verdicts).where(table.c.organization_id == org, table.c.id == event_id)
            ).one()
        found = [bool(v) for v in row]
        wholes, conditions = found[: len(filters)], found[len(filters) :]
        out: list[FilterVerdict] = []
        for f, whole in zip(filters, wholes, strict=True):
            out.append(FilterVerdict(f, whole, tuple(conditions[: len(f.conditions)])))
            conditions = conditions[len(f.conditions) :]
        return EventVerdicts(
            None,
            bytes(event.wire),
            event.customer_id,
            event.metric_key,
            event.timestamp_us,
            event_type,
            out[0],
            out[1] if len(out) > 1 else None,
            void,
            int(event.clock),
        )


def _page_statement(
    filters: list[PropertyFilter], total_from_rollup: bool, past: bool = False
) -> sa.Select[Any]:
    """(total, wire, name, clock) rows of a customer page: the total (and the organization's commit
    clock) on every row, and one row with no event when the page is empty (so they always come back).

    `total_from_rollup`: the events of whole hours [first_hour, end_hour) are counted from
    rollup_customer_hourly, only the window's ragged ends from the events (a heavy customer's total
    then costs what a light one's does); without property conditions only, which the rollup cannot
    apply. `past`: as of `as_of` (_past_page_statement)."""
    if past:
        return _past_page_statement(filters)
    p = sa.bindparam
    conditions = [compile_filter(E.c.properties, f) for f in filters]
    mine = [E.c.organization_id == p("org"), E.c.customer_id == p("customer"), E.c.metric_key == p("metric")]
    where = [*mine, E.c.timestamp_us >= p("start"), E.c.timestamp_us < p("end"), *conditions]
    if total_from_rollup:
        r = rollups.C.c
        whole_hours = sa.select(sa.func.coalesce(sa.func.sum(r.event_count), 0)).where(
            r.organization_id == p("org"),
            r.customer_id == p("customer"),
            r.metric_key == p("metric"),
            r.hour_us >= p("first_hour"),
            r.hour_us < p("end_hour"),
        )
        head = (
            sa.select(sa.func.count())
            .select_from(E)
            .where(*mine, E.c.timestamp_us >= p("start"), E.c.timestamp_us < p("first_hour"))
        )
        tail = (
            sa.select(sa.func.count())
            .select_from(E)
            .where(*mine, E.c.timestamp_us >= p("end_hour"), E.c.timestamp_us < p("end"))
        )
        total: Any = sa.cast(
            whole_hours.scalar_subquery() + head.scalar_subquery() + tail.scalar_subquery(), sa.BigInteger
        )
    elif conditions:
        # Property conditions need each row read: the matching events are found once (a CTE read
        # twice is materialized), then counted and paged. Counting and paging them apart read the
        # customer's events twice (1.1 s instead of 0.55 s for a heavy customer at 10M events).
        matched = sa.select(E.c.timestamp_us, E.c.id).where(*where).cte("matched")
        total = sa.select(sa.func.count()).select_from(matched).scalar_subquery()
        page_of: Any = sa.select(matched.c.timestamp_us, matched.c.id).order_by(
            matched.c.timestamp_us.desc(), matched.c.id.desc()
        )
    else:
        total = sa.select(sa.func.count()).select_from(E).where(*where).scalar_subquery()
    if not conditions or total_from_rollup:
        # The skipped rows are walked in the index alone (an index-only scan when no property
        # filter needs the row); only the page's rows are then read from the table.
        page_of = (
            sa.select(E.c.timestamp_us, E.c.id).where(*where).order_by(E.c.timestamp_us.desc(), E.c.id.desc())
        )
    page = page_of.limit(p("take")).offset(p("skip")).subquery("page")
    one = sa.select(sa.literal_column("1").label("one")).subquery("one")
    paged = E.alias("paged")
    return (
        sa.select(
            total.label("total"),
            paged.c.wire,
            _display_name(paged, p("display", type_=sa.String)),
            clock.clock_of(p("org")).label("clock"),
        )
        .select_from(
            one.outerjoin(page, sa.true()).outerjoin(
                paged,
                # By the whole primary key, time included, and within the window: each row is then
                # looked up in its own month's partition alone (storage/partitions.py).
                sa.and_(
                    paged.c.organization_id == p("org"),
                    paged.c.id == page.c.id,
                    paged.c.timestamp_us == page.c.timestamp_us,
                    paged.c.timestamp_us >= p("start"),
                    paged.c.timestamp_us < p("end"),
                ),
            )
        )
        .order_by(page.c.timestamp_us.desc(), page.c.id.desc())
    )


def _past_page_statement(filters: list[PropertyFilter]) -> sa.Select[Any]:
    """A customer page as of `as_of` (storage/clock.py `events_at`), never from the rollup, its
    clock column `as_of`. The two parts of events_at (the events recorded by then, the versions
    voided since) are counted apart and each gives its first skip + take rows by its own index, page
    columns included; the page is cut from their merge. (Read through one UNION ALL, PostgreSQL
    sorts the customer's events whole, and looks nothing up by id in it.)"""
    p = sa.bindparam
    as_of = p("as_of", type_=sa.BigInteger)

    def mine(table: sa.Table, *terms: Any) -> list[Any]:
        ts = table.c.timestamp_us
        return [
            table.c.organization_id == p("org"),
            table.c.customer_id == p("customer"),
            table.c.metric_key == p("metric"),
            ts >= p("start"),
            ts < p("end"),
            *(compile_filter(table.c.properties, f) for f in filters),
            *terms,
        ]

    parts = [
        (E, mine(E, E.c.ingested_at_us <= as_of)),
        (V, mine(V, V.c.voided_at_us > as_of, V.c.ingested_at_us <= as_of)),
    ]
    counts = [sa.select(sa.func.count()).select_from(t).where(*w).scalar_subquery() for t, w in parts]
    firsts = [
        sa.select(t.c.timestamp_us, t.c.id, t.c.wire, t.c.properties, t.c.metric_key)
        .where(*w)
        .order_by(t.c.timestamp_us.desc(), t.c.id.desc())
        .limit(p("reach"))
        .subquery()
        for t, w in parts
    ]
    merged = sa.union_all(*(sa.select(*f.c) for f in firsts)).subquery("merged")
    page = (
        sa.select(*merged.c)
        .order_by(merged.c.timestamp_us.desc(), merged.c.id.desc())
        .limit(p("take"))
        .offset(p("skip"))
        .subquery("page")
    )
    one = sa.select(sa.literal_column("1").label("one")).subquery("one")
    return (
        sa.select(
            sa.cast(counts[0] + counts[1], sa.BigInteger).label("total"),
            page.c.wire,
            _display_name(page, p("display", type_=sa.String)),
            sa.cast(as_of, sa.BigInteger).label("clock"),
        )
        .select_from(one.outerjoin(page, sa.true()))
        .order_by(page.c.timestamp_us.desc(), page.c.id.desc())
    )


def _order(source: Any, oldest_first: bool) -> tuple[Any, Any]:
    """The keyset order, (timestamp, id) descending (or ascending), of `source`'s columns."""
    if oldest_first:
        return source.c.timestamp_us.asc(), source.c.id.asc()
    return source.c.timestamp_us.desc(), source.c.id.desc()


def _take_clock_row(rows: list[Any]) -> int:
    """Remove the clock's row (its id is NULL) from a page's rows; its clock."""
    for i in range(len(rows) - 1, -1, -1):
        if rows[i][1] is None:
            return int(rows.pop(i)[0])
    raise AssertionError("a page statement returns its clock row")


def _display_name(events: Any, display_property: Any) -> Any:
    """The aggregator's display property when it is a non-empty string, else the payload's `name`
    when it is a non-empty string, else the metric key."""

    def non_empty_string(key: Any) -> Any:
        text = prop_text(events.c.properties, key)
        return sa.case((sa.and_(prop_type(events.c.properties, key) == "string", text != ""), text))

    return sa.func.coalesce(
        non_empty_string(display_property), non_empty_string("name"), events.c.metric_key
    ).label("name")


def _filters_key(filters: tuple[PropertyFilter, ...]) -> str:
    """Filters as JSON text: a key that tells 1, 1.0 and true apart (as equal dataclasses do not)."""
    return json.dumps(
        [[f.conditional, [[c.property, c.operator, c.value] for c in f.conditions]] for f in filters]
    )


def _filter(value: Any) -> PropertyFilter | None:
    # Through the driver's own cursor, JSON comes back decoded on PostgreSQL, as text on SQLite.
    return filter_from_json(json.loads(value) if isinstance(value, str) else value)


_OPTIONAL_FILTERS = {
    "customer_id": lambda t, v: t.c.customer_id == v,
    "product_id": lambda t, v: t.c.product_id == v,
    "subscription_id": lambda t, v: t.c.subscription_id == v,
    "occurred_after_us": lambda t, v: t.c.timestamp_us >= v,
    "occurred_before_us": lambda t, v: t.c.timestamp_us < v,
}
