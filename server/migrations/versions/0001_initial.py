"""Initial schema: customers, aggregators, aggregator filters, events, idempotency keys.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

Json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
Decimal = sa.Numeric(38, 12).with_variant(sa.String(48), "sqlite")


def upgrade() -> None:
    op.create_table(
        "customers",
        sa.Column("organization_id", sa.String(128), primary_key=True),
        sa.Column("id", sa.String(128), primary_key=True),
        sa.Column("name", sa.String(256), nullable=False, server_default=""),
        sa.Column("created_at_us", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "aggregators",
        sa.Column("organization_id", sa.String(128), primary_key=True),
        sa.Column("id", sa.String(128), primary_key=True),
        sa.Column("name", sa.String(256), nullable=False),
        sa.Column("event_type", sa.String(128), nullable=False),
        sa.Column("operation", sa.String(16), nullable=False),
        sa.Column("property", sa.String(64), nullable=False, server_default=""),
        sa.Column("unit_name", sa.String(64), nullable=False, server_default=""),
        sa.Column("display_name_property", sa.String(64), nullable=False, server_default=""),
        sa.Column("filter", Json, nullable=True),
        sa.Column("created_at_us", sa.BigInteger, nullable=False),
        sa.Column("updated_at_us", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "aggregator_filters",
        sa.Column("organization_id", sa.String(128), primary_key=True),
        sa.Column("id", sa.String(128), primary_key=True),
        sa.Column("aggregator_id", sa.String(128), nullable=False),
        sa.Column("name", sa.String(256), nullable=False),
        sa.Column("filter", Json, nullable=False),
        sa.Column("created_at_us", sa.BigInteger, nullable=False),
    )
    op.create_index(
        "ix_aggregator_filters_aggregator", "aggregator_filters", ["organization_id", "aggregator_id", "id"]
    )
    op.create_table(
        "events",
        sa.Column("organization_id", sa.String(128), primary_key=True),
        sa.Column("id", sa.String(64), primary_key=True),
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
    )
    op.create_index(
        "ix_events_org_time", "events", ["organization_id", sa.text("timestamp_us DESC"), sa.text("id DESC")]
    )
    op.create_index(
        "ix_events_customer_metric_time",
        "events",
        ["organization_id", "customer_id", "metric_key", sa.text("timestamp_us DESC"), sa.text("id DESC")],
    )
    op.create_table(
        "idempotency_keys",
        sa.Column("organization_id", sa.String(128), primary_key=True),
        sa.Column("idempotency_key", sa.String(255), primary_key=True),
        sa.Column("event_id", sa.String(64), nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("idempotency_keys")
    op.drop_index("ix_events_customer_metric_time", "events")
    op.drop_index("ix_events_org_time", "events")
    op.drop_table("events")
    op.drop_index("ix_aggregator_filters_aggregator", "aggregator_filters")
    op.drop_table("aggregator_filters")
    op.drop_table("aggregators")
    op.drop_table("customers")
