"""End to end: `usage-service partitions` and `usage-service retention` as processes, on a real
PostgreSQL database (monthly partitions) and on the embedded SQLite store (one table)."""

from __future__ import annotations

import pathlib
import time

import cli_process
import pytest
import sqlalchemy as sa

from server.domain import NewEvent
from server.storage.engine import make_engine
from server.storage.migrate import upgrade
from server.storage.partitions import Month
from server.storage.sql_storage import SqlStorage

pytestmark = pytest.mark.e2e
OLD = Month(2024, 5)


def _events(url: str) -> dict[str, int]:
    """Events of May 2024 (long gone from any window) and of a minute ago; {"old": n, "new": n}."""
    now = time.time_ns() // 1000
    engine = make_engine(url)
    try:
        storage = SqlStorage(engine)
        old = [
            NewEvent("cus_1", "api", OLD.start_us + i * 60_000_000, idempotency_key=f"old-{i}")
            for i in range(30)
        ]
        new = [NewEvent("cus_1", "api", now - 60_000_000 + i, idempotency_key=f"new-{i}") for i in range(3)]
        outcomes = storage.events.ingest("org_cli", old + new, now)
        assert {o.status for o in outcomes} == {"ACCEPTED"}
        return {"old": len(old), "new": len(new)}
    finally:
        engine.dispose()


def _count(url: str) -> int:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(sa.text("SELECT count(*) FROM events")).scalar_one())
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_partitions_and_retention_on_postgres(pg_url: str) -> None:
    counts = _events(pg_url)
    made = cli_process.run("partitions", "--ahead-months", "5", "--database-url", pg_url)
    assert made.returncode == 0, made.stderr
    assert "partitions of events:" in made.stdout and OLD.partition not in made.stdout
    split = cli_process.run("partitions", "--split-default", "--database-url", pg_url)
    assert split.returncode == 0, split.stderr
    assert (
        f"created partition {OLD.partition} ({counts['old']} events moved from events_default)"
        in split.stdout
    )

    dry = cli_process.run("retention", "--keep-months", "2", "--database-url", pg_url)
    assert dry.returncode == 0, dry.stderr
    assert "would remove (dry run" in dry.stdout
    assert f"month partitions: {OLD.partition}" in dry.stdout and f"events: {counts['old']}" in dry.stdout
    assert _count(pg_url) == counts["old"] + counts["new"]  # nothing changed

    done = cli_process.run("retention", "--keep-months", "2", "--apply", "--database-url", pg_url)
    assert done.returncode == 0, done.stderr
    assert "removed:" in done.stdout and f"idempotency claims: {counts['old']}" in done.stdout
    assert _count(pg_url) == counts["new"]
    again = cli_process.run("retention", "--keep-months", "2", "--database-url", pg_url)
    assert "month partitions: none" in again.stdout and "events: 0" in again.stdout


def test_retention_on_the_embedded_store(tmp_path: pathlib.Path) -> None:
    url = f"sqlite:///{tmp_path / 'usage.db'}"
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    counts = _events(url)
    made = cli_process.run("partitions", "--database-url", url)
    assert made.returncode == 0 and "one table on SQLite" in made.stdout, made.stderr
    # Two months, this one and the last: events of a minute ago stay even if a month began since.
    done = cli_process.run("retention", "--keep-months", "2", "--apply", "--database-url", url)
    assert done.returncode == 0, done.stderr
    assert "month partitions: none" in done.stdout and f"events: {counts['old']}" in done.stdout
    assert _count(url) == counts["new"]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["retention"], "--keep-months"),
        (["retention", "--keep-months", "0"], "must be from 1 to 1200 months, got 0"),
        (["retention", "--keep-months", "three"], "not an integer: 'three'"),
        (["partitions", "--ahead-months", "-1"], "must be from 0 to 1200 months, got -1"),
    ],
)
def test_a_bad_month_count_is_refused_with_what_is_allowed(args: list[str], says: str) -> None:
    refused = cli_process.run(*args, "--database-url", "sqlite:///nowhere.db")
    assert refused.returncode == 2 and says in refused.stderr, refused.stderr
