"""events.wire: each event's serialized form, as list responses send it (server/wire.py).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01

The column is added, filled from the stored columns for every existing event (in batches of
5,000, through server/wire.py: the stored form is by definition what that module writes, so the
backfill and ingestion cannot disagree), then made NOT NULL. Time: about 1 minute per million
events on PostgreSQL (docs/operations.md); the service is stopped meanwhile, as for any migration.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa
from alembic import op

from server.decimals import canonical_decimal
from server.domain import NewEvent
from server.wire import event_entry

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

BATCH = 5000
_COLUMNS = (
    "organization_id",
    "id",
    "customer_id",
    "metric_key",
    "timestamp_us",
    "ingested_at_us",
    "quantity",
    "product_id",
    "subscription_id",
    "price_key",
    "idempotency_key",
    "external_cost_amount",
    "external_cost_currency",
    "wallet_currency",
    "properties",
)


def upgrade() -> None:
    bind = op.get_bind()
    with op.batch_alter_table("events") as batch:
        batch.add_column(sa.Column("wire", sa.LargeBinary, nullable=True))
    for rows in _batches(bind):
        updates = [{"o": r.organization_id, "i": r.id, "w": _entry(r)} for r in rows]
        bind.execute(sa.text("UPDATE events SET wire = :w WHERE organization_id = :o AND id = :i"), updates)
    with op.batch_alter_table("events") as batch:
        batch.alter_column("wire", existing_type=sa.LargeBinary, nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("events") as batch:
        batch.drop_column("wire")


def _batches(bind: Any) -> Iterator[list[Any]]:
    """Every event, in primary key order, BATCH at a time (keyset: no OFFSET)."""
    columns = ", ".join(_COLUMNS)
    after: tuple[str, str] | None = None
    while True:
        where = "" if after is None else "WHERE (organization_id, id) > (:o, :i)"
        params = {} if after is None else {"o": after[0], "i": after[1]}
        rows = bind.execute(
            sa.text(f"SELECT {columns} FROM events {where} ORDER BY organization_id, id LIMIT {BATCH}"),
            params,
        ).all()
        if not rows:
            return
        yield rows
        after = (rows[-1].organization_id, rows[-1].id)


def _entry(r: Any) -> bytes:
    properties = r.properties if not isinstance(r.properties, str) else json.loads(r.properties)
    event = NewEvent(
        customer_id=r.customer_id,
        metric_key=r.metric_key,
        timestamp_us=r.timestamp_us,
        quantity=canonical_decimal(r.quantity),
        idempotency_key=r.idempotency_key,
        product_id=r.product_id,
        subscription_id=r.subscription_id,
        price_key=r.price_key,
        external_cost_amount=(
            None if r.external_cost_amount is None else canonical_decimal(r.external_cost_amount)
        ),
        external_cost_currency=r.external_cost_currency,
        wallet_currency=r.wallet_currency,
        properties=properties or {},
    )
    return event_entry(r.organization_id, r.id, event, r.ingested_at_us)
