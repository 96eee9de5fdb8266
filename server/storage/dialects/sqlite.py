"""SQLite (the standard library's sqlite3): the engine, transactions, errors, bulk writes and SQL text.

- WAL journal, one writer at a time: writers BEGIN IMMEDIATE (take the write lock up front, waiting
  their turn, instead of failing when a deferred transaction upgrades), readers BEGIN DEFERRED.
- Deadlines: the busy timeout bounds waits for the write lock; a progress handler stops a running
  statement once the call's deadline passed or its client cancelled (server/deadline.py).
- Exact decimals: SQLite has no decimal type, so quantities are stored as canonical decimal text,
  summed by `decimal_sum` (an aggregate function in Python, inside SQLite's own GROUP BY) and
  ordered by the `decimal` collation. No rollups: the embedded store answers from the events.
"""

from __future__ import annotations

import contextlib
import decimal
import pathlib
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.ext.compiler import compiles

from server.deadline import Deadline
from server.decimals import trim_decimal
from server.private_files import private_sqlite_database
from server.storage import functions as fn
from server.storage import schema
from server.storage.dialects import Dialect, Failure

# How long a writer waits for another's lock when its call has no deadline.
BUSY_TIMEOUT_MS = 30_000
# VM instructions between two looks at the deadline (about 0.1 ms of work).
_PROGRESS_STEPS = 10_000


class DecimalSum:
    """Aggregate `decimal_sum(text)`: the exact sum of decimal texts, as canonical decimal text."""

    # Quantities have 24 integer and 12 fractional digits; property numbers are doubles' shortest
    # texts (1e308 .. 5e-324: 633 digits apart). Room for both and billions of them, never rounded.
    CONTEXT = decimal.Context(prec=1000, traps=[decimal.Inexact, decimal.InvalidOperation])

    def __init__(self) -> None:
        self.total = decimal.Decimal(0)

    def step(self, value: str | int | None) -> None:
        if value is not None:
            self.total = self.CONTEXT.add(self.total, decimal.Decimal(value))

    def finalize(self) -> str:
        # format(.., "f") writes every digit of the exact total without an exponent.
        return trim_decimal(format(self.total, "f"))


def _decimal_collation(a: str, b: str) -> int:
    """Collation `decimal`: decimal texts in numeric order."""
    x, y = decimal.Decimal(a), decimal.Decimal(b)
    return (x > y) - (x < y)


class SqliteDialect(Dialect):
    name = "sqlite"
    keeps_rollups = False
    partitions_events = False  # one table: retention deletes rows
    INSTANCE: SqliteDialect

    def create_engine(
        self, url: sa.URL, pool_size: int, pool_timeout_s: float, timeout_s: float | None
    ) -> Engine:
        if url.database and url.database != ":memory:" and not url.database.startswith("file:"):
            private_sqlite_database(pathlib.Path(url.database))
        engine = sa.create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": BUSY_TIMEOUT_MS / 1000},
            pool_size=pool_size,
            pool_timeout=pool_timeout_s,
        )
        sa.event.listen(engine, "connect", _on_connect)
        sa.event.listen(engine, "begin", _on_begin)
        return engine

    @contextlib.contextmanager
    def transaction(self, conn: Connection, deadline: Deadline, write: bool) -> Iterator[Connection]:
        conn = conn.execution_options(usage_write=write)
        raw = conn.connection.driver_connection
        assert isinstance(raw, sqlite3.Connection)
        timeout = deadline.timeout_s()
        busy_ms = BUSY_TIMEOUT_MS if timeout is None else max(1, min(BUSY_TIMEOUT_MS, int(timeout * 1000)))
        # Waiting for another writer's lock (at BEGIN IMMEDIATE) runs no VM steps, so the progress
        # handler cannot stop it: the wait itself is bounded by the deadline.
        raw.execute(f"PRAGMA busy_timeout={busy_ms}")
        # Returning non-zero from the handler interrupts the running statement.
        raw.set_progress_handler(lambda: int(deadline.expired or deadline.cancelled), _PROGRESS_STEPS)
        try:
            with conn.begin():
                yield conn
        except sa.exc.OperationalError as exc:
            if (
                "database is locked" in str(exc.orig)
                and deadline.timeout_s() is not None
                and deadline.expired
            ):
                raise deadline.stopped_error() from exc
            raise
        finally:
            raw.set_progress_handler(None, 0)

    def stopper(self, raw: Any) -> Callable[[], None]:
        assert isinstance(raw, sqlite3.Connection)
        return raw.interrupt

    def classify(self, exc: sa.exc.DBAPIError) -> Failure:
        orig = exc.orig
        if not isinstance(orig, sqlite3.Error):
            return Failure.OTHER
        text = str(orig)
        if isinstance(orig, sqlite3.OperationalError) and "interrupted" in text:
            return Failure.DEADLINE
        # SQLite reports SQL mistakes as OperationalError too: only these mean "not usable now".
        if any(s in text for s in ("database is locked", "unable to open", "disk I/O")):
            return Failure.UNAVAILABLE
        return Failure.OTHER

    def fetch(self, raw: Any, sql: str, params: Any, prepare: bool = True) -> list[tuple[Any, ...]]:
        try:
            return raw.execute(sql, params).fetchall()  # type: ignore[no-any-return]
        except sqlite3.Error as exc:
            raise sa.exc.DBAPIError.instance(sql, params, exc, sqlite3.Error) from exc

    def read_once(
        self,
        raw: Any,
        sql: str,
        params: Any,
        deadline: Deadline,
        default_timeout_s: float | None,
        prepare: bool = True,
    ) -> list[tuple[Any, ...]]:
        assert isinstance(raw, sqlite3.Connection)
        # A lone SELECT in autocommit: its own read transaction (WAL readers wait for nobody).
        raw.set_progress_handler(lambda: int(deadline.expired or deadline.cancelled), _PROGRESS_STEPS)
        try:
            return self.fetch(raw, sql, params, prepare)
        finally:
            raw.set_progress_handler(None, 0)

    def insert(self, table: sa.Table) -> Any:
        return sqlite.insert(table)

    def insert_customers(self, conn: Connection, org: str, customer_ids: Sequence[str], now_us: int) -> None:
        rows = [{"organization_id": org, "id": c, "name": "", "created_at_us": now_us} for c in customer_ids]
        conn.execute(sqlite.insert(schema.customers).on_conflict_do_nothing(), rows)

    def claim_keys(self, conn: Connection, org: str, claims: Sequence[tuple[str, str, str]]) -> set[str]:
        table = schema.idempotency_keys
        rows = [
            {"organization_id": org, "idempotency_key": k, "event_id": i, "content_hash": h}
            for k, i, h in claims
        ]
        stmt = sqlite.insert(table).on_conflict_do_nothing().returning(table.c.idempotency_key)
        return {r[0] for r in conn.execute(stmt, rows)}

    def insert_events(self, conn: Connection, rows: Sequence[Sequence[Any]]) -> None:
        conn.exec_driver_sql(_INSERT_EVENTS, list(map(tuple, rows)))

    def lock_for_migration(self, conn: Connection) -> None:
        pass  # a migration's transaction takes SQLite's one write lock anyway

    # The commit clock is the service host's: every writer of the database is a process on it, and
    # writers take their turn at BEGIN IMMEDIATE, before they read the clock.
    def commit_clock(self, conn: Connection, org: str, at_least_us: int) -> int:
        row = conn.execute(sa.text(_COMMIT_CLOCK), {"org": org, "now": max(now_us(), at_least_us)})
        return int(row.scalar_one())

    def clock_state(self, db: Any, org: str, deadline: Deadline) -> tuple[int, int, int]:
        ((clock, floor),) = db.fetch_sql(_CLOCK_STATE, (org,), deadline)
        return int(clock), int(floor), now_us()

    def settle(self, db: Any, org: str, as_of_us: int, deadline: Deadline) -> bool:
        # The clock before the lock: a writer that begins after this one got it reads a later one.
        if as_of_us >= now_us():
            return False
        with db.write(deadline):  # BEGIN IMMEDIATE: the current writer, if any, has ended
            pass
        return True


SqliteDialect.INSTANCE = SqliteDialect()
_COMMIT_CLOCK = """
INSERT INTO organization_versions AS v (organization_id, data_version, clock_us)
SELECT :org, 1, max(:now, floor_us + 1) FROM as_of_floor WHERE true
ON CONFLICT (organization_id) DO UPDATE
SET data_version = v.data_version + 1, clock_us = max(v.clock_us + 1, excluded.clock_us)
RETURNING clock_us
"""
_CLOCK_STATE = """
SELECT coalesce((SELECT clock_us FROM organization_versions WHERE organization_id = ?), 0),
       (SELECT floor_us FROM as_of_floor)
"""


def now_us() -> int:
    return time.time_ns() // 1000


_INSERT_EVENTS = (
    f"INSERT INTO events ({', '.join(schema.EVENT_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in schema.EVENT_COLUMNS)})"
)


def _on_connect(dbapi_conn: sqlite3.Connection, _record: Any) -> None:
    # Let SQLAlchemy's "begin" event issue BEGIN itself (pysqlite's own handling defers it).
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    cur.close()
    # typeshed types aggregates as int -> int only.
    dbapi_conn.create_aggregate("decimal_sum", 1, DecimalSum)  # type: ignore[arg-type]
    dbapi_conn.create_collation("decimal", _decimal_collation)


def _on_begin(conn: Connection) -> None:
    mode = "IMMEDIATE" if conn.get_execution_options().get("usage_write") else "DEFERRED"
    conn.exec_driver_sql(f"BEGIN {mode}")


# ---- SQL text of storage/functions.py -----------------------------------------------------------
def _path(key_sql: str) -> str:
    # '$."key"' addresses keys containing dots; keys are [A-Za-z0-9_.-] (validated), so no escaping.
    return f"('$.\"' || {key_sql} || '\"')"


@compiles(fn.prop_type, "sqlite")
def _prop_type(element: fn.prop_type, compiler: Any, **kw: Any) -> str:
    col, key = element.parts(compiler, **kw)
    t = f"json_type({col}, {_path(key)})"
    return (
        f"(CASE {t} WHEN 'text' THEN 'string' WHEN 'integer' THEN 'number' WHEN 'real' THEN 'number' "
        f"WHEN 'true' THEN 'boolean' WHEN 'false' THEN 'boolean' ELSE {t} END)"
    )


@compiles(fn.prop_text, "sqlite")
def _prop_text(element: fn.prop_text, compiler: Any, **kw: Any) -> str:
    col, key = element.parts(compiler, **kw)
    path = _path(key)
    # `->` yields the JSON text as stored (numbers keep every digit, booleans read true/false);
    # json_extract would round reals to 15 digits and turn booleans into 0/1.
    return (
        f"(CASE json_type({col}, {path}) WHEN 'text' THEN json_extract({col}, {path}) "
        f"WHEN 'null' THEN NULL ELSE ({col} -> {path}) END)"
    )


@compiles(fn.prop_number, "sqlite")
def _prop_number(element: fn.prop_number, compiler: Any, **kw: Any) -> str:
    col, key = element.parts(compiler, **kw)
    path = _path(key)
    return f"(CASE WHEN json_type({col}, {path}) IN ('integer', 'real') THEN json_extract({col}, {path}) END)"


@compiles(fn.prop_decimal, "sqlite")
def _prop_decimal(element: fn.prop_decimal, compiler: Any, **kw: Any) -> str:
    # The number's JSON text as stored (json_extract would make a REAL of it), for decimal_sum.
    col, key = element.parts(compiler, **kw)
    path = _path(key)
    return f"(CASE WHEN json_type({col}, {path}) IN ('integer', 'real') THEN ({col} -> {path}) END)"


@compiles(fn.quantity_sum, "sqlite")
def _quantity_sum(element: fn.quantity_sum, compiler: Any, **kw: Any) -> str:
    return f"decimal_sum({element.argument(compiler, **kw)})"


@compiles(fn.exact_text, "sqlite")
def _exact_text(element: fn.exact_text, compiler: Any, **kw: Any) -> str:
    # Counts are integers, quantity sums already canonical decimal text.
    return f"CAST({element.argument(compiler, **kw)} AS TEXT)"


@compiles(fn.exact_order, "sqlite")
def _exact_order(element: fn.exact_order, compiler: Any, **kw: Any) -> str:
    # Integers compare as numbers whatever the collation; decimal texts by their value.
    return f"({element.argument(compiler, **kw)} COLLATE decimal)"


@compiles(fn.text_order, "sqlite")
def _text_order(element: fn.text_order, compiler: Any, **kw: Any) -> str:
    # SQLite's BINARY collation compares UTF-8 bytes: code points in order.
    return element.argument(compiler, **kw)


@compiles(fn.month_start_day, "sqlite")
def _month_start_day(element: fn.month_start_day, compiler: Any, **kw: Any) -> str:
    # The day's midnight as Unix seconds, back to its month's first day; julianday() of a midnight
    # is a whole number + .5, so the difference is exact.
    day = element.argument(compiler, **kw)
    return f"CAST(julianday(date(({day}) * 86400, 'unixepoch', 'start of month')) - 2440587.5 AS INTEGER)"
