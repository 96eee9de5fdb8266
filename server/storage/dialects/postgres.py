"""PostgreSQL (psycopg 3): the engine, transactions, errors, bulk writes and SQL text of this database.

- Reads run in autocommit, bounded by the connection's own `statement_timeout` (the default query
  timeout) and by cancellation when the call ends early (server/deadline.py): no BEGIN, SET or
  COMMIT round trips. A transaction gets `SET LOCAL statement_timeout` when its deadline is
  shorter than the default and nothing else enforces it.
- No pre-ping round trip on checkout: a pooled connection whose server side went away has a
  readable socket (the server's goodbye or EOF) while it idles, which a zero-timeout poll sees.
- Bulk writes take one round trip each: customers and idempotency claims as one INSERT .. SELECT
  FROM json_to_recordset(the batch as one JSON document) .. ON CONFLICT DO NOTHING, events with
  COPY.
"""

from __future__ import annotations

import contextlib
import json
import re
import select
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import psycopg
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.ext.compiler import compiles

from server.deadline import Deadline
from server.storage import functions as fn
from server.storage import schema
from server.storage.dialects import DEFAULT_TIMEOUT_OPTION, SINGLE_READS_OPTION, Dialect, Failure
from server.storage.partitions import DEFAULT_PARTITION, Month

# pg_advisory_xact_lock key of migrations: any fixed bigint no other lock of this database uses.
MIGRATION_LOCK_KEY = 0x75736167656D6967  # "usagemig"
# The session option of the single-statement reads' pool (create_engine says why).
GENERIC_PLAN_OPTION = "-c plan_cache_mode=force_generic_plan"


_NEVER = 2**31  # executions of one statement by one connection

# Months of events (storage/partitions.py): the partitions, and the months of the default's rows.
_PARTITION_NAMES = "SELECT inhrelid::regclass::text FROM pg_inherits WHERE inhparent = 'events'::regclass"
_MONTH_NAME = re.compile(r"events_y(\d{4})m(\d{2})")
_DEFAULT_MONTHS = (
    "SELECT DISTINCT extract(year FROM t)::int, extract(month FROM t)::int FROM ("
    " SELECT to_timestamp(timestamp_us / 1000000.0) AT TIME ZONE 'UTC' AS t"
    f" FROM {DEFAULT_PARTITION}) AS times ORDER BY 1, 2"
)


class PostgresDialect(Dialect):
    name = "postgresql"
    keeps_rollups = True
    partitions_events = True
    INSTANCE: PostgresDialect

    def create_engine(
        self, url: sa.URL, pool_size: int, pool_timeout_s: float, timeout_s: float | None
    ) -> Engine:
        if url.drivername == "postgresql":
            url = url.set(drivername="postgresql+psycopg")
        # Prepared statements: only the hot, value-independent ones of engine.Prepared (pages,
        # lookups), whose plans PostgreSQL may then keep generic (planning a page cost more than
        # running it). Everything else runs unprepared, so planned for its values: psycopg would
        # otherwise prepare any statement run 5 times, and a generic plan for a count over one
        # customer's events ignores that customers differ in size (a heavy one's count went from
        # 80 ms to 700 ms that way).
        options = [f"-c statement_timeout={max(1, int(timeout_s * 1000))}"] if timeout_s is not None else []
        engine = _engine(url, pool_size, pool_timeout_s, options)
        # The single-statement reads of Database.fetch (list pages, data versions, the commit
        # clock) run on a pool of their own whose sessions always use the generic plan of a
        # prepared statement: with the events partitioned by month, PostgreSQL's own choice kept
        # planning a page at every call (a custom plan looks cheaper than a generic one over every
        # partition, pruned only as it runs), and planning cost twice the page's execution (0.8 ms
        # against 0.33 ms a page at 10M events). The setting applies to unprepared statements
        # too, so the main pool, whose statements must be planned for their values, keeps `auto`.
        single = _engine(url, pool_size, pool_timeout_s, [*options, GENERIC_PLAN_OPTION])
        sa.event.listen(engine, "engine_disposed", lambda _engine: single.dispose())
        return engine.execution_options(**{DEFAULT_TIMEOUT_OPTION: timeout_s, SINGLE_READS_OPTION: single})

    @contextlib.contextmanager
    def transaction(self, conn: Connection, deadline: Deadline, write: bool) -> Iterator[Connection]:
        own_timeout = _own_timeout(deadline, conn.engine.get_execution_options().get(DEFAULT_TIMEOUT_OPTION))
        if not write and own_timeout is None:
            # Under READ COMMITTED each statement of a transaction takes its own snapshot anyway,
            # so a read loses no consistency in autocommit. Set on the driver's connection and
            # back, not through execution_options(isolation_level=...), whose clone of the
            # Connection and reset at checkin cost more than a page's query (a read issues no
            # BEGIN, so SQLAlchemy's own transaction bookkeeping stays true either way).
            raw = conn.connection.driver_connection
            assert isinstance(raw, psycopg.Connection)
            raw.autocommit = True
            try:
                yield conn
            finally:
                with contextlib.suppress(psycopg.Error):  # a broken connection is discarded anyway
                    raw.autocommit = False
            return
        with conn.begin():
            if own_timeout is not None:
                # Also bounds waits for locks held by other transactions.
                conn.exec_driver_sql(f"SET LOCAL statement_timeout = {own_timeout}")
            yield conn

    def stopper(self, raw: Any) -> Callable[[], None]:
        assert isinstance(raw, psycopg.Connection)

        def stop() -> None:
            # A cancel request on its own connection; the backend ignores one that arrives while it
            # waits for a command, so a late request cannot stop a later statement.
            with contextlib.suppress(psycopg.Error):
                raw.cancel_safe(timeout=2.0)

        return stop

    def classify(self, exc: sa.exc.DBAPIError) -> Failure:
        sqlstate = getattr(exc.orig, "sqlstate", None)
        if sqlstate == "57014":  # query_canceled: statement_timeout or a cancel request
            return Failure.DEADLINE
        if sqlstate in ("40P01", "40001"):  # deadlock_detected, serialization_failure
            return Failure.RETRY
        if exc.connection_invalidated or isinstance(exc, sa.exc.OperationalError | sa.exc.InterfaceError):
            return Failure.UNAVAILABLE
        return Failure.OTHER

    def fetch(self, raw: Any, sql: str, params: Any, prepare: bool = True) -> list[tuple[Any, ...]]:
        try:
            # prepare: parsed once per connection, and planned generically once PostgreSQL finds
            # the generic plan as good as the custom ones (plan_cache_mode auto); else planned for
            # these values (on the main pool: the other one forces generic plans).
            return raw.execute(sql, params, prepare=prepare, binary=True).fetchall()  # type: ignore[no-any-return]
        except psycopg.Error as exc:
            raise sa.exc.DBAPIError.instance(sql, params, exc, psycopg.Error) from exc

    def read_once(
        self,
        raw: Any,
        sql: str,
        params: Any,
        deadline: Deadline,
        default_timeout_s: float | None,
        prepare: bool = True,
    ) -> list[tuple[Any, ...]]:
        assert isinstance(raw, psycopg.Connection)
        own_timeout = _own_timeout(deadline, default_timeout_s)
        raw.autocommit = True  # see transaction(): a read loses nothing outside a transaction
        try:
            if own_timeout is not None:
                self.fetch_nothing(raw, f"SET statement_timeout = {own_timeout}")
            return self.fetch(raw, sql, params, prepare)
        finally:
            with contextlib.suppress(psycopg.Error):  # a broken connection is discarded anyway
                if own_timeout is not None:
                    raw.execute("RESET statement_timeout")  # back to the connection's own
                raw.autocommit = False

    @staticmethod
    def fetch_nothing(raw: psycopg.Connection, sql: str) -> None:
        try:
            raw.execute(sql)
        except psycopg.Error as exc:
            raise sa.exc.DBAPIError.instance(sql, None, exc, psycopg.Error) from exc

    def insert(self, table: sa.Table) -> Any:
        return postgresql.insert(table)

    def insert_customers(self, conn: Connection, org: str, customer_ids: Sequence[str], now_us: int) -> None:
        u = _rows_of(id=list(customer_ids))
        select_ = sa.select(sa.literal(org), u.c.id, sa.literal(""), sa.literal(now_us, sa.BigInteger))
        names = ["organization_id", "id", "name", "created_at_us"]
        conn.execute(postgresql.insert(schema.customers).from_select(names, select_).on_conflict_do_nothing())

    def claim_keys(self, conn: Connection, org: str, claims: Sequence[tuple[str, str, str]]) -> set[str]:
        table = schema.idempotency_keys
        keys, ids, hashes = (list(col) for col in zip(*claims, strict=True))
        u = _rows_of(k=keys, i=ids, h=hashes)
        # ORDER BY: rows are inserted, and their keys locked, in one order in every transaction.
        select_ = sa.select(sa.literal(org), u.c.k, u.c.i, u.c.h).order_by(u.c.k)
        names = ["organization_id", "idempotency_key", "event_id", "content_hash"]
        stmt = (
            postgresql.insert(table)
            .from_select(names, select_)
            .on_conflict_do_nothing()
            .returning(table.c.idempotency_key)
        )
        return set(conn.execute(stmt).scalars())

    def insert_events(self, conn: Connection, rows: Sequence[Sequence[Any]]) -> None:
        raw = conn.connection.driver_connection
        assert isinstance(raw, psycopg.Connection)
        statement = f"COPY events ({', '.join(schema.EVENT_COLUMNS)}) FROM STDIN"
        try:
            with raw.cursor() as cur, cur.copy(statement) as copy:
                for row in rows:
                    copy.write_row(row)
        except psycopg.Error as exc:
            # As SQLAlchemy would have wrapped it, so that classify() reads it like any other.
            raise sa.exc.DBAPIError.instance(statement, None, exc, psycopg.Error) from exc

    def lock_for_migration(self, conn: Connection) -> None:
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})

    def commit_clock(self, conn: Connection, org: str, at_least_us: int) -> int:
        # The lock first, in its own statement: the clock below is then read after every earlier
        # writer of the organization committed, and after any `settle` that got the lock before.
        conn.execute(sa.text(f"SELECT pg_advisory_xact_lock({_CLOCK_LOCK})"), {"org": org})
        return int(conn.execute(sa.text(_COMMIT_CLOCK), {"org": org, "at_least": at_least_us}).scalar_one())

    def clock_state(self, db: Any, org: str, deadline: Deadline) -> tuple[int, int, int]:
        ((clock, floor, now),) = db.fetch_sql(_CLOCK_STATE, {"org": org}, deadline)
        return int(clock), int(floor), int(now)

    def month_partitions(self, conn: Connection) -> list[Any]:
        names = conn.execute(sa.text(_PARTITION_NAMES)).scalars()
        return sorted(Month(int(m[1]), int(m[2])) for n in names if (m := _MONTH_NAME.fullmatch(n)))

    def default_partition_months(self, conn: Connection) -> list[Any]:
        rows = conn.execute(sa.text(_DEFAULT_MONTHS))
        return [Month(int(y), int(m)) for y, m in rows]

    def create_month(self, conn: Connection, month: Any) -> int:
        # Built beside the table and attached: ATTACH takes the default partition's lock, not the
        # table's, so reads of other months go on. The default partition is locked against writes
        # first, so no event of this month can land there between the move and the attach.
        conn.execute(sa.text(f"LOCK TABLE {DEFAULT_PARTITION} IN EXCLUSIVE MODE"))
        name = month.partition
        conn.execute(sa.text(f"CREATE TABLE {name} (LIKE events INCLUDING DEFAULTS)"))
        moved = conn.execute(
            sa.text(
                f"WITH moved AS (DELETE FROM {DEFAULT_PARTITION} WHERE timestamp_us >= :start AND"
                f" timestamp_us < :end RETURNING *) INSERT INTO {name} SELECT * FROM moved"
            ),
            {"start": month.start_us, "end": month.end_us},
        ).rowcount
        conn.execute(
            sa.text(
                f"ALTER TABLE events ATTACH PARTITION {name}"
                f" FOR VALUES FROM ({month.start_us}) TO ({month.end_us})"
            )
        )
        return int(moved)

    def drop_months(self, conn: Connection, months: Sequence[Any]) -> None:
        for month in months:
            conn.execute(sa.text(f"DROP TABLE {month.partition}"))

    def settle(self, db: Any, org: str, as_of_us: int, deadline: Deadline) -> bool:
        # In autocommit the statement is its own transaction: the shared lock is taken once every
        # writer holding the organization's lock has ended, and released at once. CASE reads the
        # clock before it asks for the lock, so any writer that locks later reads a later clock.
        (settled,) = db.fetch_sql(_SETTLE, {"org": org, "as_of": as_of_us}, deadline)[0]
        return bool(settled)


PostgresDialect.INSTANCE = PostgresDialect()


# The organization's writer lock: the two-key advisory lock space (apart from MIGRATION_LOCK_KEY's),
# 0x75736167 ("usag") and a hash of the organization id (a collision only makes two wait in turn).
_CLOCK_LOCK = "1970496871, hashtext(:org)"
_NOW_US = "(extract(epoch FROM clock_timestamp()) * 1000000)::bigint"
_COMMIT_CLOCK = f"""
INSERT INTO organization_versions AS v (organization_id, data_version, clock_us)
SELECT :org, 1, GREATEST({_NOW_US}, :at_least, floor_us + 1) FROM as_of_floor
ON CONFLICT (organization_id) DO UPDATE
SET data_version = v.data_version + 1, clock_us = GREATEST(v.clock_us + 1, excluded.clock_us)
RETURNING clock_us
"""
_CLOCK_STATE = f"""
SELECT coalesce((SELECT clock_us FROM organization_versions WHERE organization_id = %(org)s), 0),
       (SELECT floor_us FROM as_of_floor), {_NOW_US}
"""
_SETTLE = f"""
SELECT CASE WHEN %(as_of)s::bigint < {_NOW_US}
            THEN pg_advisory_xact_lock_shared({_CLOCK_LOCK.replace(":org", "%(org)s")})::text = ''
       END
"""


def _own_timeout(deadline: Deadline, default_timeout_s: float | None) -> int | None:
    """The statement timeout (ms) a call needs besides the connection's own, or None: when its
    deadline is shorter than that default and nothing else enforces it (Deadline.enforced)."""
    timeout = deadline.timeout_s()
    if timeout is None or deadline.enforced:
        return None
    if default_timeout_s is not None and timeout >= default_timeout_s:
        return None
    return max(1, int(timeout * 1000))


def _engine(url: sa.URL, pool_size: int, pool_timeout_s: float, options: list[str]) -> Engine:
    engine = sa.create_engine(
        url,
        pool_size=pool_size,
        max_overflow=0,
        pool_timeout=pool_timeout_s,
        # The pool's reset on return stays: psycopg sends no ROLLBACK for an idle connection
        # (the single-statement reads run in autocommit), and a raw connection returned inside
        # a transaction is still rolled back before anyone else reads on it.
        connect_args={
            "connect_timeout": 5,
            "application_name": "usage-service",
            "options": " ".join(options),
            # Never prepared automatically (None would also refuse prepare=True).
            "prepare_threshold": _NEVER,
        },
    )
    sa.event.listen(engine, "checkout", _discard_if_closed_by_server)
    return engine


def _discard_if_closed_by_server(dbapi_conn: Any, _record: Any, _proxy: Any) -> None:
    """Pool checkout: an idle connection has nothing to read unless its server closed it (a
    terminated backend, a restart); raising DisconnectionError makes the pool take another."""
    try:
        poll = select.poll()  # not select.select: it fails on descriptors past 1023
        poll.register(dbapi_conn.fileno(), select.POLLIN)
        events = poll.poll(0)
    except (OSError, ValueError, psycopg.Error) as exc:
        raise sa.exc.DisconnectionError("closed connection") from exc
    if events:
        raise sa.exc.DisconnectionError("the server closed this connection")


def _rows_of(**columns: list[str]) -> Any:
    """FROM json_to_recordset(:rows) AS u(a text, b text, ...): text columns of a batch, bound as one
    JSON document of rows. (Bound as text arrays they cost psycopg's array dumper about 2 µs an
    element in Python: 7% of an ingest batch's CPU in py-spy, for the 3,000 values of its claims;
    json.dumps writes the same in C.)"""
    names = list(columns)
    rows = json.dumps([dict(zip(names, row, strict=True)) for row in zip(*columns.values(), strict=True)])
    call = sa.func.json_to_recordset(sa.bindparam("rows", rows, sa.Text).cast(postgresql.JSON))
    return call.table_valued(*(sa.column(name, sa.Text) for name in names)).render_derived(
        name="u", with_types=True
    )


# ---- SQL text of storage/functions.py -----------------------------------------------------------
@compiles(fn.prop_type, "postgresql")
def _prop_type(element: fn.prop_type, compiler: Any, **kw: Any) -> str:
    col, key = element.parts(compiler, **kw)
    return f"jsonb_typeof({col} -> {key})"


@compiles(fn.prop_text, "postgresql")
def _prop_text(element: fn.prop_text, compiler: Any, **kw: Any) -> str:
    col, key = element.parts(compiler, **kw)
    # "C" collation: strings compare exactly, byte by byte, whatever the database's locale.
    return f'(({col} ->> {key}) COLLATE "C")'


@compiles(fn.prop_number, "postgresql")
def _prop_number(element: fn.prop_number, compiler: Any, **kw: Any) -> str:
    col, key = element.parts(compiler, **kw)
    return f"(CASE WHEN jsonb_typeof({col} -> {key}) = 'number' THEN ({col} ->> {key})::numeric END)"


@compiles(fn.prop_decimal, "postgresql")
def _prop_decimal(element: fn.prop_decimal, compiler: Any, **kw: Any) -> str:
    # jsonb keeps numbers as numeric: the text of any JSON number (1e+20, 1.5e-7) casts exactly.
    col, key = element.parts(compiler, **kw)
    return f"(CASE WHEN jsonb_typeof({col} -> {key}) = 'number' THEN ({col} ->> {key})::numeric END)"


@compiles(fn.quantity_sum, "postgresql")
def _quantity_sum(element: fn.quantity_sum, compiler: Any, **kw: Any) -> str:
    return f"sum({element.argument(compiler, **kw)})"


@compiles(fn.exact_text, "postgresql")
def _exact_text(element: fn.exact_text, compiler: Any, **kw: Any) -> str:
    # numeric::text never uses an exponent.
    return f"({element.argument(compiler, **kw)})::text"


@compiles(fn.exact_order, "postgresql")
def _exact_order(element: fn.exact_order, compiler: Any, **kw: Any) -> str:
    return element.argument(compiler, **kw)


@compiles(fn.text_order, "postgresql")
def _text_order(element: fn.text_order, compiler: Any, **kw: Any) -> str:
    # UTF-8 bytes in "C" order are code points in order.
    return f'(({element.argument(compiler, **kw)}) COLLATE "C")'


@compiles(fn.month_start_day, "postgresql")
def _month_start_day(element: fn.month_start_day, compiler: Any, **kw: Any) -> str:
    # date - date is an integer number of days; the day number appears once (it may be a long CASE).
    day = element.argument(compiler, **kw)
    return f"((date_trunc('month', DATE '1970-01-01' + ({day})::integer))::date - DATE '1970-01-01')"
