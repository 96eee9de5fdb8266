"""Migrations on populated databases, both backends: what a database of an older revision holds is
still there, and means the same, after `migrate`.

- 0002 -> 0003 (events.wire): events stored before the column existed (written here with plain
  SQL, as the service of revision 0002 stored them) are listed afterwards with every field, exactly
  as events ingested at revision 0003 are.
- 0005 -> 0006 to 0009 (voided_events, its indexes, the commit clock): events stored before them
  are all still listed, count as of the floor, and can be voided and amended: the voided one leaves
  the list and keeps every field in its history, the amended one is replaced by its new version.
- The migrated schema equals the tables of server/storage/schema.py (Alembic's own comparison).
"""

from __future__ import annotations

import datetime as dt
import json
import pathlib
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from pg_server import PgServer
from stored_events import StoredEvent, all_events, decode

from server.domain import Correction, NewEvent
from server.storage import schema
from server.storage.dialects import dialect_of
from server.storage.engine import make_engine
from server.storage.migrate import upgrade
from server.storage.partitions import DEFAULT_PARTITION
from server.storage.sql_storage import SqlStorage

ORG = "org_m"


@pytest.fixture
def empty_url(backend: str, request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> Iterator[str]:
    """A database without any schema."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'old.db'}"
        return
    server: PgServer = request.getfixturevalue("pg_server")
    url = server.create_database()
    try:
        yield url
    finally:
        server.drop_database(url.rsplit("/", 1)[1])


OLD_ROWS = [
    # As revision 0002 stored them: quantities as NUMERIC (PostgreSQL) or canonical text (SQLite).
    {
        "organization_id": ORG,
        "id": "evt_full",
        "customer_id": "cus_1",
        "metric_key": "llm_tokens",
        "timestamp_us": 1_717_200_000_123_456,
        "ingested_at_us": 1_717_200_001_000_000,
        "quantity": "1.5",
        "product_id": "prod_1",
        "subscription_id": "sub_1",
        "price_key": "price_a",
        "idempotency_key": "key-1",
        "external_cost_amount": "12.34",
        "external_cost_currency": "USD",
        "wallet_currency": "EUR",
        "properties": {"model": "gpt", "n": 3, "ratio": 0.25, "ok": True, "tags": ["a", "b"], "none": None},
    },
    {
        "organization_id": ORG,
        "id": "evt_bare",
        "customer_id": "cus_2",
        "metric_key": "login",
        "timestamp_us": 1_717_200_000_000_000,
        "ingested_at_us": 1_717_200_001_000_000,
        "quantity": "1",
        "product_id": None,
        "subscription_id": None,
        "price_key": None,
        "idempotency_key": None,
        "external_cost_amount": None,
        "external_cost_currency": None,
        "wallet_currency": None,
        "properties": {},
    },
]


def test_0003_fills_the_wire_form_of_events_stored_before_it(empty_url: str) -> None:
    engine = make_engine(empty_url)
    try:
        assert upgrade(engine, "0002") == "0002"
        _old_events(engine)
        upgrade(engine)
        storage = SqlStorage(engine)
        migrated = {e.id: e for e in all_events(storage, ORG)}
        # The same events ingested now (wire written by ingestion) read back identically.
        fresh = storage.events.ingest(
            "org_fresh",
            [
                NewEvent(
                    customer_id=r["customer_id"],
                    metric_key=r["metric_key"],
                    timestamp_us=r["timestamp_us"],
                    quantity=r["quantity"],
                    idempotency_key=r["idempotency_key"],
                    product_id=r["product_id"],
                    subscription_id=r["subscription_id"],
                    price_key=r["price_key"],
                    external_cost_amount=r["external_cost_amount"],
                    external_cost_currency=r["external_cost_currency"],
                    wallet_currency=r["wallet_currency"],
                    properties=r["properties"],
                )
                for r in OLD_ROWS
            ],
            OLD_ROWS[0]["ingested_at_us"],
        )
        ingested = {e.id: e for e in all_events(storage, "org_fresh")}
        for row, outcome in zip(OLD_ROWS, fresh, strict=True):
            expected = StoredEvent(**row)
            assert migrated[row["id"]] == expected
            again = ingested[outcome.event_id]
            # Recorded now, at the commit clock, which starts after every event stored before 0009.
            assert again.ingested_at_us > max(r["ingested_at_us"] for r in OLD_ROWS)
            assert again == StoredEvent(
                **{
                    **expected.__dict__,
                    "id": outcome.event_id,
                    "organization_id": "org_fresh",
                    "ingested_at_us": again.ingested_at_us,
                }
            )
    finally:
        engine.dispose()


def _old_events(engine: sa.Engine) -> None:
    """OLD_ROWS, stored as revision 0002 stored them."""
    with engine.begin() as conn:
        columns = ", ".join(OLD_ROWS[0])
        values = ", ".join(f":{c}" for c in OLD_ROWS[0])
        conn.execute(
            sa.text(f"INSERT INTO events ({columns}) VALUES ({values})"),
            [{**r, "properties": json.dumps(r["properties"])} for r in OLD_ROWS],
        )


def test_0006_to_0009_leave_earlier_events_listed_voidable_amendable_and_as_of_the_floor(
    empty_url: str,
) -> None:
    engine = make_engine(empty_url)
    try:
        assert upgrade(engine, "0002") == "0002"
        _old_events(engine)
        assert upgrade(engine, "0005") == "0005"
        assert upgrade(engine, "0009") == "0009"
        storage = SqlStorage(engine)
        before = {r["id"]: StoredEvent(**r) for r in OLD_ROWS}  # (test_0003: each field as stored)
        assert {e.id: e for e in all_events(storage, ORG)} == before
        # The floor is after every event stored before it: as of the floor, they all count.
        floor = storage.clocks.floor_us
        assert floor > max(r["ingested_at_us"] for r in OLD_ROWS)
        assert storage.clocks.state(ORG).issued_us == floor
        voided, amended = "evt_full", "evt_bare"
        void = Correction(OLD_ROWS[0]["ingested_at_us"] + 1, "user_1", "duplicate")
        (outcome,) = storage.corrections.void(ORG, [voided], void)
        # Voided at its commit clock: after the floor (the time the caller gave is a lower bound).
        assert outcome.status == "VOIDED" and outcome.void.at_us > floor  # type: ignore[union-attr]
        assert set(before) - {e.id for e in all_events(storage, ORG)} == {voided}
        (version,) = storage.corrections.history(ORG, voided)
        assert decode([version.wire]) == [before[voided]] and version.void == outcome.void
        result = storage.corrections.amend(ORG, amended, amended, lambda e: replace(e, quantity="2"), void)
        assert result.status == "AMENDED"
        listed = {e.id: e for e in all_events(storage, ORG)}
        assert amended not in listed and listed[result.new_id].quantity == "2"
        assert [v.replaced_by for v in storage.corrections.history(ORG, amended)] == [result.new_id, None]
    finally:
        engine.dispose()


def test_migrated_schema_is_schema_py(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            # The partitions of events (storage/partitions.py) are the table's, not tables of schema.py.
            months = {m.partition for m in dialect_of(engine).month_partitions(conn)} | {DEFAULT_PARTITION}
            assert dialect_of(engine).partitions_events == (len(months) > 1)

            def ours(name: str | None, kind: str, parents: Any) -> bool:
                return not (
                    kind == "table"
                    and name in months
                    or kind == "index"
                    and parents.get("table_name") in months
                )

            context = MigrationContext.configure(conn, opts={"include_name": ours})
            diff = compare_metadata(context, schema.metadata)
    finally:
        engine.dispose()
    assert diff == []


def _snapshot(storage: SqlStorage, ids: list[str]) -> list[Any]:
    """What the RPCs answer from this organization's events: pages, totals, aggregates, histories
    and idempotency outcomes of every key."""
    from stored_events import CustomerEventQuery, customer_events

    from server.deadline import Deadline
    from server.domain import AggregateQuery, EventFilters
    from server.logic import buckets

    start, end = _MIGRATED_MONTHS[0], _MIGRATED_MONTHS[-1] + 40 * 86_400_000_000
    out: list[Any] = [all_events(storage, ORG), all_events(storage, ORG, EventFilters(customer_id="cus_2"))]
    out.append(customer_events(storage, ORG, CustomerEventQuery("cus_1", "api_call", start, end), 7, 3))
    for group_by in ("none", "metric_key", "dim:region"):
        utc = dt.UTC
        segments = buckets.offset_segments(utc, buckets.from_us(start), buckets.from_us(end))
        query = AggregateQuery(start, end, "hour", segments, "sum_quantity", group_by, EventFilters())
        answer = storage.aggregates.aggregate(ORG, query, Deadline(30.0))
        out.append((answer.groups, answer.series, sorted(answer.cells)))
    out += [storage.corrections.history(ORG, i) for i in ids[:5]]
    return out


_MIGRATED_MONTHS = [1_704_067_200_000_000 + m * 31 * 86_400_000_000 for m in range(5)]  # 2024, Jan to May


def test_0010_partitions_a_populated_database_losing_nothing(empty_url: str) -> None:
    """The procedure of docs/operations.md: `migrate` on a database that holds events of several
    months, voided and amended ones among them. Every answer is the same after it, every key still
    claimed; on PostgreSQL every month with events has its partition and the default one is empty."""
    engine = make_engine(empty_url)
    try:
        assert upgrade(engine, "0009") == "0009"
        storage = SqlStorage(engine)
        batch = [
            NewEvent(
                customer_id=f"cus_{n % 3}",
                metric_key=("api_call", "tokens")[n % 2],
                timestamp_us=start + n * 3_600_000_017,
                quantity=f"{n}.{n:03d}",
                idempotency_key=f"key-{start}-{n}",
                properties={"region": ("eu", "us", "ap")[n % 3]},
            )
            for start in _MIGRATED_MONTHS
            for n in range(40)
        ]
        ids = [o.event_id for o in storage.events.ingest(ORG, batch, 1_800_000_000_000_000)]
        correction = Correction(1_800_000_000_000_000, "tests", "migration")
        storage.corrections.void(ORG, ids[3:6], correction)
        storage.corrections.amend(ORG, ids[0], None, lambda e: replace(e, quantity="7"), correction)
        before = _snapshot(storage, ids)
        storage.close()

        engine = make_engine(empty_url)
        assert upgrade(engine) == "0010"
        storage = SqlStorage(engine)
        assert _snapshot(storage, ids) == before
        outcomes = storage.events.ingest(ORG, batch, 1_800_000_000_000_000)
        assert "ACCEPTED" not in {o.status for o in outcomes}  # every key still claimed
        if engine.dialect.name == "postgresql":
            with engine.connect() as conn:
                placed = dict(
                    conn.execute(
                        sa.text("SELECT tableoid::regclass::text, count(*) FROM events GROUP BY 1")
                    ).all()
                )
                months = dialect_of(engine).month_partitions(conn)
            assert DEFAULT_PARTITION not in placed
            assert set(placed) == {
                m.partition
                for m in months
                if m.start_us < _MIGRATED_MONTHS[-1] + 40 * 86_400_000_000 and m.year == 2024
            }
            assert sum(placed.values()) == len(batch) - 3
        storage.close()
    finally:
        engine.dispose()
