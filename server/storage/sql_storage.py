"""`SqlStorage`: the Storage interface on SQLAlchemy Core, for PostgreSQL and SQLite alike.

Queries are answered by the indexes of schema.py and aggregated in SQL; rows are never pulled into
Python to be filtered or summed. Ingestion claims idempotency keys with INSERT .. ON CONFLICT DO
NOTHING inside the same transaction as the events, so a key maps to exactly one stored event under
any concurrency or retry.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from server.decimals import canonical_decimal
from server.domain import (
    AggregateQuery,
    AggregateRow,
    Aggregator,
    AggregatorFilter,
    Condition,
    Customer,
    CustomerEventQuery,
    EventFilters,
    IngestOutcome,
    NewEvent,
    PropertyFilter,
    StoredEvent,
)
from server.errors import AlreadyExists
from server.storage import bulk, rollups, schema
from server.storage.dialect import quantity_sum
from server.storage.engine import begin, insert_ignore, translate_errors
from server.storage.filters import compile_filter

E = schema.events
_HOUR_US = 3_600_000_000
_DAY_US = 24 * _HOUR_US
_WEEK_US = 7 * _DAY_US
# Shifts keep integer division operands positive (SQL division truncates toward zero).
_SHIFT_WEEKS = 1000
_MONDAY_US = 4 * _DAY_US  # 1970-01-05, the first Monday after the epoch
_DEADLOCK_RETRIES = 3


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


def _filter_to_json(flt: PropertyFilter | None) -> dict[str, Any] | None:
    if flt is None:
        return None
    return {
        "conditional": flt.conditional,
        "fields": [
            {"property": c.property, "operator": c.operator, "value": c.value} for c in flt.conditions
        ],
    }


def _filter_from_json(data: dict[str, Any] | None) -> PropertyFilter | None:
    if data is None:
        return None
    return PropertyFilter(
        conditional=data.get("conditional") or "and",
        conditions=tuple(Condition(f["property"], f["operator"], f.get("value")) for f in data["fields"]),
    )


def _decimal_or_none(value: Any) -> str | None:
    return None if value is None else canonical_decimal(value)


class SqlStorage:
    """Storage over one SQLAlchemy engine (PostgreSQL via psycopg 3, or SQLite)."""

    def __init__(self, engine: Engine, read_rollups: bool = True) -> None:
        self._engine = engine
        # PostgreSQL keeps the rollups (storage/rollups.py) always; `read_rollups=False` answers
        # every aggregate from the events (to compare the two).
        self._rollups = engine.dialect.name == "postgresql"
        self._read_rollups = self._rollups and read_rollups

    @property
    def engine(self) -> Engine:
        return self._engine

    @contextlib.contextmanager
    def _tx(self, timeout_s: float | None = None, write: bool = False) -> Iterator[Connection]:
        with translate_errors(), begin(self._engine, timeout_s=timeout_s, write=write) as conn:
            yield conn

    def ping(self) -> None:
        with self._tx(timeout_s=2.0) as conn:
            conn.execute(sa.text("SELECT 1"))

    def close(self) -> None:
        self._engine.dispose()

    # ---- customers -------------------------------------------------------------------------
    def create_customer(self, org: str, customer: Customer) -> Customer:
        stored = Customer(customer.id or new_id("cus"), customer.name, customer.created_at_us or _now_us())
        with self._tx(write=True) as conn:
            inserted = conn.execute(
                insert_ignore(conn, schema.customers)
                .values(
                    organization_id=org, id=stored.id, name=stored.name, created_at_us=stored.created_at_us
                )
                .returning(schema.customers.c.id)
            ).first()
        if inserted is None:
            raise AlreadyExists(f"customer {stored.id!r} already exists")
        return stored

    def get_customer(self, org: str, customer_id: str) -> Customer | None:
        c = schema.customers.c
        with self._tx() as conn:
            row = conn.execute(
                sa.select(c.id, c.name, c.created_at_us).where(c.organization_id == org, c.id == customer_id)
            ).first()
        return Customer(row.id, row.name, row.created_at_us) if row else None

    def list_customers(self, org: str, after_id: str | None, limit: int) -> list[Customer]:
        c = schema.customers.c
        stmt = sa.select(c.id, c.name, c.created_at_us).where(c.organization_id == org)
        if after_id is not None:
            stmt = stmt.where(c.id > after_id)
        with self._tx() as conn:
            rows = conn.execute(stmt.order_by(c.id).limit(limit)).all()
        return [Customer(r.id, r.name, r.created_at_us) for r in rows]

    # ---- aggregators -----------------------------------------------------------------------
    @staticmethod
    def _aggregator(row: Any) -> Aggregator:
        return Aggregator(
            id=row.id,
            name=row.name,
            event_type=row.event_type,
            operation=row.operation,
            property=row.property,
            unit_name=row.unit_name,
            display_name_property=row.display_name_property,
            filter=_filter_from_json(row.filter),
            created_at_us=row.created_at_us,
            updated_at_us=row.updated_at_us,
        )

    @staticmethod
    def _aggregator_values(a: Aggregator) -> dict[str, Any]:
        return {
            "name": a.name,
            "event_type": a.event_type,
            "operation": a.operation,
            "property": a.property,
            "unit_name": a.unit_name,
            "display_name_property": a.display_name_property,
            "filter": _filter_to_json(a.filter),
        }

    def create_aggregator(self, org: str, aggregator: Aggregator) -> Aggregator:
        now = _now_us()
        agg_id = aggregator.id or new_id("agg")
        values = self._aggregator_values(aggregator)
        with self._tx(write=True) as conn:
            inserted = conn.execute(
                insert_ignore(conn, schema.aggregators)
                .values(organization_id=org, id=agg_id, created_at_us=now, updated_at_us=now, **values)
                .returning(schema.aggregators.c.id)
            ).first()
        if inserted is None:
            raise AlreadyExists(f"aggregator {agg_id!r} already exists")
        stored = self.get_aggregator(org, agg_id)
        assert stored is not None
        return stored

    def get_aggregator(self, org: str, aggregator_id: str) -> Aggregator | None:
        a = schema.aggregators.c
        with self._tx() as conn:
            row = conn.execute(
                sa.select(schema.aggregators).where(a.organization_id == org, a.id == aggregator_id)
            ).first()
        return self._aggregator(row) if row else None

    def list_aggregators(self, org: str, after_id: str | None, limit: int) -> list[Aggregator]:
        a = schema.aggregators.c
        stmt = sa.select(schema.aggregators).where(a.organization_id == org)
        if after_id is not None:
            stmt = stmt.where(a.id > after_id)
        with self._tx() as conn:
            rows = conn.execute(stmt.order_by(a.id).limit(limit)).all()
        return [self._aggregator(r) for r in rows]

    def update_aggregator(self, org: str, aggregator: Aggregator) -> Aggregator | None:
        a = schema.aggregators.c
        with self._tx(write=True) as conn:
            result = conn.execute(
                sa.update(schema.aggregators)
                .where(a.organization_id == org, a.id == aggregator.id)
                .values(updated_at_us=_now_us(), **self._aggregator_values(aggregator))
            )
        if result.rowcount == 0:
            return None
        return self.get_aggregator(org, aggregator.id)

    def delete_aggregator(self, org: str, aggregator_id: str) -> bool:
        a, f = schema.aggregators.c, schema.aggregator_filters.c
        with self._tx(write=True) as conn:
            conn.execute(
                sa.delete(schema.aggregator_filters).where(
                    f.organization_id == org, f.aggregator_id == aggregator_id
                )
            )
            result = conn.execute(
                sa.delete(schema.aggregators).where(a.organization_id == org, a.id == aggregator_id)
            )
        return result.rowcount > 0

    # ---- aggregator filters ----------------------------------------------------------------
    @staticmethod
    def _aggregator_filter(row: Any) -> AggregatorFilter:
        flt = _filter_from_json(row.filter)
        assert flt is not None
        return AggregatorFilter(row.id, row.aggregator_id, row.name, flt, row.created_at_us)

    def create_aggregator_filter(self, org: str, flt: AggregatorFilter) -> AggregatorFilter:
        stored = AggregatorFilter(flt.id or new_id("flt"), flt.aggregator_id, flt.name, flt.filter, _now_us())
        with self._tx(write=True) as conn:
            inserted = conn.execute(
                insert_ignore(conn, schema.aggregator_filters)
                .values(
                    organization_id=org,
                    id=stored.id,
                    aggregator_id=stored.aggregator_id,
                    name=stored.name,
                    filter=_filter_to_json(stored.filter),
                    created_at_us=stored.created_at_us,
                )
                .returning(schema.aggregator_filters.c.id)
            ).first()
        if inserted is None:
            raise AlreadyExists(f"aggregator filter {stored.id!r} already exists")
        return stored

    def get_aggregator_filter(self, org: str, filter_id: str) -> AggregatorFilter | None:
        f = schema.aggregator_filters.c
        with self._tx() as conn:
            row = conn.execute(
                sa.select(schema.aggregator_filters).where(f.organization_id == org, f.id == filter_id)
            ).first()
        return self._aggregator_filter(row) if row else None

    def list_aggregator_filters(self, org: str, aggregator_id: str) -> list[AggregatorFilter]:
        f = schema.aggregator_filters.c
        with self._tx() as conn:
            rows = conn.execute(
                sa.select(schema.aggregator_filters)
                .where(f.organization_id == org, f.aggregator_id == aggregator_id)
                .order_by(f.id)
            ).all()
        return [self._aggregator_filter(r) for r in rows]

    def delete_aggregator_filter(self, org: str, aggregator_id: str, filter_id: str) -> bool:
        f = schema.aggregator_filters.c
        with self._tx(write=True) as conn:
            result = conn.execute(
                sa.delete(schema.aggregator_filters).where(
                    f.organization_id == org, f.aggregator_id == aggregator_id, f.id == filter_id
                )
            )
        return result.rowcount > 0

    # ---- ingestion -------------------------------------------------------------------------
    def ingest(
        self, org: str, events: list[NewEvent], now_us: int, timeout_s: float | None = None
    ) -> list[IngestOutcome]:
        with translate_errors():
            for attempt in range(_DEADLOCK_RETRIES):
                try:
                    return self._ingest_once(org, events, now_us, timeout_s)
                except sa.exc.DBAPIError as exc:
                    # A deadlock or serialization failure rolled the whole batch back: retrying is safe.
                    retryable = getattr(exc.orig, "sqlstate", None) in ("40P01", "40001")
                    if not retryable or attempt == _DEADLOCK_RETRIES - 1:
                        raise
        raise AssertionError("unreachable")

    def _ingest_once(
        self, org: str, events: list[NewEvent], now_us: int, timeout_s: float | None
    ) -> list[IngestOutcome]:
        ids = [new_id("evt") for _ in events]
        hashes = [e.content_hash() if e.idempotency_key is not None else "" for e in events]
        first_of_key: dict[str, int] = {}
        for i, e in enumerate(events):
            if e.idempotency_key is not None:
                first_of_key.setdefault(e.idempotency_key, i)
        ik = schema.idempotency_keys.c
        with begin(self._engine, timeout_s, write=True) as conn:
            # Sorted claims: concurrent batches lock keys in one order, so they cannot deadlock.
            claims = sorted(first_of_key.items())
            claimed: set[str] = set()
            existing: dict[str, tuple[str, str]] = {}
            if claims:
                claimed = bulk.claim_keys(conn, org, [(k, ids[i], hashes[i]) for k, i in claims])
                taken = [k for k, _ in claims if k not in claimed]
                for chunk in _chunks(taken, 500):
                    for r in conn.execute(
                        sa.select(ik.idempotency_key, ik.event_id, ik.content_hash).where(
                            ik.organization_id == org, ik.idempotency_key.in_(chunk)
                        )
                    ):
                        existing[r.idempotency_key] = (r.event_id, r.content_hash)
            outcomes: list[IngestOutcome] = []
            to_store: list[int] = []
            for i, e in enumerate(events):
                key = e.idempotency_key
                if key is None:
                    to_store.append(i)
                    outcomes.append(IngestOutcome("ACCEPTED", ids[i]))
                    continue
                first = first_of_key[key]
                if key in claimed:
                    owner_id, owner_hash = ids[first], hashes[first]
                    if i == first:
                        to_store.append(i)
                        outcomes.append(IngestOutcome("ACCEPTED", ids[i]))
                        continue
                else:
                    owner_id, owner_hash = existing[key]
                same = hashes[i] == owner_hash
                outcomes.append(IngestOutcome("DUPLICATE" if same else "CONFLICT", owner_id))
            if to_store:
                # Only the stored events register customers: a DUPLICATE or CONFLICT changes nothing.
                # Claims first, then customers, each sorted: every batch locks in one order.
                bulk.insert_customers(conn, org, sorted({events[i].customer_id for i in to_store}), now_us)
                bulk.insert_events(conn, [_event_row(org, ids[i], events[i], now_us) for i in to_store])
                if self._rollups:
                    rollups.add_events(conn, org, [events[i] for i in to_store])
        return outcomes

    # ---- queries ---------------------------------------------------------------------------
    def customer_events(
        self, org: str, query: CustomerEventQuery, take: int, skip: int, timeout_s: float | None
    ) -> tuple[int, list[StoredEvent]]:
        where = sa.and_(
            E.c.organization_id == org,
            E.c.customer_id == query.customer_id,
            E.c.metric_key == query.metric_key,
            E.c.timestamp_us >= query.start_us,
            E.c.timestamp_us < query.end_us,
            *[compile_filter(E.c.properties, f) for f in query.filters],
        )
        with self._tx(timeout_s) as conn:
            total = conn.execute(sa.select(sa.func.count()).select_from(E).where(where)).scalar_one()
            rows: Sequence[Any] = []
            if take > 0 and skip < total:
                # The skipped rows are walked in the index alone (an index-only scan when no property
                # filter needs the row); only the page's rows are then read from the table.
                page = (
                    sa.select(E.c.timestamp_us, E.c.id)
                    .where(where)
                    .order_by(E.c.timestamp_us.desc(), E.c.id.desc())
                    .limit(take)
                    .offset(skip)
                    .subquery("page")
                )
                rows = conn.execute(
                    sa.select(E)
                    .join(page, sa.and_(E.c.organization_id == org, E.c.id == page.c.id))
                    .order_by(page.c.timestamp_us.desc(), page.c.id.desc())
                ).all()
        return int(total), [_stored_event(r) for r in rows]

    def list_events(
        self,
        org: str,
        filters: EventFilters,
        after: tuple[int, str] | None,
        limit: int,
        timeout_s: float | None,
    ) -> list[StoredEvent]:
        stmt = sa.select(E).where(*_event_where(org, filters))
        if after is not None:
            stmt = stmt.where(
                sa.tuple_(E.c.timestamp_us, E.c.id) < sa.tuple_(sa.literal(after[0]), sa.literal(after[1]))
            )
        stmt = stmt.order_by(E.c.timestamp_us.desc(), E.c.id.desc()).limit(limit)
        with self._tx(timeout_s) as conn:
            return [_stored_event(r) for r in conn.execute(stmt).all()]

    def aggregate(self, org: str, query: AggregateQuery, timeout_s: float | None) -> list[AggregateRow]:
        with self._tx(timeout_s) as conn:
            window = rollups.rollup_window(query) if self._read_rollups else None
            dimension = query.group_by[4:] if query.group_by.startswith("dim:") else None
            if window is not None and dimension is not None and not rollups.has_dimension(conn, dimension):
                window = None
            parts = []
            if window is None:
                parts.append(self._raw_part(org, query, query.since_us, query.until_us))
            else:
                # Whole hours from the rollup; the ragged ends (under an hour each) from the events.
                start, end = window
                hour, group, value, where = rollups.source(query, org, start, end)
                parts.append(_bucketed(query, hour, group, value, where))
                if query.since_us < start:
                    parts.append(self._raw_part(org, query, query.since_us, start))
                if end < query.until_us:
                    parts.append(self._raw_part(org, query, end, query.until_us))
            if len(parts) == 1:
                stmt = parts[0]
            else:
                union = sa.union_all(*parts).subquery()
                stmt = sa.select(
                    union.c.grp, union.c.bucket_key, sa.func.sum(union.c.value).label("value")
                ).group_by(union.c.grp, union.c.bucket_key)
            # fetchall and tuples: an aggregate can return tens of thousands of rows.
            rows = conn.execute(stmt).all()
            return [AggregateRow(g, int(k), float(v or 0)) for g, k, v in rows]

    @staticmethod
    def _raw_part(org: str, query: AggregateQuery, since_us: int, until_us: int) -> sa.Select[Any]:
        """The aggregate of the events in [since_us, until_us)."""
        ts = E.c.timestamp_us
        if query.group_by == "metric_key":
            group: Any = E.c.metric_key
        elif query.group_by.startswith("dim:"):
            group = rollups.dimension_value(E.c.properties, query.group_by[4:])
        else:
            group = sa.literal("")
        value = sa.func.count() if query.metric == "count" else quantity_sum(E.c.quantity)
        where = [*_event_where(org, query.filters), ts >= since_us, ts < until_us]
        return _bucketed(query, ts, group, value, where)


def _bucketed(query: AggregateQuery, ts: Any, group: Any, value: Any, where: list[Any]) -> sa.Select[Any]:
    """SELECT grp, bucket_key, value ... GROUP BY grp, bucket_key, with the query's bucket keys of `ts`."""
    offset = _offset_expr(ts, query)
    local = ts + offset
    if query.bucket == "hour":
        shift = _SHIFT_WEEKS * _WEEK_US
        key = ((local + shift) // _HOUR_US) * _HOUR_US - shift - offset
    elif query.bucket == "day":
        shift_days = _SHIFT_WEEKS * 7
        key = (local + shift_days * _DAY_US) // _DAY_US - shift_days
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


def _event_where(org: str, f: EventFilters) -> list[Any]:
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


def _event_row(org: str, event_id: str, e: NewEvent, now_us: int) -> dict[str, Any]:
    return {
        "organization_id": org,
        "id": event_id,
        "customer_id": e.customer_id,
        "metric_key": e.metric_key,
        "timestamp_us": e.timestamp_us,
        "ingested_at_us": now_us,
        "quantity": e.quantity,
        "product_id": e.product_id,
        "subscription_id": e.subscription_id,
        "price_key": e.price_key,
        "idempotency_key": e.idempotency_key,
        "external_cost_amount": e.external_cost_amount,
        "external_cost_currency": e.external_cost_currency,
        "wallet_currency": e.wallet_currency,
        "properties": e.properties,
    }


def _stored_event(r: Any) -> StoredEvent:
    return StoredEvent(
        id=r.id,
        organization_id=r.organization_id,
        customer_id=r.customer_id,
        metric_key=r.metric_key,
        quantity=canonical_decimal(r.quantity),
        timestamp_us=r.timestamp_us,
        ingested_at_us=r.ingested_at_us,
        product_id=r.product_id,
        subscription_id=r.subscription_id,
        price_key=r.price_key,
        idempotency_key=r.idempotency_key,
        external_cost_amount=_decimal_or_none(r.external_cost_amount),
        external_cost_currency=r.external_cost_currency,
        wallet_currency=r.wallet_currency,
        properties=r.properties or {},
    )


def _chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _now_us() -> int:
    return time.time_ns() // 1000
