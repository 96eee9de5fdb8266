"""rollup_customer_hourly: one customer's hourly counts and quantity sums per metric key.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01

On PostgreSQL it is filled from the events already stored, in this migration, so the service never
reads a rollup that misses events (the SQL is written out here: a migration must not change when
storage/rollups.py does). SQLite gets the empty table (its store answers from the events).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rollup_customer_hourly",
        sa.Column("organization_id", sa.String(128), primary_key=True),
        sa.Column("customer_id", sa.String(128), primary_key=True),
        sa.Column("metric_key", sa.String(128), primary_key=True),
        sa.Column("hour_us", sa.BigInteger, primary_key=True),
        sa.Column("event_count", sa.BigInteger, nullable=False),
        sa.Column("quantity_sum", sa.Numeric, nullable=False),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "INSERT INTO rollup_customer_hourly "
            "(organization_id, customer_id, metric_key, hour_us, event_count, quantity_sum) "
            "SELECT organization_id, customer_id, metric_key, "
            "timestamp_us - ((timestamp_us % 3600000000) + 3600000000) % 3600000000, count(*), sum(quantity) "
            "FROM events GROUP BY 1, 2, 3, 4"
        )


def downgrade() -> None:
    op.drop_table("rollup_customer_hourly")
