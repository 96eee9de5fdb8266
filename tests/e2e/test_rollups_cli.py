"""End to end: `usage-service rollups list|rebuild|add-dimension|remove-dimension` as a process on a
real PostgreSQL database, and refused on the embedded SQLite store."""

from __future__ import annotations

import pathlib
import subprocess

import cli_process
import pytest
import sqlalchemy as sa
from rollup_check import assert_rollups_match_events

from server.domain import NewEvent
from server.storage import schema
from server.storage.engine import make_engine
from server.storage.sql_storage import SqlStorage

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]
HOUR = 3_600_000_000
T0 = 1_750_000_000_000_000 // HOUR * HOUR


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return cli_process.run("rollups", *args)


def test_rollups_commands(pg_url: str) -> None:
    engine = make_engine(pg_url)
    try:
        events = [
            NewEvent(
                customer_id=f"c{i % 3}",
                metric_key="api",
                timestamp_us=T0 + i * 60_000_000,
                properties={"region": f"r{i % 2}"},
            )
            for i in range(200)
        ]
        SqlStorage(engine).events.ingest("org_cli", events, T0)
        assert run_cli("list", "--database-url", pg_url).stdout == ""

        added = run_cli("add-dimension", "region", "--database-url", pg_url)
        assert added.returncode == 0 and "backfilled" in added.stdout, added.stderr
        assert "already" in run_cli("add-dimension", "region", "--database-url", pg_url).stdout
        assert run_cli("list", "--database-url", pg_url).stdout.split() == ["region"]
        d = schema.rollup_dimension_hourly.c
        with engine.connect() as conn:
            counts = dict(
                conn.execute(
                    schema.rollup_dimension_hourly.select()
                    .with_only_columns(d.dim_value, sa.func.sum(d.event_count))
                    .group_by(d.dim_value)
                ).all()
            )
        assert counts == {"r0": 100, "r1": 100}
        assert_rollups_match_events(engine)

        rebuilt = run_cli("rebuild", "--database-url", pg_url)
        assert rebuilt.returncode == 0 and "rebuilt" in rebuilt.stdout, rebuilt.stderr
        assert_rollups_match_events(engine)

        removed = run_cli("remove-dimension", "region", "--database-url", pg_url)
        assert removed.returncode == 0, removed.stderr
        missing = run_cli("remove-dimension", "region", "--database-url", pg_url)
        assert missing.returncode == 1 and "not rolled up" in missing.stderr
    finally:
        engine.dispose()


def test_bad_key_and_sqlite_are_refused(tmp_path: pathlib.Path, pg_url: str) -> None:
    bad = run_cli("add-dimension", "no spaces", "--database-url", pg_url)
    assert bad.returncode == 2 and "is not a property key" in bad.stderr
    embedded = run_cli("list", "--data-dir", str(tmp_path))
    assert embedded.returncode == 2 and "PostgreSQL only" in embedded.stderr
