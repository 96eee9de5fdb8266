"""The three bulk writes of one ingest transaction, each in one round trip.

On PostgreSQL: customers and idempotency claims as a single INSERT .. SELECT FROM unnest(arrays)
.. ON CONFLICT DO NOTHING (one statement and four parameters, whatever the batch size), and the
events with COPY, the fastest way PostgreSQL takes rows. On SQLite (in-process, no round trips):
plain multi-row INSERTs through SQLAlchemy.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import psycopg
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection

from server.storage import schema
from server.storage.engine import insert_ignore

_TEXT_ARRAY = postgresql.ARRAY(sa.Text)
_EVENT_COLUMNS = [c.name for c in schema.events.columns]


def _unnest(**arrays: list[Any]) -> Any:
    """FROM unnest(:a, :b, ...) AS u(a, b, ...) over text arrays bound as single parameters."""
    fn = sa.func.unnest(*(sa.bindparam(name, values, _TEXT_ARRAY) for name, values in arrays.items()))
    return fn.table_valued(*(sa.column(name, sa.Text) for name in arrays)).render_derived(name="u")


def insert_customers(conn: Connection, org: str, customer_ids: Sequence[str], now_us: int) -> None:
    """Register the batch's customers (sorted ids) that do not exist yet."""
    table = schema.customers
    if conn.dialect.name != "postgresql":
        rows = [{"organization_id": org, "id": c, "name": "", "created_at_us": now_us} for c in customer_ids]
        conn.execute(insert_ignore(conn, table), rows)
        return
    u = _unnest(id=list(customer_ids))
    select = sa.select(sa.literal(org), u.c.id, sa.literal(""), sa.literal(now_us, sa.BigInteger))
    names = ["organization_id", "id", "name", "created_at_us"]
    conn.execute(postgresql.insert(table).from_select(names, select).on_conflict_do_nothing())


def claim_keys(conn: Connection, org: str, claims: Sequence[tuple[str, str, str]]) -> set[str]:
    """Claim (idempotency key, event id, content hash) rows, keys sorted; the keys this call won."""
    table = schema.idempotency_keys
    if conn.dialect.name != "postgresql":
        rows = [
            {"organization_id": org, "idempotency_key": k, "event_id": i, "content_hash": h}
            for k, i, h in claims
        ]
        stmt = insert_ignore(conn, table).returning(table.c.idempotency_key)
        return {r[0] for r in conn.execute(stmt, rows)}
    keys, ids, hashes = (list(col) for col in zip(*claims, strict=True))
    u = _unnest(k=keys, i=ids, h=hashes)
    # ORDER BY: rows are inserted, and their keys locked, in one order in every transaction.
    select = sa.select(sa.literal(org), u.c.k, u.c.i, u.c.h).order_by(u.c.k)
    names = ["organization_id", "idempotency_key", "event_id", "content_hash"]
    stmt = (
        postgresql.insert(table)
        .from_select(names, select)
        .on_conflict_do_nothing()
        .returning(table.c.idempotency_key)
    )
    return set(conn.execute(stmt).scalars())


def insert_events(conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
    """Insert event rows (dicts keyed by column name; ids are new, so nothing conflicts)."""
    if conn.dialect.name != "postgresql":
        conn.execute(sa.insert(schema.events), list(rows))
        return
    raw = conn.connection.driver_connection
    assert raw is not None
    statement = f"COPY events ({', '.join(_EVENT_COLUMNS)}) FROM STDIN"
    try:
        with raw.cursor() as cur, cur.copy(statement) as copy:
            for row in rows:
                values = [row[name] for name in _EVENT_COLUMNS]
                values[_PROPERTIES] = json.dumps(row["properties"], ensure_ascii=False)
                copy.write_row(values)
    except psycopg.Error as exc:
        # As SQLAlchemy would have wrapped it: deadline, deadlock retry and "unavailable" are
        # recognised from SQLAlchemy's exception classes (engine.translate_errors).
        raise sa.exc.DBAPIError.instance(statement, None, exc, psycopg.Error) from exc


_PROPERTIES = _EVENT_COLUMNS.index("properties")
