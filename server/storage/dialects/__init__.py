"""Every difference between PostgreSQL and SQLite, in one object per database, chosen once.

`Dialect` names what differs; `PostgresDialect` (postgres.py) and `SqliteDialect` (sqlite.py) are
the two answers, each module also holding the SQL text of the functions in storage/functions.py
for its database. The rest of storage is dialect-neutral SQLAlchemy Core and asks the dialect
object (`Database.dialect`) wherever the two differ: creating the engine, transactions with a
deadline and their cancellation, reading errors, bulk writes, rollups and migrations.

Known differences in answers (docs/api.md): array-valued dimension keys, and numbers of 2**53 or
more, group under each database's own JSON text of the value (`[1,2]` / `1e+20` on SQLite,
`[1, 2]` / `100000000000000000000` on PostgreSQL).
"""

from __future__ import annotations

import contextlib
import enum
from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from server.deadline import Deadline

# The engine execution option holding the statement timeout every connection applies (PostgreSQL).
DEFAULT_TIMEOUT_OPTION = "usage_statement_timeout_s"
# The engine execution option holding the engine of Database.fetch's single-statement reads, where
# the dialect gives them one of their own (PostgreSQL; else they use the engine itself).
SINGLE_READS_OPTION = "usage_single_reads_engine"


class Failure(enum.Enum):
    """What a driver error means for the call (Dialect.classify)."""

    DEADLINE = "deadline"  # the statement was stopped by its timeout or a cancellation
    RETRY = "retry"  # a deadlock or serialization failure: the transaction may simply run again
    UNAVAILABLE = "unavailable"  # the database cannot be reached or used right now
    OTHER = "other"  # a bug: INTERNAL


class Dialect:
    """The interface; see the two implementations."""

    name: str
    # Whether ingestion keeps the rollups (storage/rollups.py) and aggregates may read them.
    keeps_rollups: bool
    # Whether the events table is partitioned by month (storage/partitions.py).
    partitions_events: bool

    def create_engine(
        self, url: sa.URL, pool_size: int, pool_timeout_s: float, timeout_s: float | None
    ) -> Engine:
        raise NotImplementedError

    def transaction(
        self, conn: Connection, deadline: Deadline, write: bool
    ) -> contextlib.AbstractContextManager[Connection]:
        """Run `conn` in a transaction (committed on success) bounded by `deadline`."""
        raise NotImplementedError

    def stopper(self, raw: Any) -> Callable[[], None]:
        """A function that stops the statement running on a driver connection, from another thread."""
        raise NotImplementedError

    def classify(self, exc: sa.exc.DBAPIError) -> Failure:
        raise NotImplementedError

    def fetch(self, raw: Any, sql: str, params: Any, prepare: bool = True) -> list[tuple[Any, ...]]:
        """Run compiled SQL on a driver connection: every row, as tuples (engine.Prepared);
        `prepare`: as a statement prepared once per connection, where the database has them.
        Driver errors leave as SQLAlchemy's DBAPIError, as if SQLAlchemy had run the statement."""
        raise NotImplementedError

    def read_once(
        self,
        raw: Any,
        sql: str,
        params: Any,
        deadline: Deadline,
        default_timeout_s: float | None,
        prepare: bool = True,
    ) -> list[tuple[Any, ...]]:
        """One read statement on an idle pooled driver connection, outside any transaction, bounded
        by `deadline` (engine.Database.fetch: the hot single-statement reads)."""
        raise NotImplementedError

    def insert(self, table: sa.Table) -> Any:
        """An INSERT that supports ON CONFLICT (`on_conflict_do_nothing/update`)."""
        raise NotImplementedError

    def insert_customers(self, conn: Connection, org: str, customer_ids: Sequence[str], now_us: int) -> None:
        """Register the customers (sorted ids) that do not exist yet."""
        raise NotImplementedError

    def claim_keys(self, conn: Connection, org: str, claims: Sequence[tuple[str, str, str]]) -> set[str]:
        """Claim (idempotency key, event id, content hash) rows, keys sorted; the keys this call won."""
        raise NotImplementedError

    def insert_events(self, conn: Connection, rows: Sequence[Sequence[Any]]) -> None:
        """Insert event rows (tuples in schema.EVENT_COLUMNS order; new ids, nothing conflicts)."""
        raise NotImplementedError

    def lock_for_migration(self, conn: Connection) -> None:
        """Serialise concurrent `migrate` runs for the rest of this transaction."""
        raise NotImplementedError

    # ---- the commit clock (storage/clock.py says what it guarantees and why) -------------------
    def commit_clock(self, conn: Connection, org: str, at_least_us: int) -> int:
        """In a write transaction that changes `org`'s events: wait for the organization's other
        writers, then take and return its next commit clock (microseconds), strictly after its last
        one, the floor and the database's clock now, and not before `at_least_us` (the service's
        own clock: stored times never run behind it); the organization's data version goes up by one."""
        raise NotImplementedError

    def clock_state(self, db: Any, org: str, deadline: Deadline) -> tuple[int, int, int]:
        """(the organization's last commit clock, 0 if none; the floor; the clock now), read by
        one statement of `db.fetch_sql`."""
        raise NotImplementedError

    def settle(self, db: Any, org: str, as_of_us: int, deadline: Deadline) -> bool:
        """Wait until every writer of `org` that could take a commit clock at or before `as_of_us`
        has committed or rolled back; False (and no wait) when `as_of_us` is not before now."""
        raise NotImplementedError

    # ---- months of events (storage/partitions.py; where `partitions_events`) -------------------
    def month_partitions(self, conn: Connection) -> list[Any]:
        """The months (partitions.Month) that have a partition of events, in order."""
        return []

    def default_partition_months(self, conn: Connection) -> list[Any]:
        """The months that have events in the default partition, in order."""
        return []

    def create_month(self, conn: Connection, month: Any) -> int:
        """Create the partition of `month`, moving its rows out of the default partition in the
        same transaction; how many moved."""
        raise NotImplementedError

    def drop_months(self, conn: Connection, months: Sequence[Any]) -> None:
        """Drop the partitions of `months`, with their events."""
        raise NotImplementedError


def dialect_of(engine: Engine) -> Dialect:
    """The dialect object of an engine made by `create_engine` (or any engine of these databases)."""
    return dialect_named(engine.dialect.name)


def dialect_named(name: str) -> Dialect:
    from server.storage.dialects.postgres import PostgresDialect
    from server.storage.dialects.sqlite import SqliteDialect

    for dialect in (PostgresDialect.INSTANCE, SqliteDialect.INSTANCE):
        if dialect.name == name:
            return dialect
    raise ValueError(f"unsupported database {name!r}: use postgresql+psycopg or sqlite")
