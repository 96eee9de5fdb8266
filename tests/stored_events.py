"""Storage-level reads as the tests compare them: stored events decoded from their wire form into
plain dataclasses, and ListCustomerUsageEvents' storage call driven from a metric key and filters.
Importable as `stored_events` (tests/ is on sys.path).

    events = all_events(storage, "org_a")                       # every event, newest first
    total, page = customer_events(storage, "org_a", CustomerEventQuery("cus_1", "api_call", t0, t1))
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any

from google.protobuf import json_format

from server import wire
from server.domain import (
    Aggregator,
    AggregatorFilter,
    Customer,
    CustomerPageQuery,
    EventFilters,
    PropertyFilter,
)
from server.storage.sql_storage import SqlStorage


@dataclasses.dataclass(frozen=True)
class StoredEvent:
    """An event as read back: every field of its wire form (UsageEvent), times in microseconds."""

    id: str
    organization_id: str
    customer_id: str
    metric_key: str
    quantity: str
    timestamp_us: int
    ingested_at_us: int
    product_id: str | None = None
    subscription_id: str | None = None
    price_key: str | None = None
    idempotency_key: str | None = None
    external_cost_amount: str | None = None
    external_cost_currency: str | None = None
    wallet_currency: str | None = None
    properties: dict[str, Any] = dataclasses.field(default_factory=dict)


_OPTIONAL = (
    "product_id",
    "subscription_id",
    "price_key",
    "idempotency_key",
    "external_cost_amount",
    "external_cost_currency",
    "wallet_currency",
)


def decode(entries: list[bytes]) -> list[StoredEvent]:
    out = []
    for e in wire.decode(entries):
        properties = json_format.MessageToDict(e.properties) if e.HasField("properties") else {}
        out.append(
            StoredEvent(
                id=e.id,
                organization_id=e.organization_id,
                customer_id=e.customer_id,
                metric_key=e.metric_key,
                quantity=e.quantity,
                timestamp_us=e.timestamp.ToMicroseconds(),
                ingested_at_us=e.ingested_at.ToMicroseconds(),
                properties={k: _int_if_whole(v) for k, v in properties.items()},
                **{name: getattr(e, name) if e.HasField(name) else None for name in _OPTIONAL},
            )
        )
    return out


def _int_if_whole(v: Any) -> Any:
    # Struct numbers are doubles; the events were ingested with ints where whole (as ingestion does).
    if isinstance(v, float) and v.is_integer() and abs(v) < 2**53:
        return int(v)
    if isinstance(v, list):
        return [_int_if_whole(x) for x in v]
    return v


def all_events(storage: SqlStorage, org: str, filters: EventFilters | None = None) -> list[StoredEvent]:
    rows = storage.reads.list_events(org, filters or EventFilters(), None, 1_000_000)[0]
    return decode([wire for _, _, wire in rows])


@dataclasses.dataclass(frozen=True)
class CustomerEventQuery:
    """ListCustomerUsageEvents by metric key: `filters` (at most two) become the aggregator's own
    filter and one of its aggregator filters."""

    customer_id: str
    metric_key: str
    start_us: int
    end_us: int
    filters: tuple[PropertyFilter, ...] = ()


def customer_events(
    storage: SqlStorage,
    org: str,
    q: CustomerEventQuery,
    take: int = 100,
    skip: int = 0,
    deadline: Any = None,
    as_of_us: int | None = None,
) -> tuple[int, list[StoredEvent]]:
    """(total, page) of `customer_page` for an aggregator made (once) for the query's metric and filters."""
    assert len(q.filters) <= 2
    digest = hashlib.sha256(repr((q.metric_key, q.filters)).encode()).hexdigest()[:16]
    agg_id, filter_id = f"agg_{digest}", None
    if storage.catalog.get_aggregator(org, agg_id) is None:
        own = q.filters[0] if q.filters else None
        storage.catalog.create_aggregator(org, Aggregator(agg_id, agg_id, q.metric_key, filter=own))
        if len(q.filters) == 2:
            storage.catalog.create_aggregator_filter(
                org, AggregatorFilter(f"flt_{digest}", agg_id, "f", q.filters[1])
            )
    if len(q.filters) == 2:
        filter_id = f"flt_{digest}"
    if storage.catalog.get_customer(org, q.customer_id) is None:  # loaded without ingestion
        storage.catalog.create_customer(org, Customer(q.customer_id))
    page = storage.reads.customer_page(
        org,
        CustomerPageQuery(q.customer_id, agg_id, filter_id, q.start_us, q.end_us, take, skip, as_of_us),
        deadline,
    )
    assert page.missing is None, page.missing
    return page.total, decode([w for w, _ in page.events])
