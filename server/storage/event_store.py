"""Ingestion storage: events stored exactly once per idempotency key, in one transaction.

Keys are claimed with INSERT .. ON CONFLICT DO NOTHING in the same transaction as the events, so a
key maps to exactly one stored event under any concurrency or retry; the transaction also registers
the customers of the stored events and, where the dialect keeps them, adds the events to the rollups.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from server.deadline import Deadline
from server.domain import IngestOutcome, NewEvent
from server.storage import rollups, schema
from server.storage.dialects import Failure
from server.storage.engine import Database
from server.wire import event_entry

# A deadlock or serialization failure rolls the whole batch back: it simply runs again.
_RETRIES = 3
T = TypeVar("T")


def new_event_id() -> str:
    return f"evt_{uuid.uuid4().hex}"


class EventStore:
    """Writes to the events of one database."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def ingest(
        self, org: str, events: Sequence[NewEvent], now_us: int, deadline: Deadline | None = None
    ) -> list[IngestOutcome]:
        """Store events exactly once per idempotency key; one outcome per event, in order.
        All or nothing: a batch stopped by its deadline stores none of its events."""
        return write_retrying(self._db, deadline, lambda conn: self._ingest(conn, org, events, now_us))

    def _ingest(
        self, conn: Connection, org: str, events: Sequence[NewEvent], now_us: int
    ) -> list[IngestOutcome]:
        dialect = self._db.dialect
        ids = [new_event_id() for _ in events]
        hashes = [e.content_hash() if e.idempotency_key is not None else "" for e in events]
        first_of_key: dict[str, int] = {}
        for i, e in enumerate(events):
            if e.idempotency_key is not None:
                first_of_key.setdefault(e.idempotency_key, i)
        # Sorted claims: concurrent batches lock keys in one order, so they cannot deadlock.
        claims = sorted(first_of_key.items())
        claimed: set[str] = set()
        existing: dict[str, tuple[str, str]] = {}
        if claims:
            claimed = dialect.claim_keys(conn, org, [(k, ids[i], hashes[i]) for k, i in claims])
            existing = _claims_of(conn, org, [k for k, _ in claims if k not in claimed])
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
            outcomes.append(IngestOutcome("DUPLICATE" if hashes[i] == owner_hash else "CONFLICT", owner_id))
        if to_store:
            # The events are recorded at the organization's commit clock (storage/clock.py): taken
            # after the claims, so a batch of DUPLICATEs and CONFLICTs waits for no other writer.
            recorded_us = dialect.commit_clock(conn, org, now_us)
            # Only the stored events register customers: a DUPLICATE or CONFLICT changes nothing.
            # Claims first, then customers, each sorted: every batch locks in one order.
            dialect.insert_customers(conn, org, sorted({events[i].customer_id for i in to_store}), now_us)
            dialect.insert_events(conn, [event_row(org, ids[i], events[i], recorded_us) for i in to_store])
            if dialect.keeps_rollups:
                rollups.add_events(conn, org, [events[i] for i in to_store])
        return outcomes


def write_retrying(db: Database, deadline: Deadline | None, work: Callable[[Connection], T]) -> T:
    """`work` in a write transaction, run again (up to _RETRIES times) when the database rolled it
    back for a deadlock or a serialization failure."""
    for attempt in range(_RETRIES):
        try:
            with db.write(deadline) as conn:
                return work(conn)
        except sa.exc.DBAPIError as exc:
            if db.dialect.classify(exc) is not Failure.RETRY or attempt == _RETRIES - 1:
                raise
    raise AssertionError("unreachable")


def _claims_of(conn: Connection, org: str, keys: list[str]) -> dict[str, tuple[str, str]]:
    """(event id, content hash) of keys claimed earlier."""
    ik = schema.idempotency_keys.c
    found: dict[str, tuple[str, str]] = {}
    for chunk in _chunks(keys, 500):
        for r in conn.execute(
            sa.select(ik.idempotency_key, ik.event_id, ik.content_hash).where(
                ik.organization_id == org, ik.idempotency_key.in_(chunk)
            )
        ):
            found[r.idempotency_key] = (r.event_id, r.content_hash)
    return found


def event_row(org: str, event_id: str, e: NewEvent, now_us: int) -> tuple[Any, ...]:
    """An events row in schema.EVENT_COLUMNS order, properties as JSON text."""
    return (
        org,
        event_id,
        e.customer_id,
        e.metric_key,
        e.timestamp_us,
        now_us,
        e.quantity,
        e.product_id,
        e.subscription_id,
        e.price_key,
        e.idempotency_key,
        e.external_cost_amount,
        e.external_cost_currency,
        e.wallet_currency,
        e.canonical_properties(),
        event_entry(org, event_id, e, now_us),
    )


def _chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
