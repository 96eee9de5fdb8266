"""Corrections: voiding and amending events, and the history of an event's versions.

A void moves each event's row from `events` to `voided_events` (schema.py), unchanged, with when,
by whom and why; nothing is deleted from the service's data, and no read of `events` (pages,
totals, aggregates) needs a filter to leave voided events out. In the same transaction it takes
the events out of the rollups and bumps the organization's data version, so no cached answer
(logic/answer_cache.py) computed before the void is served after it.

An amend is a void of the current version (`replaced_by` names the new one) and the insertion of the
new version under a new id, in one transaction: rollups take the old version out and the new one in,
and the event's idempotency key is moved to the new version (its content hash stays the original's,
so a retry of the original ingest is a DUPLICATE of the current version).

Exactly once: the events rows are locked (PostgreSQL `FOR UPDATE`; SQLite has one writer at a
time) before anything is read from them, so of two voids of one event the second waits, then finds
the row gone and the first's record in `voided_events`: ALREADY_VOIDED, with the first void's
record. The primary key of `voided_events` would refuse a second void of one version anyway. An
amend resolves the current version before its transaction and locks it in the transaction: when
another correction took it meanwhile, the amend changes nothing and says which version is current.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from server.deadline import Deadline
from server.decimals import canonical_decimal
from server.domain import AmendResult, Correction, EventVersion, NewEvent, VoidOutcome
from server.storage import rollups, schema
from server.storage.engine import Database
from server.storage.event_store import event_row, new_event_id, write_retrying

E = schema.events
V = schema.voided_events


class CorrectionStore:
    """Voids, amends and histories of the events of one database."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def void(
        self, org: str, event_ids: Sequence[str], void: Correction, deadline: Deadline | None = None
    ) -> list[VoidOutcome]:
        """Void the events of `event_ids` (distinct) that are not voided yet; one outcome per id,
        in order. All or nothing."""
        return write_retrying(self._db, deadline, lambda conn: self._void(conn, org, event_ids, void))

    def _void(
        self, conn: Connection, org: str, event_ids: Sequence[str], void: Correction
    ) -> list[VoidOutcome]:
        ids = sorted(set(event_ids))  # one lock order for every transaction: no deadlocks between voids
        live_now = sa.select(E.c.id).where(E.c.organization_id == org, E.c.id.in_(ids)).order_by(E.c.id)
        live: set[str] = set()
        if conn.execute(live_now.limit(1)).first() is not None:  # else nothing changes: no clock taken
            # The void takes effect at the organization's commit clock (storage/clock.py), taken
            # after its other writers ended: the rows are then locked (and read) as they left them.
            void = dataclasses.replace(void, at_us=self._db.dialect.commit_clock(conn, org, void.at_us))
            live = set(conn.execute(live_now.with_for_update()).scalars())
        earlier = _voids(conn, org, [i for i in ids if i not in live])
        if live:
            mine = sorted(live)
            if self._db.dialect.keeps_rollups:
                rollups.remove_events(conn, org, mine)
            _move_to_voided(conn, org, mine, void, None)
        outcomes = []
        for event_id in event_ids:
            if event_id in live:
                outcomes.append(VoidOutcome(event_id, "VOIDED", void))
            elif event_id in earlier:
                outcomes.append(VoidOutcome(event_id, "ALREADY_VOIDED", earlier[event_id]))
            else:
                outcomes.append(VoidOutcome(event_id, "NOT_FOUND"))
        return outcomes

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
        `change(current)` under a new id. `change` runs in the transaction, and raises to change
        nothing."""
        with self._db.read(deadline) as conn:
            current = _current(conn, org, event_id)
        if current is None:
            return AmendResult("NOT_FOUND")
        current_id, live = current
        if not live:
            return AmendResult("VOIDED", current_id=current_id)
        if expected_id is not None and expected_id != current_id:
            return AmendResult("NOT_CURRENT", current_id=current_id)
        return write_retrying(
            self._db, deadline, lambda conn: self._amend(conn, org, current_id, change, amend)
        )

    def _amend(
        self,
        conn: Connection,
        org: str,
        current_id: str,
        change: Callable[[NewEvent], NewEvent],
        amend: Correction,
    ) -> AmendResult:
        dialect = self._db.dialect
        # The new version is recorded, and the old one voided, at the commit clock (storage/clock.py).
        recorded_us = dialect.commit_clock(conn, org, amend.at_us)
        amend = dataclasses.replace(amend, at_us=recorded_us)
        row = conn.execute(
            sa.select(E).where(E.c.organization_id == org, E.c.id == current_id).with_for_update()
        ).first()
        if row is None:  # another correction of this version committed since it was resolved
            now = _current(conn, org, current_id)
            return AmendResult("RACED", current_id=now[0] if now else current_id)
        new = change(_event_of(row))
        new_id = new_event_id()
        if row.idempotency_key is not None:
            k = schema.idempotency_keys.c
            conn.execute(
                sa.update(schema.idempotency_keys)
                .where(k.organization_id == org, k.idempotency_key == row.idempotency_key)
                .values(event_id=new_id)
            )
        if dialect.keeps_rollups:
            rollups.remove_events(conn, org, [current_id])
        _move_to_voided(conn, org, [current_id], amend, new_id)
        stored = event_row(org, new_id, new, recorded_us)
        dialect.insert_events(conn, [stored])
        if dialect.keeps_rollups:
            rollups.add_events(conn, org, [new])
        return AmendResult(
            "AMENDED", EventVersion(stored[-1]), new_id=new_id, replaced_id=current_id, amend=amend
        )

    def history(self, org: str, event_id: str, deadline: Deadline | None = None) -> list[EventVersion]:
        """The versions of an event, oldest first; empty when the organization has no such event."""
        with self._db.read(deadline) as conn:
            found = _version(conn, org, event_id)
            if found is None:
                return []
            versions = [found]
            while (earlier := _replaced(conn, org, versions[0][0])) is not None:
                versions.insert(0, earlier)
            while (later := versions[-1][1].replaced_by) is not None:
                following = _version(conn, org, later)
                if following is None:  # cannot happen: a version is replaced in the new one's transaction
                    break
                versions.append(following)
        return [version for _, version in versions]


_VERSION_COLUMNS = (V.c.id, V.c.wire, V.c.voided_at_us, V.c.voided_by, V.c.void_reason, V.c.replaced_by)


def _voided_version(row: Any) -> tuple[str, EventVersion]:
    void = Correction(row.voided_at_us, row.voided_by, row.void_reason)
    return row.id, EventVersion(row.wire, void, row.replaced_by)


def _version(conn: Connection, org: str, event_id: str) -> tuple[str, EventVersion] | None:
    """(id, version) of one version of an event, current or voided."""
    live = conn.execute(sa.select(E.c.wire).where(E.c.organization_id == org, E.c.id == event_id)).first()
    if live is not None:
        return event_id, EventVersion(live.wire)
    row = conn.execute(
        sa.select(*_VERSION_COLUMNS).where(V.c.organization_id == org, V.c.id == event_id)
    ).first()
    return None if row is None else _voided_version(row)


def _replaced(conn: Connection, org: str, event_id: str) -> tuple[str, EventVersion] | None:
    """The version that `event_id` replaced, if an amend made it."""
    row = conn.execute(
        sa.select(*_VERSION_COLUMNS).where(V.c.organization_id == org, V.c.replaced_by == event_id)
    ).first()
    return None if row is None else _voided_version(row)


def _current(conn: Connection, org: str, event_id: str) -> tuple[str, bool] | None:
    """(the id of the event's last version, whether it is live) for any of its version ids."""
    while True:
        if conn.execute(sa.select(E.c.id).where(E.c.organization_id == org, E.c.id == event_id)).first():
            return event_id, True
        replaced_by = conn.execute(
            sa.select(V.c.replaced_by).where(V.c.organization_id == org, V.c.id == event_id)
        ).first()
        if replaced_by is None:
            return None
        if replaced_by[0] is None:
            return event_id, False
        event_id = replaced_by[0]


def _move_to_voided(
    conn: Connection, org: str, ids: list[str], correction: Correction, replaced_by: str | None
) -> None:
    """Move rows of events (locked by this transaction) to voided_events, unchanged, with the
    correction that ended them."""
    where = [E.c.organization_id == org, E.c.id.in_(ids)]
    record = [
        sa.literal(correction.at_us, sa.BigInteger),
        sa.literal(correction.actor, sa.String),
        sa.literal(correction.reason, sa.String),
        sa.literal(replaced_by, sa.String) if replaced_by is not None else sa.null(),
    ]
    conn.execute(
        sa.insert(V).from_select([c.name for c in V.columns], sa.select(*E.columns, *record).where(*where))
    )
    conn.execute(sa.delete(E).where(*where))


def _event_of(row: Any) -> NewEvent:
    """The stored version as an event to change (decimals in canonical form)."""
    cost = row.external_cost_amount
    return NewEvent(
        customer_id=row.customer_id,
        metric_key=row.metric_key,
        timestamp_us=row.timestamp_us,
        quantity=canonical_decimal(row.quantity),
        idempotency_key=row.idempotency_key,
        product_id=row.product_id,
        subscription_id=row.subscription_id,
        price_key=row.price_key,
        external_cost_amount=None if cost is None else canonical_decimal(cost),
        external_cost_currency=row.external_cost_currency,
        wallet_currency=row.wallet_currency,
        properties=row.properties if isinstance(row.properties, dict) else json.loads(row.properties),
    )


def _voids(conn: Connection, org: str, ids: list[str]) -> dict[str, Correction]:
    """The recorded voids of those of `ids` that were voided."""
    if not ids:
        return {}
    rows = conn.execute(
        sa.select(V.c.id, V.c.voided_at_us, V.c.voided_by, V.c.void_reason).where(
            V.c.organization_id == org, V.c.id.in_(ids)
        )
    )
    return {r.id: Correction(r.voided_at_us, r.voided_by, r.void_reason) for r in rows}
