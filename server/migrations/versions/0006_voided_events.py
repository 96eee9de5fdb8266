"""voided_events: the voided versions of events, with when, by whom and why they were voided.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01

A new, empty table: nothing stored before it changes meaning (no event was voided before it).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

# Written out, not imported from schema.py: a migration must not change when the schema module does.
_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
_DECIMAL = sa.Numeric(38, 12, asdecimal=True).with_variant(sa.String(48), "sqlite")


def upgrade() -> None:
    op.create_table(
        "voided_events",
        sa.Column("organization_id", sa.String(128), primary_key=True),
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("customer_id", sa.String(128), nullable=False),
        sa.Column("metric_key", sa.String(128), nullable=False),
        sa.Column("timestamp_us", sa.BigInteger, nullable=False),
        sa.Column("ingested_at_us", sa.BigInteger, nullable=False),
        sa.Column("quantity", _DECIMAL, nullable=False),
        sa.Column("product_id", sa.String(128)),
        sa.Column("subscription_id", sa.String(128)),
        sa.Column("price_key", sa.String(128)),
        sa.Column("idempotency_key", sa.String(255)),
        sa.Column("external_cost_amount", _DECIMAL),
        sa.Column("external_cost_currency", sa.String(3)),
        sa.Column("wallet_currency", sa.String(3)),
        sa.Column("properties", _JSON, nullable=False),
        sa.Column("wire", sa.LargeBinary, nullable=False),
        sa.Column("voided_at_us", sa.BigInteger, nullable=False),
        sa.Column("voided_by", sa.String(256), nullable=False),
        sa.Column("void_reason", sa.String(1024), nullable=False),
        sa.Column("replaced_by", sa.String(64), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("voided_events")
