"""Rollups equal a recount from the raw events: `assert_rollups_match_events(engine)`.

The recount is `rollups.rebuild` run in a transaction that is rolled back, so the database is left
as it was; the comparison is of every row of every rollup table.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from server.storage import rollups


def rollup_rows(conn: sa.Connection) -> dict[str, list[tuple[Any, ...]]]:
    out = {}
    for table in rollups.TABLES:
        keys = list(table.primary_key.columns)
        out[table.name] = [tuple(r) for r in conn.execute(sa.select(table).order_by(*keys))]
    return out


def assert_rollups_match_events(engine: sa.Engine) -> int:
    """Assert that the rollups are the recount of the events; return how many rollup rows there are."""
    with engine.connect() as conn:
        kept = rollup_rows(conn)
        conn.rollback()
        with conn.begin() as tx:
            rollups.rebuild(conn)
            recount = rollup_rows(conn)
            tx.rollback()
    for name in kept:
        extra = set(kept[name]) - set(recount[name])
        missing = set(recount[name]) - set(kept[name])
        assert not extra and not missing, (
            f"{name}: kept but not recounted {sorted(extra)[:5]}, "
            f"recounted but not kept {sorted(missing)[:5]}"
        )
    return sum(len(rows) for rows in kept.values())
