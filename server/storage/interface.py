"""The storage interfaces the logic layer depends on, one per concern. `SqlStorage` implements them
for PostgreSQL and SQLite; the contract suite (tests/storage) runs the same cases against both.

Every method takes the organization first and never touches another organization's rows. A
`Deadline` bounds the work (server/deadline.py): past it, or once the call is cancelled, a method
raises DeadlineExceeded or Cancelled; a lost database raises Unavailable (server/errors.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from server.deadline import Deadline
from server.domain import (
    AggregateAnswer,
    AggregateQuery,
    Aggregator,
    AggregatorFilter,
    AmendResult,
    ClockState,
    Correction,
    Customer,
    CustomerPage,
    CustomerPageQuery,
    EventFilters,
    EventVerdicts,
    EventVersion,
    IngestOutcome,
    Meter,
    MeterRanking,
    MeterValue,
    NewEvent,
    PageRow,
    VoidOutcome,
)


class CatalogStorage(Protocol):
    """create_* raise AlreadyExists for a taken id; get_* return None when absent. Writes to an
    aggregator and its filters are serialised per aggregator: the callbacks of update_aggregator and
    create_aggregator_filter run under its lock, and raise to change nothing."""

    def create_customer(self, org: str, customer: Customer, deadline: Deadline | None = None) -> Customer: ...
    def get_customer(
        self, org: str, customer_id: str, deadline: Deadline | None = None
    ) -> Customer | None: ...
    def list_customers(
        self, org: str, after_id: str | None, limit: int, deadline: Deadline | None = None
    ) -> list[Customer]: ...
    def create_aggregator(
        self, org: str, aggregator: Aggregator, deadline: Deadline | None = None
    ) -> Aggregator: ...
    def get_aggregator(
        self, org: str, aggregator_id: str, deadline: Deadline | None = None
    ) -> Aggregator | None: ...
    def list_aggregators(
        self, org: str, after_id: str | None, limit: int, deadline: Deadline | None = None
    ) -> list[Aggregator]: ...
    def update_aggregator(
        self,
        org: str,
        aggregator_id: str,
        change: Callable[[Aggregator], Aggregator],
        deadline: Deadline | None = None,
    ) -> Aggregator | None: ...
    def delete_aggregator(self, org: str, aggregator_id: str, deadline: Deadline | None = None) -> bool: ...
    def create_aggregator_filter(
        self,
        org: str,
        flt: AggregatorFilter,
        admit: Callable[[int], None] = ...,
        deadline: Deadline | None = None,
    ) -> AggregatorFilter | None: ...
    def get_aggregator_filter(
        self, org: str, filter_id: str, deadline: Deadline | None = None
    ) -> AggregatorFilter | None: ...
    def list_aggregator_filters(
        self, org: str, aggregator_id: str, deadline: Deadline | None = None
    ) -> list[AggregatorFilter]: ...
    def delete_aggregator_filter(
        self, org: str, aggregator_id: str, filter_id: str, deadline: Deadline | None = None
    ) -> bool: ...


class EventStorage(Protocol):
    def ingest(
        self, org: str, events: Sequence[NewEvent], now_us: int, deadline: Deadline | None = None
    ) -> list[IngestOutcome]:
        """Store events exactly once per idempotency key; one outcome per event, in order.
        All or nothing: a batch stopped by its deadline stores none of its events."""
        ...


class EventReadStorage(Protocol):
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
        """Events strictly after the keyset position `after` (timestamp_us, id), newest first, or
        oldest first; and the organization's commit clock in the same snapshot (or, as of
        `as_of_us`, the events as they were then, and `as_of_us`)."""
        ...

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
        """The event and the aggregator's (and named filter's) verdicts on it, computed by the SQL
        the customer pages filter with; `customer_id` None: the event's own customer. As of
        `as_of_us`: the event's version of then (an event recorded later is not found)."""
        ...

    def data_version(self, org: str, deadline: Deadline | None = None) -> int:
        """A counter incremented by every transaction that changes the organization's events: an
        answer computed from the events at one version stays right while it is unchanged."""
        ...

    def customer_page(
        self, org: str, query: CustomerPageQuery, deadline: Deadline | None = None
    ) -> CustomerPage:
        """One customer's events of one aggregator (and optionally one of its filters) in a window:
        the total and the page (timestamp desc, id desc), or what was not found. One connection.
        As of `query.as_of_us` when set; the answer's clock_us says which clock it was read at."""
        ...


class AggregateStorage(Protocol):
    def aggregate(self, org: str, query: AggregateQuery, deadline: Deadline | None = None) -> AggregateAnswer:
        """Exact values per ranked series and bucket; buckets without events are absent. As of
        `query.as_of_us` when set (from the events), else now with the clock read (clock_us)."""
        ...


class CorrectionStorage(Protocol):
    def void(
        self, org: str, event_ids: Sequence[str], void: Correction, deadline: Deadline | None = None
    ) -> list[VoidOutcome]:
        """Void the events of `event_ids` (distinct) that are not voided yet, recording `void`; one
        outcome per id, in order. A voided event stops counting in every read and aggregate (rollups
        included) and bumps the data version, in one transaction; it is kept, never deleted."""
        ...

    def amend(
        self,
        org: str,
        event_id: str,
        expected_id: str | None,
        change: Callable[[NewEvent], NewEvent],
        amend: Correction,
        deadline: Deadline | None = None,
    ) -> AmendResult:
        """Replace the current version of the event `event_id` (any of its version ids) by
        `change(current)` under a new id, voiding it with `amend` and a link to the new one, in one
        transaction (rollups, idempotency key and data version included). `change` runs under the
        version's lock and raises to change nothing."""
        ...

    def history(self, org: str, event_id: str, deadline: Deadline | None = None) -> list[EventVersion]:
        """The versions of an event, oldest first; empty when the organization has no such event."""
        ...


class MeterStorage(Protocol):
    def customer_values(
        self,
        org: str,
        customer_id: str,
        meters: Sequence[Meter],
        start_us: int,
        end_us: int,
        deadline: Deadline | None = None,
        as_of_us: int | None = None,
    ) -> tuple[list[MeterValue], int]:
        """One customer's value of each meter in [start_us, end_us), in order (totals as decimal
        text), and the clock read with them (as of `as_of_us` when set, and then that)."""
        ...

    def ranking(
        self,
        org: str,
        meter: Meter,
        start_us: int,
        end_us: int,
        take: int,
        skip: int,
        deadline: Deadline | None = None,
        as_of_us: int | None = None,
    ) -> MeterRanking:
        """Customers with events of the meter, by value descending then id: rows [skip, skip + take)."""
        ...


class ClockStorage(Protocol):
    def state(self, org: str, deadline: Deadline | None = None) -> ClockState:
        """The organization's last commit clock, the floor and the clock now (storage/clock.py)."""
        ...

    def settle(self, org: str, as_of_us: int, deadline: Deadline | None = None) -> bool:
        """Wait until no writer of the organization can still commit at or before `as_of_us`;
        False when it is not in the past."""
        ...

    def issued(self, clock_us: int) -> int:
        """The `as_of` of an answer read with the organization's commit clock `clock_us`."""
        ...


class Storage(Protocol):
    @property
    def catalog(self) -> CatalogStorage: ...
    @property
    def events(self) -> EventStorage: ...
    @property
    def reads(self) -> EventReadStorage: ...
    @property
    def aggregates(self) -> AggregateStorage: ...
    @property
    def corrections(self) -> CorrectionStorage: ...
    @property
    def meters(self) -> MeterStorage: ...
    @property
    def clocks(self) -> ClockStorage: ...

    def ping(self) -> None: ...
    def close(self) -> None: ...
