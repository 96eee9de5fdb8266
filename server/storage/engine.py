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

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from server.deadline import Deadline
from server.errors import Unavailable
from server.storage.dialects import Dialect, Failure, dialect_named, dialect_of

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


class Database:
    """An engine and its dialect object, chosen once."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.dialect: Dialect = dialect_of(engine)

    @contextlib.contextmanager
    def read(self, deadline: Deadline | None = None) -> Iterator[Connection]:
        with self._transaction(deadline or Deadline.none(), write=False) as conn:
            yield conn

    @contextlib.contextmanager
    def write(self, deadline: Deadline | None = None) -> Iterator[Connection]:
        with self._transaction(deadline or Deadline.none(), write=True) as conn:
            yield conn

    @contextlib.contextmanager
    def _transaction(self, deadline: Deadline, write: bool) -> Iterator[Connection]:
        with (
            self.translate_errors(deadline),
            self.engine.connect() as conn,
            deadline.cancelling(self.dialect.stopper(conn)),
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
