"""Reading events: the organization's keyset pages (ListUsageEvents) and one customer's offset pages
of one aggregator's events with their exact total (ListCustomerUsageEvents).

Both are answered by the indexes of schema.py, newest first by (timestamp, id); property filters are
compiled to SQL (filters.py), never evaluated in Python.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from server.deadline import Deadline
from server.decimals import canonical_decimal
from server.domain import CustomerEventQuery, EventFilters, StoredEvent
from server.storage import schema
from server.storage.engine import Database
from server.storage.filters import compile_filter

E = schema.events


def event_where(org: str, f: EventFilters) -> list[Any]:
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

    def list_events(
        self,
        org: str,
        filters: EventFilters,
        after: tuple[int, str] | None,
        limit: int,
        deadline: Deadline | None = None,
    ) -> list[StoredEvent]:
        """Events strictly after the keyset position `after` (timestamp_us, id), newest first."""
        stmt = sa.select(E).where(*event_where(org, filters))
        if after is not None:
            stmt = stmt.where(
                sa.tuple_(E.c.timestamp_us, E.c.id) < sa.tuple_(sa.literal(after[0]), sa.literal(after[1]))
            )
        stmt = stmt.order_by(E.c.timestamp_us.desc(), E.c.id.desc()).limit(limit)
        with self._db.read(deadline) as conn:
            return [stored_event(r) for r in conn.execute(stmt).all()]

    def customer_events(
        self, org: str, query: CustomerEventQuery, take: int, skip: int, deadline: Deadline | None = None
    ) -> tuple[int, list[StoredEvent]]:
        """(total matching, the page) ordered by timestamp desc, id desc."""
        where = sa.and_(
            E.c.organization_id == org,
            E.c.customer_id == query.customer_id,
            E.c.metric_key == query.metric_key,
            E.c.timestamp_us >= query.start_us,
            E.c.timestamp_us < query.end_us,
            *[compile_filter(E.c.properties, f) for f in query.filters],
        )
        with self._db.read(deadline) as conn:
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
        return int(total), [stored_event(r) for r in rows]


def stored_event(r: Any) -> StoredEvent:
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
        external_cost_amount=None
        if r.external_cost_amount is None
        else canonical_decimal(r.external_cost_amount),
        external_cost_currency=r.external_cost_currency,
        wallet_currency=r.wallet_currency,
        properties=r.properties or {},
    )
