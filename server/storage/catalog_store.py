"""Catalog storage: customers, aggregators (billable metrics, with their own filter) and named
aggregator filters. Filters are kept as JSON documents and compiled to SQL where they are used
(storage/filters.py)."""

from __future__ import annotations

import time
import uuid
from typing import Any

import sqlalchemy as sa

from server.domain import Aggregator, AggregatorFilter, Condition, Customer, PropertyFilter
from server.errors import AlreadyExists
from server.storage import schema
from server.storage.engine import Database


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
    def create_customer(self, org: str, customer: Customer) -> Customer:
        stored = Customer(customer.id or new_id("cus"), customer.name, customer.created_at_us or now_us())
        with self._db.write() as conn:
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

    def get_customer(self, org: str, customer_id: str) -> Customer | None:
        c = schema.customers.c
        with self._db.read() as conn:
            row = conn.execute(
                sa.select(c.id, c.name, c.created_at_us).where(c.organization_id == org, c.id == customer_id)
            ).first()
        return Customer(row.id, row.name, row.created_at_us) if row else None

    def list_customers(self, org: str, after_id: str | None, limit: int) -> list[Customer]:
        c = schema.customers.c
        stmt = sa.select(c.id, c.name, c.created_at_us).where(c.organization_id == org)
        if after_id is not None:
            stmt = stmt.where(c.id > after_id)
        with self._db.read() as conn:
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

    def create_aggregator(self, org: str, aggregator: Aggregator) -> Aggregator:
        now = now_us()
        agg_id = aggregator.id or new_id("agg")
        values = self._aggregator_values(aggregator)
        with self._db.write() as conn:
            inserted = conn.execute(
                self._db.dialect.insert(schema.aggregators)
                .on_conflict_do_nothing()
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
        with self._db.read() as conn:
            row = conn.execute(
                sa.select(schema.aggregators).where(a.organization_id == org, a.id == aggregator_id)
            ).first()
        return self._aggregator(row) if row else None

    def list_aggregators(self, org: str, after_id: str | None, limit: int) -> list[Aggregator]:
        a = schema.aggregators.c
        stmt = sa.select(schema.aggregators).where(a.organization_id == org)
        if after_id is not None:
            stmt = stmt.where(a.id > after_id)
        with self._db.read() as conn:
            rows = conn.execute(stmt.order_by(a.id).limit(limit)).all()
        return [self._aggregator(r) for r in rows]

    def update_aggregator(self, org: str, aggregator: Aggregator) -> Aggregator | None:
        a = schema.aggregators.c
        with self._db.write() as conn:
            result = conn.execute(
                sa.update(schema.aggregators)
                .where(a.organization_id == org, a.id == aggregator.id)
                .values(updated_at_us=now_us(), **self._aggregator_values(aggregator))
            )
        if result.rowcount == 0:
            return None
        return self.get_aggregator(org, aggregator.id)

    def delete_aggregator(self, org: str, aggregator_id: str) -> bool:
        a, f = schema.aggregators.c, schema.aggregator_filters.c
        with self._db.write() as conn:
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
        flt = filter_from_json(row.filter)
        assert flt is not None
        return AggregatorFilter(row.id, row.aggregator_id, row.name, flt, row.created_at_us)

    def create_aggregator_filter(self, org: str, flt: AggregatorFilter) -> AggregatorFilter:
        stored = AggregatorFilter(flt.id or new_id("flt"), flt.aggregator_id, flt.name, flt.filter, now_us())
        with self._db.write() as conn:
            inserted = conn.execute(
                self._db.dialect.insert(schema.aggregator_filters)
                .on_conflict_do_nothing()
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
        with self._db.read() as conn:
            row = conn.execute(
                sa.select(schema.aggregator_filters).where(f.organization_id == org, f.id == filter_id)
            ).first()
        return self._aggregator_filter(row) if row else None

    def list_aggregator_filters(self, org: str, aggregator_id: str) -> list[AggregatorFilter]:
        f = schema.aggregator_filters.c
        with self._db.read() as conn:
            rows = conn.execute(
                sa.select(schema.aggregator_filters)
                .where(f.organization_id == org, f.aggregator_id == aggregator_id)
                .order_by(f.id)
            ).all()
        return [self._aggregator_filter(r) for r in rows]

    def delete_aggregator_filter(self, org: str, aggregator_id: str, filter_id: str) -> bool:
        f = schema.aggregator_filters.c
        with self._db.write() as conn:
            result = conn.execute(
                sa.delete(schema.aggregator_filters).where(
                    f.organization_id == org, f.aggregator_id == aggregator_id, f.id == filter_id
                )
            )
        return result.rowcount > 0
