"""rollup_customer_hourly by (metric key, hour): every customer's hours of one metric.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01

ListAggregatorUsageByCustomer ranks the customers of one metric key over a period: its primary key
leads with the customer, so without this index that read would scan the organization's whole
rollup. The included columns let PostgreSQL answer from the index alone. Building it locks the
rollup table against writes: ingestion waits until the index is built.
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_rollup_customer_metric_hour",
        "rollup_customer_hourly",
        ["organization_id", "metric_key", "hour_us", "customer_id"],
        postgresql_include=["event_count", "quantity_sum"],
    )


def downgrade() -> None:
    op.drop_index("ix_rollup_customer_metric_hour", "rollup_customer_hourly")
