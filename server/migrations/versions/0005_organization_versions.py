"""organization_versions: a per-organization counter of changes to its events.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01

Ingestion increments it in its own transaction; cached answers are valid while it is unchanged. A
missing row reads as version 0, so existing organizations need no row.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "organization_versions",
        sa.Column("organization_id", sa.String(128), primary_key=True),
        sa.Column("data_version", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("organization_versions")
