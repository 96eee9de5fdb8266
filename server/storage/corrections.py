"""Corrections: voiding events, and the history of an event's versions.

A void moves each event's row from `events` to `voided_events` (schema.py), unchanged, with when,
by whom and why; nothing is deleted from the service's data, and no read of `events` (pages,
totals, aggregates) needs a filter to leave voided events out. In the same transaction it takes
the events out of the rollups and bumps the organization's data version, so no cached answer
(logic/answer_cache.py) computed before the void is served after it.

Exactly once: the events rows are locked (PostgreSQL `FOR UPDATE`; SQLite has one writer at a
time) before anything is read from them, so of two voids of one event the second waits, then finds
the row gone and the first's record in `voided_events`: ALREADY_VOIDED, with the first void's
record. The primary key of `voided_events` would refuse a second void of one version anyway.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from server.deadline import Deadline
from server.domain import Correction, EventVersion, VoidOutcome
from server.storage import rollups, schema
from server.storage.engine import Database
from server.storage.event_store import bump_version, write_retrying

E = schema.events
V = schema.voided_events


class CorrectionStore:
    """Voids and histories of the events of one database."""

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
        live = set(
            conn.execute(
                sa.select(E.c.id)
                .where(E.c.organization_id == org, E.c.id.in_(ids))
                .order_by(E.c.id)
                .with_for_update()
            ).scalars()
        )
        earlier = _voids(conn, org, [i for i in ids if i not in live])
        if live:
            mine = sorted(live)
            if self._db.dialect.keeps_rollups:
                rollups.remove_events(conn, org, mine)
            where = [E.c.organization_id == org, E.c.id.in_(mine)]
            record = [
                sa.literal(void.at_us, sa.BigInteger),
                sa.literal(void.actor, sa.String),
                sa.literal(void.reason, sa.String),
                sa.null(),
            ]
            conn.execute(
                sa.insert(V).from_select(
                    [c.name for c in V.columns], sa.select(*E.columns, *record).where(*where)
                )
            )
            conn.execute(sa.delete(E).where(*where))
            bump_version(conn, self._db.dialect, org)  # last: its row lock is held only to the commit
        outcomes = []
        for event_id in event_ids:
            if event_id in live:
                outcomes.append(VoidOutcome(event_id, "VOIDED", void))
            elif event_id in earlier:
                outcomes.append(VoidOutcome(event_id, "ALREADY_VOIDED", earlier[event_id]))
            else:
                outcomes.append(VoidOutcome(event_id, "NOT_FOUND"))
        return outcomes

    def history(self, org: str, event_id: str, deadline: Deadline | None = None) -> list[EventVersion]:
        """The versions of an event, oldest first; empty when the organization has no such event."""
        with self._db.read(deadline) as conn:
            live = conn.execute(
                sa.select(E.c.wire).where(E.c.organization_id == org, E.c.id == event_id)
            ).first()
            if live is not None:
                return [EventVersion(live.wire)]
            row = conn.execute(
                sa.select(V.c.wire, V.c.voided_at_us, V.c.voided_by, V.c.void_reason, V.c.replaced_by).where(
                    V.c.organization_id == org, V.c.id == event_id
                )
            ).first()
        if row is None:
            return []
        return [
            EventVersion(
                row.wire, Correction(row.voided_at_us, row.voided_by, row.void_reason), row.replaced_by
            )
        ]


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
