"""Rollups (hourly per metric, hourly per rolled-up dimension) and more ListUsageEvents indexes.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22

On PostgreSQL the metric rollup is filled from the events already stored, in this migration, so
the service never reads a rollup that misses events (the SQL is written out here: a migration must
not change when storage/rollups.py does). No dimension is rolled up yet.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_LISTING_INDEXES = {
    "ix_events_customer_time": "customer_id",
    "ix_events_metric_time": "metric_key",
    "ix_events_product_time": "product_id",
    "ix_events_subscription_time": "subscription_id",
}
_PARTIAL = {"product_id", "subscription_id"}


def upgrade() -> None:
    for name, column in _LISTING_INDEXES.items():
        where = sa.text(f"{column} IS NOT NULL") if column in _PARTIAL else None
        op.create_index(
            name,
            "events",
            ["organization_id", column, sa.text("timestamp_us DESC"), sa.text("id DESC")],
            postgresql_where=where,
            sqlite_where=where,
        )
    op.create_table(
        "rollup_metric_hourly",
        sa.Column("organization_id", sa.String(128), primary_key=True),
        sa.Column("hour_us", sa.BigInteger, primary_key=True),
        sa.Column("metric_key", sa.String(128), primary_key=True),
        sa.Column("event_count", sa.BigInteger, nullable=False),
        sa.Column("quantity_sum", sa.Numeric, nullable=False),
    )
    op.create_table(
        "rollup_dimension_hourly",
        sa.Column("organization_id", sa.String(128), primary_key=True),
        sa.Column("dim_key", sa.String(64), primary_key=True),
        sa.Column("hour_us", sa.BigInteger, primary_key=True),
        sa.Column("dim_value", sa.Text, primary_key=True),
        sa.Column("metric_key", sa.String(128), primary_key=True),
        sa.Column("event_count", sa.BigInteger, nullable=False),
        sa.Column("quantity_sum", sa.Numeric, nullable=False),
    )
    op.create_table(
        "rollup_dimensions",
        sa.Column("dim_key", sa.String(64), primary_key=True),
        sa.Column("created_at_us", sa.BigInteger, nullable=False),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "INSERT INTO rollup_metric_hourly "
            "(organization_id, hour_us, metric_key, event_count, quantity_sum) "
            "SELECT organization_id, timestamp_us - ((timestamp_us % 3600000000) + 3600000000) % 3600000000, "
            "metric_key, count(*), sum(quantity) FROM events GROUP BY 1, 2, 3"
        )


def downgrade() -> None:
    op.drop_table("rollup_dimensions")
    op.drop_table("rollup_dimension_hourly")
    op.drop_table("rollup_metric_hourly")
    for name in _LISTING_INDEXES:
        op.drop_index(name, "events")
