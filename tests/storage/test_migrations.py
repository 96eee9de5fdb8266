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

import json
import pathlib
from collections.abc import Iterator
from dataclasses import replace

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from pg_server import PgServer
from stored_events import StoredEvent, all_events, decode

from server.domain import Correction, NewEvent
from server.storage import schema
from server.storage.engine import make_engine
from server.storage.migrate import upgrade
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
        assert upgrade(engine) == "0009"
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
            diff = compare_metadata(MigrationContext.configure(conn), schema.metadata)
    finally:
        engine.dispose()
    assert diff == []
