"""Rollups: hourly counts and exact quantity sums that answer AggregateUsage without the events.

Three tables (schema.py): per (organization, UTC hour, metric key); per (organization, rolled-up
property key, UTC hour, property value, metric key); and per (organization, customer, metric key,
UTC hour). Ingestion updates all three in its own transaction, in one statement, from the batch it
has just inserted and with the same SQL expressions the raw aggregate uses, and a void subtracts
its events in its own (`remove_events`), so at every instant they are exactly the sums of the
committed events. `rebuild` recomputes them from the events (after
a restore, or to check them); `add_dimension` starts rolling up one more property key and
backfills it. PostgreSQL only (the dialect's `keeps_rollups`; schema.py says why).

`rollup_window` decides when a rollup may answer: an event's hour must decide its bucket, so every
UTC offset of the time zone a whole number of hours changing on whole hours; no product or
subscription filter (rollups do not keep them); a customer filter only without dim:KEY (the
customer rollup keeps metric keys, not properties); and for dim:KEY a rolled-up KEY. The whole
hours of the window come from the rollup, its ragged ends (under an hour each: `until` defaults to
now) from the events.
"""

from __future__ import annotations

from collections.abc import Sequence
from json.encoder import encode_basestring_ascii
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection

from server.domain import AggregateQuery, NewEvent
from server.storage import schema
from server.storage.functions import prop_text

HOUR_US = 3_600_000_000
E = schema.events
M = schema.rollup_metric_hourly
D = schema.rollup_dimension_hourly
C = schema.rollup_customer_hourly
K = schema.rollup_dimensions
TABLES = (M, D, C)

# Integer constants inlined, not bound: the same expression then reads the same in SELECT and GROUP BY.
_HOUR = sa.literal_column(str(HOUR_US), sa.BigInteger)


def hour_of(ts: Any) -> Any:
    """The UTC hour (start, in µs) of a timestamp column; floors before 1970 too."""
    return ts - ((ts % _HOUR) + _HOUR) % _HOUR


def dimension_value(properties: Any, key: Any) -> Any:
    """The group of an event under dim:KEY: the property as text, '' when absent (as the raw query)."""
    return sa.func.coalesce(prop_text(properties, key), "")


def rollup_window(query: AggregateQuery) -> tuple[int, int] | None:
    """[start, end): the whole UTC hours of the query's window a rollup can answer, or None."""
    f = query.filters
    if f.product_id is not None or f.subscription_id is not None:
        return None
    if query.meter is not None and (query.meter.conditions() or query.meter.sums_property()):
        return None  # property conditions and property sums are not rolled up
    if f.customer_id is not None and query.group_by.startswith("dim:"):
        return None
    if any(s.offset_us % HOUR_US for s in query.segments):
        return None
    if any(s.start_us % HOUR_US for s in query.segments[1:]):
        return None
    since = max(query.since_us, f.occurred_after_us if f.occurred_after_us is not None else query.since_us)
    until = min(query.until_us, f.occurred_before_us if f.occurred_before_us is not None else query.until_us)
    start = -(-since // HOUR_US) * HOUR_US
    end = until // HOUR_US * HOUR_US
    return (start, end) if start < end else None


def has_dimension(conn: Connection, key: str) -> bool:
    return conn.execute(sa.select(K.c.dim_key).where(K.c.dim_key == key)).first() is not None


def dimensions(conn: Connection) -> list[str]:
    return list(conn.execute(sa.select(K.c.dim_key).order_by(K.c.dim_key)).scalars())


# ---- maintenance ------------------------------------------------------------------------------
# Deltas are computed from a "source" with the columns organization_id, customer_id, hour_us,
# metric_key, quantity (NUMERIC(38,12), as events store it) and properties (JSONB): either the
# events table (rebuild, backfill) or the batch being ingested, sent as one JSON document (built
# from the properties' JSON the ingest checks already made). One SQL expression per rollup column
# for both, so a batch adds exactly what a recount would.


def _events_source(where: Sequence[Any]) -> Any:
    return (
        sa.select(
            E.c.organization_id,
            E.c.customer_id,
            hour_of(E.c.timestamp_us).label("hour_us"),
            E.c.metric_key,
            E.c.quantity,
            E.c.properties,
        )
        .where(*where)
        .subquery("src")
    )


def _batch_json(events: Sequence[NewEvent]) -> str:
    """The batch as one JSON array, the properties' canonical JSON spliced in (not serialized again)."""
    # A string's JSON as json.dumps writes it, without json.dumps's call overhead (2 strings an event).
    dumps = encode_basestring_ascii
    return (
        "["
        + ",".join(
            f'{{"h":{e.timestamp_us - e.timestamp_us % HOUR_US},"c":{dumps(e.customer_id)},'
            f'"m":{dumps(e.metric_key)},"q":"{e.quantity}","p":{e.canonical_properties()}}}'
            for e in events
        )
        + "]"
    )


def _batch_source(org: str, events: Sequence[NewEvent]) -> Any:
    # Read back from the parameters, not from events: a lookup of the batch's ids in events would
    # depend on the planner choosing the primary key.
    document = sa.cast(sa.bindparam("batch", _batch_json(events), sa.Text), postgresql.JSONB)
    batch = (
        sa.func.jsonb_to_recordset(document)
        .table_valued(
            sa.column("h", sa.BigInteger),
            sa.column("c", sa.Text),
            sa.column("m", sa.Text),
            sa.column("q", sa.Text),
            sa.column("p", postgresql.JSONB),
        )
        .render_derived(name="b", with_types=True)
    )
    return sa.select(
        sa.literal(org, sa.String).label("organization_id"),
        batch.c.c.label("customer_id"),
        batch.c.h.label("hour_us"),
        batch.c.m.label("metric_key"),
        sa.cast(batch.c.q, schema.events.c.quantity.type).label("quantity"),
        batch.c.p.label("properties"),
    ).cte("src")


def _counts(src: Any, sign: int) -> tuple[Any, Any]:
    """The event_count and quantity_sum columns of deltas: added (sign 1) or taken away (-1)."""
    count: Any = sa.func.count()
    total: Any = sa.func.sum(src.c.quantity)
    if sign < 0:
        count, total = -count, -total
    return count.label("event_count"), total.label("quantity_sum")


def _metric_deltas(src: Any, sign: int = 1) -> sa.Select[Any]:
    keys = [src.c.organization_id, src.c.hour_us, src.c.metric_key]
    return (
        sa.select(*keys, *_counts(src, sign))
        .group_by(*keys)
        # One lock order for every transaction that touches the same rollup rows: no deadlocks.
        .order_by(*keys)
    )


def _dimension_deltas(src: Any, where: Sequence[Any] = (), sign: int = 1) -> sa.Select[Any]:
    value = dimension_value(src.c.properties, K.c.dim_key).label("dim_value")
    keys = [src.c.organization_id, K.c.dim_key, src.c.hour_us, value, src.c.metric_key]
    return (
        sa.select(*keys, *_counts(src, sign))
        .select_from(src.join(K, sa.true()))
        .where(*where)
        .group_by(*keys)
        .order_by(*keys)
    )


def _customer_deltas(src: Any, sign: int = 1) -> sa.Select[Any]:
    keys = [src.c.organization_id, src.c.customer_id, src.c.metric_key, src.c.hour_us]
    return sa.select(*keys, *_counts(src, sign)).group_by(*keys).order_by(*keys)


def _add(table: sa.Table, deltas: sa.Select[Any]) -> Any:
    """INSERT the deltas, adding them to the rows that exist."""
    names = [c.name for c in table.columns]
    stmt = postgresql.insert(table).from_select(names, deltas)
    return stmt.on_conflict_do_update(
        index_elements=list(table.primary_key.columns),
        set_={
            "event_count": table.c.event_count + stmt.excluded.event_count,
            "quantity_sum": table.c.quantity_sum + stmt.excluded.quantity_sum,
        },
    )


def add_events(conn: Connection, org: str, events: Sequence[NewEvent]) -> None:
    """Add the events just inserted in this transaction to every rollup: one statement, the batch
    parsed once (data-modifying CTEs run exactly once each)."""
    src = _batch_source(org, events)
    metric = _add(M, _metric_deltas(src)).returning(sa.literal_column("1")).cte("add_metric")
    customer = _add(C, _customer_deltas(src)).returning(sa.literal_column("1")).cte("add_customer")
    # The statement starts after the events were inserted: a dimension added concurrently
    # (add_dimension holds a SHARE lock on events while it backfills) is backfilled with them or
    # read here, never missed.
    conn.execute(_add(D, _dimension_deltas(src)).add_cte(metric, customer))


def remove_events(conn: Connection, org: str, event_ids: Sequence[str]) -> None:
    """Take events out of every rollup, in the transaction that voids them (they are still in
    events, locked by it): the same deltas as adding them, subtracted, in the same key order; rows
    left with no event are deleted, so the rollups stay exactly a recount (which has no such rows)."""
    src = _events_source([E.c.organization_id == org, E.c.id.in_(list(event_ids))])
    hours = sa.select(hour_of(E.c.timestamp_us)).where(
        E.c.organization_id == org, E.c.id.in_(list(event_ids))
    )
    conn.execute(_add(M, _metric_deltas(src, -1)))
    conn.execute(_add(C, _customer_deltas(src, -1)))
    conn.execute(_add(D, _dimension_deltas(src, sign=-1)))
    customers = sa.select(E.c.customer_id).where(E.c.organization_id == org, E.c.id.in_(list(event_ids)))
    for table, narrower in (
        (M, []),
        (C, [C.c.customer_id.in_(customers)]),
        (D, [D.c.dim_key.in_(sa.select(K.c.dim_key))]),
    ):
        conn.execute(
            sa.delete(table).where(
                table.c.organization_id == org,
                *narrower,
                table.c.hour_us.in_(hours),
                table.c.event_count == 0,
            )
        )


def rebuild(conn: Connection) -> None:
    """Recompute every rollup from the events."""
    conn.exec_driver_sql("LOCK TABLE events IN SHARE MODE")  # no ingestion meanwhile
    for table in TABLES:
        conn.execute(sa.delete(table))
    conn.execute(_add(M, _metric_deltas(_events_source([]))))
    conn.execute(_add(D, _dimension_deltas(_events_source([]))))
    conn.execute(_add(C, _customer_deltas(_events_source([]))))


def add_dimension(conn: Connection, key: str, now_us: int) -> bool:
    """Roll up property `key` from now on and backfill it; False when it already was."""
    conn.exec_driver_sql("LOCK TABLE events IN SHARE MODE")
    added = conn.execute(
        postgresql.insert(K)
        .values(dim_key=key, created_at_us=now_us)
        .on_conflict_do_nothing()
        .returning(K.c.dim_key)
    ).first()
    if added is None:
        return False
    conn.execute(_add(D, _dimension_deltas(_events_source([]), [K.c.dim_key == key])))
    return True


def remove_dimension(conn: Connection, key: str) -> bool:
    """Stop rolling up `key` (dim:KEY is then answered from the events); False when it was not."""
    conn.execute(sa.delete(D).where(D.c.dim_key == key))
    return conn.execute(sa.delete(K).where(K.c.dim_key == key)).rowcount > 0


# ---- reading ----------------------------------------------------------------------------------
def source(query: AggregateQuery, org: str, start: int, end: int) -> tuple[Any, Any, Any, list[Any], bool]:
    """(hour column, group expression, value column, WHERE, whether each row is one group's hour)
    of the rollup serving `query`."""
    group: Any
    if query.filters.customer_id is not None:
        table = C
        group = C.c.metric_key if query.group_by == "metric_key" else sa.literal("")
        where = [C.c.customer_id == query.filters.customer_id]
        one_row_per_cell = query.group_by == "metric_key"
    elif query.group_by.startswith("dim:"):
        table, group = D, D.c.dim_value
        where = [D.c.dim_key == query.group_by[4:]]
        one_row_per_cell = False  # a value's hour has a row per metric key
    else:
        table = M
        group = M.c.metric_key if query.group_by == "metric_key" else sa.literal("")
        where = []
        one_row_per_cell = query.group_by == "metric_key"
    column = table.c.event_count if query.metric == "count" else table.c.quantity_sum
    where += [table.c.organization_id == org, table.c.hour_us >= start, table.c.hour_us < end]
    if query.filters.metric_keys:
        where.append(table.c.metric_key.in_(query.filters.metric_keys))
    return table.c.hour_us, group, column, where, one_row_per_cell
