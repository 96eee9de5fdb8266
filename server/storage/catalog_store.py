"""Catalog storage: customers, aggregators (billable metrics, with their own filter) and named
aggregator filters. Filters are kept as JSON documents and compiled to SQL where they are used
(storage/filters.py).

Writes to an aggregator and to its filters are serialised per aggregator: each runs in one
transaction that first locks the aggregator's row (SELECT .. FOR UPDATE on PostgreSQL; SQLite's
writers hold its one write lock from BEGIN IMMEDIATE), then checks and writes. So a filter is never
created beside a deletion of its aggregator (no orphan, nothing reappears on a later aggregator of
the same id), the filter limit is counted under the lock, and an update reads what it changes.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from server.deadline import Deadline
from server.domain import Aggregator, AggregatorFilter, Condition, Customer, PropertyFilter
from server.errors import AlreadyExists
from server.storage import schema
from server.storage.engine import Database

A = schema.aggregators
F = schema.aggregator_filters


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


def now_us() -> int:
    return time.time_ns() // 1000


def _filter_to_json(flt: PropertyFilter | None) -> dict[str, Any] | None:
    if flt is None:
        return None
    return {
        "conditional": flt.conditional,
        "fields": [
            {"property": c.property, "operator": c.operator, "value": c.value} for c in flt.conditions
        ],
    }


def filter_from_json(data: dict[str, Any] | None) -> PropertyFilter | None:
    if data is None:
        return None
    return PropertyFilter(
        conditional=data.get("conditional") or "and",
        conditions=tuple(Condition(f["property"], f["operator"], f.get("value")) for f in data["fields"]),
    )


class CatalogStore:
    """The catalog tables of one database."""

    def __init__(self, db: Database) -> None:
        self._db = db

    # ---- customers -------------------------------------------------------------------------
    def create_customer(self, org: str, customer: Customer, deadline: Deadline | None = None) -> Customer:
        stored = Customer(customer.id or new_id("cus"), customer.name, customer.created_at_us or now_us())
        with self._db.write(deadline) as conn:
            inserted = conn.execute(
                self._db.dialect.insert(schema.customers)
                .on_conflict_do_nothing()
                .values(
                    organization_id=org, id=stored.id, name=stored.name, created_at_us=stored.created_at_us
                )
                .returning(schema.customers.c.id)
            ).first()
        if inserted is None:
            raise AlreadyExists(f"customer {stored.id!r} already exists")
        return stored

    def get_customer(self, org: str, customer_id: str, deadline: Deadline | None = None) -> Customer | None:
        c = schema.customers.c
        with self._db.read(deadline) as conn:
            row = conn.execute(
                sa.select(c.id, c.name, c.created_at_us).where(c.organization_id == org, c.id == customer_id)
            ).first()
        return Customer(row.id, row.name, row.created_at_us) if row else None

    def list_customers(
        self, org: str, after_id: str | None, limit: int, deadline: Deadline | None = None
    ) -> list[Customer]:
        c = schema.customers.c
        stmt = sa.select(c.id, c.name, c.created_at_us).where(c.organization_id == org)
        if after_id is not None:
            stmt = stmt.where(c.id > after_id)
        with self._db.read(deadline) as conn:
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
            filter=filter_from_json(row.filter),
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

    @staticmethod
    def _locked_aggregator(conn: Connection, org: str, aggregator_id: str) -> Any:
        """The aggregator's row, locked until the transaction ends (None when it does not exist)."""
        where = (A.c.organization_id == org, A.c.id == aggregator_id)
        return conn.execute(sa.select(A).where(*where).with_for_update()).first()

    def create_aggregator(
        self, org: str, aggregator: Aggregator, deadline: Deadline | None = None
    ) -> Aggregator:
        now = now_us()
        agg_id = aggregator.id or new_id("agg")
        values = self._aggregator_values(aggregator)
        with self._db.write(deadline) as conn:
            row = conn.execute(
                self._db.dialect.insert(A)
                .on_conflict_do_nothing()
                .values(organization_id=org, id=agg_id, created_at_us=now, updated_at_us=now, **values)
                .returning(*A.c)
            ).first()
            if row is not None:
                # A new aggregator starts without filters, whatever an older version left behind.
                conn.execute(sa.delete(F).where(F.c.organization_id == org, F.c.aggregator_id == agg_id))
        if row is None:
            raise AlreadyExists(f"aggregator {agg_id!r} already exists")
        return self._aggregator(row)

    def get_aggregator(
        self, org: str, aggregator_id: str, deadline: Deadline | None = None
    ) -> Aggregator | None:
        with self._db.read(deadline) as conn:
            row = conn.execute(
                sa.select(A).where(A.c.organization_id == org, A.c.id == aggregator_id)
            ).first()
        return self._aggregator(row) if row else None

    def list_aggregators(
        self, org: str, after_id: str | None, limit: int, deadline: Deadline | None = None
    ) -> list[Aggregator]:
        stmt = sa.select(A).where(A.c.organization_id == org)
        if after_id is not None:
            stmt = stmt.where(A.c.id > after_id)
        with self._db.read(deadline) as conn:
            rows = conn.execute(stmt.order_by(A.c.id).limit(limit)).all()
        return [self._aggregator(r) for r in rows]

    def update_aggregator(
        self,
        org: str,
        aggregator_id: str,
        change: Callable[[Aggregator], Aggregator],
        deadline: Deadline | None = None,
    ) -> Aggregator | None:
        """Store `change(current)` in place of the aggregator, read and written under its lock (an
        exception from `change` changes nothing); None when it does not exist."""
        with self._db.write(deadline) as conn:
            current = self._locked_aggregator(conn, org, aggregator_id)
            if current is None:
                return None
            updated = change(self._aggregator(current))
            row = conn.execute(
                sa.update(A)
                .where(A.c.organization_id == org, A.c.id == aggregator_id)
                .values(updated_at_us=now_us(), **self._aggregator_values(updated))
                .returning(*A.c)
            ).one()
        return self._aggregator(row)

    def delete_aggregator(self, org: str, aggregator_id: str, deadline: Deadline | None = None) -> bool:
        with self._db.write(deadline) as conn:
            if self._locked_aggregator(conn, org, aggregator_id) is None:
                return False
            conn.execute(sa.delete(F).where(F.c.organization_id == org, F.c.aggregator_id == aggregator_id))
            conn.execute(sa.delete(A).where(A.c.organization_id == org, A.c.id == aggregator_id))
        return True

    # ---- aggregator filters ----------------------------------------------------------------
    @staticmethod
    def _aggregator_filter(row: Any) -> AggregatorFilter:
        flt = filter_from_json(row.filter)
        assert flt is not None
        return AggregatorFilter(row.id, row.aggregator_id, row.name, flt, row.created_at_us)

    def create_aggregator_filter(
        self,
        org: str,
        flt: AggregatorFilter,
        admit: Callable[[int], None] = lambda _count: None,
        deadline: Deadline | None = None,
    ) -> AggregatorFilter | None:
        """Attach a filter to its aggregator, under the aggregator's lock; None when the aggregator
        does not exist. `admit` gets the number of filters it has and raises to refuse another."""
        with self._db.write(deadline) as conn:
            if self._locked_aggregator(conn, org, flt.aggregator_id) is None:
                return None
            # Its time is taken under the lock: never before the aggregator it joins was created.
            stored = AggregatorFilter(
                flt.id or new_id("flt"), flt.aggregator_id, flt.name, flt.filter, now_us()
            )
            count = conn.execute(
                sa.select(sa.func.count())
                .select_from(F)
                .where(F.c.organization_id == org, F.c.aggregator_id == stored.aggregator_id)
            ).scalar_one()
            admit(count)
            inserted = conn.execute(
                self._db.dialect.insert(F)
                .on_conflict_do_nothing()
                .values(
                    organization_id=org,
                    id=stored.id,
                    aggregator_id=stored.aggregator_id,
                    name=stored.name,
                    filter=_filter_to_json(stored.filter),
                    created_at_us=stored.created_at_us,
                )
                .returning(F.c.id)
            ).first()
        if inserted is None:
            raise AlreadyExists(f"aggregator filter {stored.id!r} already exists")
        return stored

    def get_aggregator_filter(
        self, org: str, filter_id: str, deadline: Deadline | None = None
    ) -> AggregatorFilter | None:
        with self._db.read(deadline) as conn:
            row = conn.execute(sa.select(F).where(F.c.organization_id == org, F.c.id == filter_id)).first()
        return self._aggregator_filter(row) if row else None

    def list_aggregator_filters(
        self, org: str, aggregator_id: str, deadline: Deadline | None = None
    ) -> list[AggregatorFilter]:
        with self._db.read(deadline) as conn:
            rows = conn.execute(
                sa.select(F)
                .where(F.c.organization_id == org, F.c.aggregator_id == aggregator_id)
                .order_by(F.c.id)
            ).all()
        return [self._aggregator_filter(r) for r in rows]

    def delete_aggregator_filter(
        self, org: str, aggregator_id: str, filter_id: str, deadline: Deadline | None = None
    ) -> bool:
        where = (F.c.organization_id == org, F.c.aggregator_id == aggregator_id, F.c.id == filter_id)
        with self._db.write(deadline) as conn:
            result = conn.execute(sa.delete(F).where(*where))
        return result.rowcount > 0
