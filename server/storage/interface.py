"""The storage interface the logic layer depends on. `SqlStorage` implements it for PostgreSQL and
SQLite; the contract suite (tests/storage) runs the same cases against both.

Every method takes the organization first and never touches another organization's rows.
`timeout_s` bounds the statement (the RPC's remaining deadline); exceeding it raises
DeadlineExceeded, a lost database raises Unavailable (both from server.errors).
"""

from __future__ import annotations

from typing import Protocol

from server.domain import (
    AggregateQuery,
    AggregateRow,
    Aggregator,
    AggregatorFilter,
    Customer,
    CustomerEventQuery,
    EventFilters,
    IngestOutcome,
    NewEvent,
    StoredEvent,
)


class Storage(Protocol):
    def ping(self) -> None: ...

    def close(self) -> None: ...

    # Catalog. create_* raise AlreadyExists for a taken id; get_* return None when absent.
    def create_customer(self, org: str, customer: Customer) -> Customer: ...
    def get_customer(self, org: str, customer_id: str) -> Customer | None: ...
    def list_customers(self, org: str, after_id: str | None, limit: int) -> list[Customer]: ...
    def create_aggregator(self, org: str, aggregator: Aggregator) -> Aggregator: ...
    def get_aggregator(self, org: str, aggregator_id: str) -> Aggregator | None: ...
    def list_aggregators(self, org: str, after_id: str | None, limit: int) -> list[Aggregator]: ...
    def update_aggregator(self, org: str, aggregator: Aggregator) -> Aggregator | None: ...
    def delete_aggregator(self, org: str, aggregator_id: str) -> bool: ...
    def create_aggregator_filter(self, org: str, flt: AggregatorFilter) -> AggregatorFilter: ...
    def get_aggregator_filter(self, org: str, filter_id: str) -> AggregatorFilter | None: ...
    def list_aggregator_filters(self, org: str, aggregator_id: str) -> list[AggregatorFilter]: ...
    def delete_aggregator_filter(self, org: str, aggregator_id: str, filter_id: str) -> bool: ...

    # Events.
    def ingest(
        self, org: str, events: list[NewEvent], now_us: int, timeout_s: float | None = None
    ) -> list[IngestOutcome]:
        """Store events exactly once per idempotency key; one outcome per event, in order.
        All or nothing: a batch stopped by its deadline stores none of its events."""
        ...

    def customer_events(
        self, org: str, query: CustomerEventQuery, take: int, skip: int, timeout_s: float | None
    ) -> tuple[int, list[StoredEvent]]:
        """(total matching, the page) ordered by timestamp desc, id desc."""
        ...

    def list_events(
        self,
        org: str,
        filters: EventFilters,
        after: tuple[int, str] | None,
        limit: int,
        timeout_s: float | None,
    ) -> list[StoredEvent]:
        """Events strictly after the keyset position `after` (timestamp_us, id), newest first."""
        ...

    def aggregate(self, org: str, query: AggregateQuery, timeout_s: float | None) -> list[AggregateRow]:
        """Per (group, bucket key) counts or quantity sums; buckets without events are absent."""
        ...
