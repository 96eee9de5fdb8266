"""An index of voided_events by the version that replaced them: an amended event's history is
walked back from its current version one step per version.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_voided_events_replaced_by", "voided_events", ["organization_id", "replaced_by"])


def downgrade() -> None:
    op.drop_index("ix_voided_events_replaced_by", "voided_events")
