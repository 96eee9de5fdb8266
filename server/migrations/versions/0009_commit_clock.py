"""The commit clock of `as_of` reads: organization_versions.clock_us, the as_of_floor row, and an
index of voided_events by when they were voided.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01

From this migration on, every transaction that changes an organization's events takes a commit
clock (storage/clock.py) and records its events at it (ingested_at_us) and its voids at it
(voided_at_us). Events and voids stored before were timed by the service's host, not by that clock,
so `as_of` answers start at the floor: later than every one of them (one scan of each table's
times, seconds per ten million events) and than the database's clock now. Adding the column with a
constant default rewrites no table.
"""

from __future__ import annotations

import time

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "organization_versions",
        sa.Column("clock_us", sa.BigInteger, nullable=False, server_default="0"),
    )
    op.create_table("as_of_floor", sa.Column("floor_us", sa.BigInteger, nullable=False))
    op.create_index("ix_voided_events_voided_at", "voided_events", ["organization_id", "voided_at_us"])
    conn = op.get_bind()
    if conn.dialect.name == "postgresql":
        now = "(extract(epoch FROM clock_timestamp()) * 1000000)::bigint"
    else:  # SQLite's writers take their clock from the service's host (dialects/sqlite.py)
        now = str(time.time_ns() // 1000)
    conn.execute(
        sa.text(
            "INSERT INTO as_of_floor (floor_us) SELECT max(t) + 1 FROM ("
            f" SELECT {now} AS t"
            " UNION ALL SELECT max(ingested_at_us) FROM events"
            " UNION ALL SELECT max(voided_at_us) FROM voided_events) AS times"
        )
    )


def downgrade() -> None:
    op.drop_table("as_of_floor")
    op.drop_index("ix_voided_events_voided_at", "voided_events")
    op.drop_column("organization_versions", "clock_us")
