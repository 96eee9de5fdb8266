"""bench/ingest_phases.py against a real PostgreSQL database: every step of a batch's storage is
timed, the steps fit inside the storage call and the storage call inside the whole, the events are
stored, and the timing leaves the dialect and the rollups module as they were."""

from __future__ import annotations

import psycopg

from bench import ingest, ingest_phases
from server.storage import event_store
from server.storage.dialects.postgres import PostgresDialect


def test_every_step_is_timed_and_nothing_stays_patched(pg_url: str) -> None:
    add_events = event_store.rollups.add_events
    rate, steps = ingest_phases.measure(pg_url, batches=3, batch_size=20)
    assert rate > 0
    named = [*ingest_phases.DIALECT_STEPS, "rollups.add_events"]
    assert all(steps[name] > 0 for name in named), steps
    assert sum(steps[name] for name in named) <= steps["storage (all of it)"]
    assert steps["storage (all of it)"] <= steps["logic and storage (all of it)"]
    with psycopg.connect(pg_url.replace("postgresql+psycopg://", "postgresql://", 1)) as conn:
        stored = conn.execute(
            "SELECT count(*) FROM events WHERE organization_id = %s", (ingest.INGEST_ORG,)
        ).fetchone()
    assert stored == (60,)
    assert not set(ingest_phases.DIALECT_STEPS) & set(vars(PostgresDialect.INSTANCE))
    assert event_store.rollups.add_events is add_events
