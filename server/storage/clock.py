"""The commit clock, and reading the events as they were at a past moment (`as_of`).

Every transaction that changes an organization's events (ingestion, voids, amends) first takes the
organization's commit clock (`Dialect.commit_clock`): it waits for the organization's writer lock
(PostgreSQL: an advisory transaction lock per organization; SQLite: its one writer at a time), then
reads a clock strictly after the organization's last one, after the floor (as_of_floor) and not
before the database's clock now. It records its events at that clock (`ingested_at_us`) and its
voids too (`voided_at_us`), and keeps it in organization_versions.clock_us until the commit.

What that guarantees, on both databases:

1. Writers of one organization hold its lock from their clock to their commit, so they commit in
   clock order, and a reader's snapshot holds a prefix of them: the last clock it sees, C, is the
   greatest clock among the changes it sees, and every change it does not see has a later clock.
   So an answer read in one statement with C is the answer "as of C", and stays so: nothing can
   later commit at or before C. That is the `as_of` every current answer carries (at least the
   floor: `issued`).
2. The events as of a past moment T are those recorded at or before T and not voided at or before
   T (`events_at`): live events with ingested_at_us <= T, and voided versions with ingested_at_us
   <= T < voided_at_us. Once no writer can still commit with a clock at or before T, that set
   never changes. When T is before the last clock the organization shows, that holds already (1).
   When it is later, `settle` makes it hold: it waits for the writer holding the lock, if any,
   having read the clock before asking; every writer after it reads a later clock, hence after T,
   which must be before now (a later T is refused).

The floor: events and voids stored before migration 0009 were timed by the service's host, not by
this clock, so as_of answers start at the floor, later than each of them. It never changes after
the migration, so each process reads it once.

Past answers are read from `events_at` in place of the events table, by adapting the current
statement (`in_past`): the same SQL, so a past answer cannot be computed differently from a current
one. They never read the rollups, which hold the present.
"""

from __future__ import annotations

import functools
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.sql.util import ClauseAdapter

from server.deadline import Deadline
from server.domain import ClockState
from server.storage import schema
from server.storage.engine import Database

E = schema.events
V = schema.voided_events
OV = schema.organization_versions
S = TypeVar("S", bound=sa.sql.ClauseElement)


def events_at(org: Any, as_of: Any) -> sa.Subquery:
    """The organization's events as of a moment: a FROM with the events table's columns. Both
    parts are read by their own indexes: the organization's events by the query's own, and the
    versions voided since the moment by ix_voided_events_voided_at."""
    live = sa.select(*E.columns).where(E.c.organization_id == org, E.c.ingested_at_us <= as_of)
    gone = sa.select(*(V.c[c.name] for c in E.columns)).where(
        V.c.organization_id == org, V.c.voided_at_us > as_of, V.c.ingested_at_us <= as_of
    )
    return sa.union_all(live, gone).subquery("events_at")


def in_past(stmt: S, org: str, as_of_us: int | None) -> S:
    """`stmt` with the events table replaced by `events_at(org, as_of_us)`; as it is when
    `as_of_us` is None (an answer of now)."""
    if as_of_us is None:
        return stmt
    return ClauseAdapter(events_at(org, as_of_us)).traverse(stmt)  # type: ignore[no-any-return]


def clock_of(org: Any) -> Any:
    """The organization's last commit clock (0 when it has none), as a scalar subquery: read in the
    same statement (the same snapshot) as an answer, it is that answer's clock."""
    clock = sa.select(OV.c.clock_us).where(OV.c.organization_id == org).scalar_subquery()
    return sa.cast(sa.func.coalesce(clock, 0), sa.BigInteger)


def stamp(org: str, as_of_us: int | None) -> Any:
    """The clock column of an answer: the organization's commit clock read in its statement
    (`clock_of`), or the moment it is read as of."""
    return clock_of(org) if as_of_us is None else sa.literal(as_of_us, sa.BigInteger)


class Clocks:
    """The commit clocks of one database, for readers."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def state(self, org: str, deadline: Deadline | None = None) -> ClockState:
        clock, floor, now = self._db.dialect.clock_state(self._db, org, deadline or Deadline.none())
        return ClockState(clock, floor, now)

    def settle(self, org: str, as_of_us: int, deadline: Deadline | None = None) -> bool:
        return self._db.dialect.settle(self._db, org, as_of_us, deadline or Deadline.none())

    @functools.cached_property
    def floor_us(self) -> int:
        """The floor (read once: migration 0009 set it, nothing changes it)."""
        with self._db.read() as conn:
            return int(conn.execute(sa.select(schema.as_of_floor.c.floor_us)).scalar_one())

    def issued(self, clock_us: int) -> int:
        """The `as_of` of an answer read with the organization's clock `clock_us` (clock_of)."""
        return max(clock_us, self.floor_us)
