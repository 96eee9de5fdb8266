"""Engines, and `Database`: transactions bounded by a call's deadline, driver errors as domain errors.

- `make_engine(url)`: the engine of the database `url` names, made by its dialect object
  (storage/dialects); nothing connects until first use.
- `Database.read(deadline)` / `Database.write(deadline)`: one pooled connection in a transaction
  (reads may run in autocommit: see the dialects), committed on success. While it runs, a
  cancellation of the call stops the running statement (server/deadline.py). Driver failures leave
  as Unavailable / DeadlineExceeded / Cancelled, without driver text; anything else is a bug.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from server.deadline import Deadline
from server.errors import Unavailable
from server.storage.dialects import (
    DEFAULT_TIMEOUT_OPTION,
    SINGLE_READS_OPTION,
    Dialect,
    Failure,
    dialect_named,
    dialect_of,
)

log = logging.getLogger(__name__)


def make_engine(
    url: str, pool_size: int = 10, pool_timeout_s: float = 5.0, statement_timeout_s: float | None = None
) -> Engine:
    """An engine for `url`. On PostgreSQL `statement_timeout_s` is every statement's limit unless its
    call's deadline is shorter."""
    parsed = sa.engine.make_url(url)
    backend = parsed.get_backend_name()
    if backend not in ("postgresql", "sqlite"):
        raise ValueError(
            f"unsupported database URL scheme {parsed.drivername!r}: use postgresql+psycopg or sqlite"
        )
    return dialect_named(backend).create_engine(parsed, pool_size, pool_timeout_s, statement_timeout_s)


class Reader(Protocol):
    """One read statement on the connection of a `Database.reader`: its rows."""

    def __call__(self, sql: str, params: Any, prepare: bool = True) -> list[tuple[Any, ...]]: ...


class Prepared:
    """A SELECT compiled once for one database and run on the driver's own cursor: no compilation,
    no result objects per call, rows as tuples (the pages' hot path, where SQLAlchemy's execution
    cost as much as the query). Values are bound by name: every variable is a `bindparam`."""

    def __init__(self, engine: Engine, stmt: sa.Select[Any], prepare: bool = True) -> None:
        # False: never prepared, so planned for each call's values (through a main-pool reader,
        # where plans are PostgreSQL's choice): a statement whose best plan depends on its values.
        self.prepare = prepare
        compiled = stmt.compile(dialect=engine.dialect)
        self.sql = compiled.string
        # Constants of the statement (literals become parameters too), overridden by the call's values.
        self._constants = {k: v for k, v in compiled.params.items() if v is not None}
        # Positional drivers (sqlite3) take the values in this order; named ones (psycopg) a dict.
        self._names: tuple[str, ...] | None = (
            tuple(compiled.positiontup) if compiled.positiontup is not None else None
        )

    def params(self, values: dict[str, Any]) -> Any:
        if self._constants:
            values = {**self._constants, **values}
        return values if self._names is None else tuple(values[n] for n in self._names)

    def read(self, read: Reader, values: dict[str, Any]) -> list[tuple[Any, ...]]:
        """The rows of this statement through a `Database.reader`."""
        return read(self.sql, self.params(values), self.prepare)

    def fetch(self, db: Database, conn: Connection, values: dict[str, Any]) -> list[tuple[Any, ...]]:
        """The rows of this statement on a connection of `db.read` / `db.write`."""
        params = self.params(values)
        # SQLAlchemy's statement events still fire (statement logs, tracing, the EXPLAIN tests).
        for listener in conn.dispatch.before_cursor_execute:
            listener(conn, None, self.sql, params, None, False)
        return db.dialect.fetch(conn.connection.driver_connection, self.sql, params)


class Database:
    """An engine and its dialect object, chosen once."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.dialect: Dialect = dialect_of(engine)
        # The statement timeout every connection applies (PostgreSQL; make_engine).
        self._default_timeout: float | None = engine.get_execution_options().get(DEFAULT_TIMEOUT_OPTION)
        # Where `fetch` reads: the dialect's pool for single-statement reads, if it made one.
        self._single: Engine = engine.get_execution_options().get(SINGLE_READS_OPTION, engine)

    @contextlib.contextmanager
    def read(self, deadline: Deadline | None = None) -> Iterator[Connection]:
        with self._transaction(deadline or Deadline.none(), write=False) as conn:
            yield conn

    @contextlib.contextmanager
    def write(self, deadline: Deadline | None = None) -> Iterator[Connection]:
        with self._transaction(deadline or Deadline.none(), write=True) as conn:
            yield conn

    def fetch(
        self, prepared: Prepared, values: dict[str, Any], deadline: Deadline | None = None
    ) -> list[tuple[Any, ...]]:
        """The rows of one Prepared read, on a pooled driver connection of its own: no SQLAlchemy
        Connection or transaction around it (what a page's one statement needs, at a fraction of
        their cost). Bounded and cancellable like `read`."""
        return self.fetch_sql(prepared.sql, prepared.params(values), deadline)

    def fetch_sql(self, sql: str, params: Any, deadline: Deadline | None = None) -> list[tuple[Any, ...]]:
        """`fetch` of SQL text in the driver's own parameter style (the dialects' fixed statements)."""
        with self.reader(deadline) as read:
            return read(sql, params)

    @contextlib.contextmanager
    def reader(self, deadline: Deadline | None = None, single: bool = True) -> Iterator[Reader]:
        """`fetch_sql` for the few reads of one call that depend on each other (a customer page's
        catalog lookup, then its page): one pooled driver connection for all of them, each read a
        statement of its own, bounded and cancellable like `read`. `single`: from the pool of
        `fetch` (on PostgreSQL always a generic plan); else from the main pool, where a prepared
        statement's plan is PostgreSQL's choice and an unprepared one is planned for its values."""
        deadline = deadline or Deadline.none()
        with self.translate_errors(deadline):
            dbapi_error = self.engine.dialect.loaded_dbapi.Error
            try:
                pooled = (self._single if single else self.engine).raw_connection()
            except dbapi_error as exc:  # unlike connect(), raw_connection() leaves it unwrapped
                raise sa.exc.DBAPIError.instance(None, None, exc, dbapi_error) from exc
            raw = pooled.driver_connection
            listeners = self.engine.dispatch.before_cursor_execute

            def read(sql: str, params: Any, prepare: bool = True) -> list[tuple[Any, ...]]:
                # SQLAlchemy's statement events still fire (statement logs, tracing, the EXPLAIN tests).
                for listener in listeners:
                    listener(None, None, sql, params, None, False)
                with deadline.cancelling(self.dialect.stopper(raw)):
                    return self.dialect.read_once(raw, sql, params, deadline, self._default_timeout, prepare)

            try:
                yield read
            except sa.exc.DBAPIError as exc:
                if self.dialect.classify(exc) is Failure.UNAVAILABLE:
                    pooled.invalidate()  # not back to the pool: the next checkout opens a new one
                raise
            finally:
                pooled.close()

    @contextlib.contextmanager
    def _transaction(self, deadline: Deadline, write: bool) -> Iterator[Connection]:
        with (
            self.translate_errors(deadline),
            self.engine.connect() as conn,
            deadline.cancelling(self.dialect.stopper(conn.connection.driver_connection)),
            self.dialect.transaction(conn, deadline, write) as tx,
        ):
            yield tx

    @contextlib.contextmanager
    def translate_errors(self, deadline: Deadline | None = None) -> Iterator[None]:
        """Driver errors a client may cause or suffer, as domain errors; the rest propagate (INTERNAL)."""
        try:
            yield
        except sa.exc.TimeoutError as exc:  # no pooled connection became free in time
            log.warning("database pool exhausted: %s", exc)
            raise Unavailable("the database is busy; retry later") from exc
        except sa.exc.DBAPIError as exc:
            failure = self.dialect.classify(exc)
            if failure is Failure.DEADLINE:
                raise (deadline or Deadline.none()).stopped_error() from exc
            if failure is Failure.UNAVAILABLE:
                log.warning("database unavailable: %s", exc.orig)
                raise Unavailable("the database is unavailable; retry later") from exc
            raise
