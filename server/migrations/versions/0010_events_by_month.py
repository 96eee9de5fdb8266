"""Events partitioned by month on PostgreSQL (storage/partitions.py); the primary key gains the time.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01

PostgreSQL cannot turn a table into a partitioned one in place, so the events are copied: the old
table is renamed and loses its indexes (their names are the new table's), the new one is created
partitioned by range of timestamp_us, with a partition for every month that holds events, the
months from this one to three ahead, and the default partition; the rows are copied in one
INSERT .. SELECT, and only then are the primary key and the indexes built (each partition's at once,
faster than keeping them up row by row), the old table dropped and the new one analyzed. Nothing
is lost: one transaction does it all, and the row count is compared before the old table goes. It
needs free disk for a second copy of the events and their indexes while it runs;
docs/operations.md gives the time it took at ten million events. The service is stopped
meanwhile, as for any migration.

SQLite keeps one table, rebuilt the same way for its new primary key (organization_id, id,
timestamp_us): the same for both databases, so schema.py describes both.
"""

from __future__ import annotations

import time
from typing import Any

import sqlalchemy as sa
from alembic import op

from server.storage import partitions
from server.storage.partitions import Month

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

Json = sa.JSON().with_variant(sa.dialects.postgresql.JSONB(), "postgresql")
Decimal = sa.Numeric(38, 12, asdecimal=True).with_variant(sa.String(48), "sqlite")
_LISTING_INDEXES = {
    "ix_events_org_time": [],
    "ix_events_customer_metric_time": ["customer_id", "metric_key"],
    "ix_events_customer_time": ["customer_id"],
    "ix_events_metric_time": ["metric_key"],
    "ix_events_product_time": ["product_id"],
    "ix_events_subscription_time": ["subscription_id"],
}
_PARTIAL = {"product_id", "subscription_id"}
_COLUMNS = (
    "organization_id, id, customer_id, metric_key, timestamp_us, ingested_at_us, quantity, product_id,"
    " subscription_id, price_key, idempotency_key, external_cost_amount, external_cost_currency,"
    " wallet_currency, properties, wire"
)


def _columns() -> list[sa.Column[object]]:
    return [
        sa.Column("organization_id", sa.String(128), nullable=False),
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("customer_id", sa.String(128), nullable=False),
        sa.Column("metric_key", sa.String(128), nullable=False),
        sa.Column("timestamp_us", sa.BigInteger, nullable=False),
        sa.Column("ingested_at_us", sa.BigInteger, nullable=False),
        sa.Column("quantity", Decimal, nullable=False),
        sa.Column("product_id", sa.String(128)),
        sa.Column("subscription_id", sa.String(128)),
        sa.Column("price_key", sa.String(128)),
        sa.Column("idempotency_key", sa.String(255)),
        sa.Column("external_cost_amount", Decimal),
        sa.Column("external_cost_currency", sa.String(3)),
        sa.Column("wallet_currency", sa.String(3)),
        sa.Column("properties", Json, nullable=False),
        sa.Column("wire", sa.LargeBinary, nullable=False),
    ]


def upgrade() -> None:
    _rebuild(
        ("organization_id", "id", "timestamp_us"), partitioned=op.get_bind().dialect.name == "postgresql"
    )


def downgrade() -> None:
    _rebuild(("organization_id", "id"), partitioned=False)


def _rebuild(primary_key: tuple[str, ...], partitioned: bool) -> None:
    conn = op.get_bind()
    for name in _LISTING_INDEXES:
        op.drop_index(name, "events")
    op.rename_table("events", "events_before_0010")
    if conn.dialect.name == "postgresql":  # the constraint's name is the new table's
        op.execute("ALTER TABLE events_before_0010 RENAME CONSTRAINT events_pkey TO events_before_0010_pkey")
    kw: dict[str, Any] = {"postgresql_partition_by": "RANGE (timestamp_us)"} if partitioned else {}
    # SQLite cannot add a primary key to a table; PostgreSQL builds it faster after the copy.
    inline_key = conn.dialect.name == "sqlite"
    key = [sa.PrimaryKeyConstraint(*primary_key, name="events_pkey")] if inline_key else []
    op.create_table("events", *_columns(), *key, **kw)
    if partitioned:
        op.execute(f"CREATE TABLE {partitions.DEFAULT_PARTITION} PARTITION OF events DEFAULT")
        months = {
            Month(int(y), int(m))
            for y, m in conn.execute(
                sa.text(
                    "SELECT DISTINCT extract(year FROM t)::int, extract(month FROM t)::int FROM ("
                    " SELECT to_timestamp(timestamp_us / 1000000.0) AT TIME ZONE 'UTC' AS t"
                    " FROM events_before_0010) AS times"
                )
            )
        }
        partitions.create_months(conn, sorted(months))
        partitions.ensure(conn, time.time_ns() // 1000)
    op.execute(f"INSERT INTO events ({_COLUMNS}) SELECT {_COLUMNS} FROM events_before_0010")
    before, after = (
        conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one()
        for table in ("events_before_0010", "events")
    )
    if before != after:  # cannot happen; if it did, the transaction rolls back and nothing changes
        raise RuntimeError(f"events copied: {after} of {before}")
    if not inline_key:
        op.create_primary_key("events_pkey", "events", list(primary_key))
    for name, columns in _LISTING_INDEXES.items():
        where = sa.text(f"{columns[0]} IS NOT NULL") if columns and columns[0] in _PARTIAL else None
        op.create_index(
            name,
            "events",
            ["organization_id", *columns, sa.text("timestamp_us DESC"), sa.text("id DESC")],
            postgresql_where=where,
            sqlite_where=where,
        )
    op.drop_table("events_before_0010")
    if partitioned:  # statistics of the new partitions now, not when autovacuum comes by
        op.execute("ANALYZE events")
