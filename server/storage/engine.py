"""Engines, transactions and error translation for both databases.

- `make_engine`: PostgreSQL (psycopg 3, pooled, pre-ping) or SQLite (WAL, busy timeout, explicit BEGIN).
- `begin`: a transaction whose statements and lock waits stop when `timeout_s` runs out
  (PostgreSQL statement_timeout; SQLite busy timeout + progress handler), so a query never
  outlives its RPC.
- `translate_errors`: driver failures -> Unavailable / DeadlineExceeded, without driver text.
- `insert_ignore`: INSERT .. ON CONFLICT DO NOTHING for the engine's dialect.
"""

from __future__ import annotations

import contextlib
import logging
import pathlib
import sqlite3
import time
from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from server.errors import DeadlineExceeded, Unavailable
from server.storage.dialect import DecimalSum

log = logging.getLogger(__name__)


def make_engine(
    url: str, pool_size: int = 10, pool_timeout_s: float = 5.0, statement_timeout_s: float | None = None
) -> Engine:
    """An engine for `url`; nothing connects until first use. On PostgreSQL `statement_timeout_s`
    is every statement's limit unless `begin` is given a shorter one."""
    parsed = sa.engine.make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            pathlib.Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(
            parsed,
            connect_args={"check_same_thread": False, "timeout": 30},
            pool_size=pool_size,
            pool_timeout=pool_timeout_s,
        )
        sa.event.listen(engine, "connect", _sqlite_on_connect)
        sa.event.listen(engine, "begin", _sqlite_on_begin)
        return engine
    if parsed.get_backend_name() != "postgresql":
        raise ValueError(
            f"unsupported database URL scheme {parsed.drivername!r}: use postgresql+psycopg or sqlite"
        )
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    # Custom plans always: psycopg prepares repeated statements, and after a few executions
    # PostgreSQL may switch to a generic plan that ignores the values; with customers of very
    # different sizes (one heavy customer's count went from 80 ms to 700 ms) the values matter.
    options = ["-c plan_cache_mode=force_custom_plan"]
    if statement_timeout_s is not None:
        options.append(f"-c statement_timeout={max(1, int(statement_timeout_s * 1000))}")
    connect_args: dict[str, Any] = {
        "connect_timeout": 5,
        "application_name": "usage-service",
        "options": " ".join(options),
    }
    engine = sa.create_engine(
        parsed,
        pool_size=pool_size,
        max_overflow=0,
        pool_timeout=pool_timeout_s,
        pool_pre_ping=True,
        connect_args=connect_args,
    )
    return engine.execution_options(**{_DEFAULT_TIMEOUT: statement_timeout_s})


_DEFAULT_TIMEOUT = "usage_statement_timeout_s"


# How long a SQLite writer waits for another's lock when its call has no deadline.
SQLITE_BUSY_TIMEOUT_MS = 30_000


def _sqlite_on_connect(dbapi_conn: sqlite3.Connection, _record: Any) -> None:
    # Let SQLAlchemy's "begin" event issue BEGIN itself (pysqlite's own handling defers it).
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cur.close()
    # Exact quantity sums (dialect.py). typeshed types aggregates as int -> int only.
    dbapi_conn.create_aggregate("decimal_sum", 1, DecimalSum)  # type: ignore[arg-type]


def _sqlite_on_begin(conn: Connection) -> None:
    # Writers take the write lock up front: a deferred transaction that upgrades later can fail
    # with SQLITE_BUSY instead of waiting its turn.
    mode = "IMMEDIATE" if conn.get_execution_options().get("usage_write") else "DEFERRED"
    conn.exec_driver_sql(f"BEGIN {mode}")


@contextlib.contextmanager
def begin(engine: Engine, timeout_s: float | None, write: bool = False) -> Iterator[Connection]:
    """A connection in a transaction, committed on success, bounded by `timeout_s`."""
    with engine.connect() as conn:
        conn = conn.execution_options(usage_write=write)
        if engine.dialect.name == "postgresql":
            default = engine.get_execution_options().get(_DEFAULT_TIMEOUT)
            if not write and (timeout_s is None or (default is not None and timeout_s >= default)):
                # A read that the connection's own statement_timeout bounds well enough: no BEGIN,
                # SET and COMMIT round trips. (Under READ COMMITTED each statement of a transaction
                # takes its own snapshot anyway, so the reads lose no consistency.)
                yield conn.execution_options(isolation_level="AUTOCOMMIT")
                return
            with conn.begin():
                if timeout_s is not None:
                    # Also bounds waits for locks held by other transactions.
                    ms = max(1, int(timeout_s * 1000))
                    conn.exec_driver_sql(f"SET LOCAL statement_timeout = {ms}")
                yield conn
        else:
            with _sqlite_deadline(conn, timeout_s), conn.begin():
                yield conn


@contextlib.contextmanager
def _sqlite_deadline(conn: Connection, timeout_s: float | None) -> Iterator[None]:
    raw = conn.connection.driver_connection
    assert isinstance(raw, sqlite3.Connection)
    if timeout_s is None:
        raw.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        yield
        return
    deadline = time.monotonic() + timeout_s
    # Waiting for another writer's lock (at BEGIN IMMEDIATE) runs no VM steps, so the progress
    # handler cannot stop it: the wait itself is bounded by the deadline.
    raw.execute(f"PRAGMA busy_timeout={max(1, min(SQLITE_BUSY_TIMEOUT_MS, int(timeout_s * 1000)))}")
    # Returning non-zero from the handler interrupts the running statement.
    raw.set_progress_handler(lambda: int(time.monotonic() > deadline), 10_000)
    try:
        yield
    except sa.exc.OperationalError as exc:
        if "database is locked" in str(exc.orig) and time.monotonic() >= deadline - 0.005:
            raise DeadlineExceeded("the query did not finish before the deadline") from exc
        raise
    finally:
        raw.set_progress_handler(None, 0)


@contextlib.contextmanager
def translate_errors() -> Iterator[None]:
    """Driver errors a client may cause or suffer, as domain errors; the rest propagate (INTERNAL)."""
    try:
        yield
    except sa.exc.TimeoutError as exc:  # no pooled connection became free in time
        log.warning("database pool exhausted: %s", exc)
        raise Unavailable("the database is busy; retry later") from exc
    except sa.exc.DBAPIError as exc:
        orig = exc.orig
        if getattr(orig, "sqlstate", None) == "57014" or (
            isinstance(orig, sqlite3.OperationalError) and "interrupted" in str(orig)
        ):
            raise DeadlineExceeded("the query did not finish before the deadline") from exc
        if isinstance(orig, sqlite3.Error):
            # SQLite reports SQL mistakes as OperationalError too: only these mean "not reachable now".
            if any(s in str(orig) for s in ("database is locked", "unable to open", "disk I/O")):
                log.warning("database unavailable: %s", orig)
                raise Unavailable("the database is unavailable; retry later") from exc
            raise
        if exc.connection_invalidated or isinstance(exc, sa.exc.OperationalError | sa.exc.InterfaceError):
            log.warning("database unavailable: %s", exc)
            raise Unavailable("the database is unavailable; retry later") from exc
        raise


def insert_ignore(conn: Connection, table: sa.Table) -> Any:
    """INSERT .. ON CONFLICT DO NOTHING in the connection's dialect."""
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing()
    return sqlite.insert(table).on_conflict_do_nothing()
