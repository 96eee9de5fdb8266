"""The storage contract: every test runs against SQLite and a real PostgreSQL server (conftest.py).

Expected values are written out or computed here independently (datetime/zoneinfo for buckets),
never by asking the storage layer. Each test gets its own fresh, migrated database.
"""

from __future__ import annotations

import datetime as dt
import itertools
import threading
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
import stored_events
from aggregate_oracle import EXACT
from stored_events import CustomerEventQuery, StoredEvent, customer_events

from server.deadline import Deadline
from server.domain import (
    AggregateAnswer,
    AggregateQuery,
    Aggregator,
    AggregatorFilter,
    Condition,
    Customer,
    CustomerPageQuery,
    EventFilters,
    NewEvent,
    OffsetSegment,
    PropertyFilter,
)
from server.errors import AlreadyExists, DeadlineExceeded, InvalidArgument
from server.storage.engine import make_engine
from server.storage.sql_storage import SqlStorage

ORG = "org_a"
OTHER = "org_b"
UTC = dt.UTC
EPOCH = dt.datetime(1970, 1, 1, tzinfo=UTC)
SEC = 1_000_000
MIN = 60 * SEC
HOUR = 60 * MIN
DAY = 24 * HOUR
NOW = 1_900_000_000 * SEC  # the ingestion clock handed to storage


def us(text: str) -> int:
    """'2024-06-01T10:00:00Z' -> microseconds since the epoch."""
    d = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return (d - EPOCH) // dt.timedelta(microseconds=1)


T0 = us("2024-06-01T00:00:00Z")
assert T0 == 1_717_200_000 * SEC


def ev(customer: str = "cus_1", metric: str = "api_call", ts: int = T0, **kw: object) -> NewEvent:
    return NewEvent(customer_id=customer, metric_key=metric, timestamp_us=ts, **kw)  # type: ignore[arg-type]


def ingest_ids(storage: SqlStorage, events: list[NewEvent], org: str = ORG) -> list[str]:
    outcomes = storage.events.ingest(org, events, NOW)
    assert [o.status for o in outcomes] == ["ACCEPTED"] * len(events)
    return [o.event_id for o in outcomes]


def all_events(storage: SqlStorage, org: str = ORG, filters: EventFilters | None = None) -> list[StoredEvent]:
    return stored_events.all_events(storage, org, filters)


def newest_first(events: list[StoredEvent]) -> list[StoredEvent]:
    return sorted(events, key=lambda e: (e.timestamp_us, e.id), reverse=True)


# ---- customers -----------------------------------------------------------------------------


def test_create_and_get_customer(storage: SqlStorage) -> None:
    created = storage.catalog.create_customer(ORG, Customer("cus_acme", "Acme Inc.", 1234))
    assert created == Customer("cus_acme", "Acme Inc.", 1234)
    assert storage.catalog.get_customer(ORG, "cus_acme") == Customer("cus_acme", "Acme Inc.", 1234)
    assert storage.catalog.get_customer(ORG, "cus_other") is None
    assert storage.catalog.get_customer(OTHER, "cus_acme") is None


def test_create_customer_duplicate_id_is_already_exists(storage: SqlStorage) -> None:
    storage.catalog.create_customer(ORG, Customer("cus_1", "First", 1))
    with pytest.raises(AlreadyExists):
        storage.catalog.create_customer(ORG, Customer("cus_1", "Second", 2))
    assert storage.catalog.get_customer(ORG, "cus_1") == Customer("cus_1", "First", 1)
    # The same id in another organization is a different customer.
    assert storage.catalog.create_customer(OTHER, Customer("cus_1", "Theirs", 3)) == Customer(
        "cus_1", "Theirs", 3
    )
    assert storage.catalog.get_customer(ORG, "cus_1") == Customer("cus_1", "First", 1)


def test_create_customer_generates_id_when_empty(storage: SqlStorage) -> None:
    before = time.time_ns() // 1000
    a = storage.catalog.create_customer(ORG, Customer("", "A"))
    b = storage.catalog.create_customer(ORG, Customer("", "B"))
    after = time.time_ns() // 1000
    assert a.id and b.id and a.id != b.id
    assert before <= a.created_at_us <= after
    assert storage.catalog.get_customer(ORG, a.id) == a
    assert storage.catalog.get_customer(ORG, b.id) == b


def test_list_customers_paginates_by_id(storage: SqlStorage) -> None:
    ids = ["cus_05", "cus_01", "cus_07", "cus_03", "cus_02", "cus_06", "cus_04"]
    for i, cid in enumerate(ids):
        storage.catalog.create_customer(ORG, Customer(cid, f"name {cid}", i + 1))
    storage.catalog.create_customer(OTHER, Customer("cus_00", "not ours", 1))
    page1 = storage.catalog.list_customers(ORG, None, 3)
    assert [c.id for c in page1] == ["cus_01", "cus_02", "cus_03"]
    assert page1[0] == Customer("cus_01", "name cus_01", 2)
    assert [c.id for c in storage.catalog.list_customers(ORG, "cus_03", 3)] == ["cus_04", "cus_05", "cus_06"]
    assert [c.id for c in storage.catalog.list_customers(ORG, "cus_06", 3)] == ["cus_07"]
    assert storage.catalog.list_customers(ORG, "cus_07", 3) == []
    assert [c.id for c in storage.catalog.list_customers(ORG, "cus_025", 2)] == ["cus_03", "cus_04"]
    assert [c.id for c in storage.catalog.list_customers(OTHER, None, 10)] == ["cus_00"]


# ---- aggregators ---------------------------------------------------------------------------

RICH_FILTER = PropertyFilter(
    "or",
    (
        Condition("region", "in", ["eu", 5, True, 2.5]),
        Condition("tier", "equals", "pro"),
        Condition("size", "gt", 10),
        Condition("flag", "equals", False),
        Condition("gone", "is_null"),
        Condition("plan.tier-x", "not_equals", "free"),
    ),
)


def make_aggregator(agg_id: str = "agg_api", **kw: object) -> Aggregator:
    fields: dict[str, object] = {
        "name": "API calls",
        "event_type": "api_call",
        "operation": "sum",
        "property": "tokens",
        "unit_name": "tokens",
        "display_name_property": "endpoint",
        "filter": RICH_FILTER,
    }
    fields.update(kw)
    return Aggregator(id=agg_id, **fields)  # type: ignore[arg-type]


def same_aggregator_fields(a: Aggregator, b: Aggregator) -> bool:
    keys = (
        "id",
        "name",
        "event_type",
        "operation",
        "property",
        "unit_name",
        "display_name_property",
        "filter",
    )
    return all(getattr(a, k) == getattr(b, k) for k in keys)


def test_create_get_aggregator_round_trips_every_field(storage: SqlStorage) -> None:
    before = time.time_ns() // 1000
    created = storage.catalog.create_aggregator(ORG, make_aggregator())
    after = time.time_ns() // 1000
    assert same_aggregator_fields(created, make_aggregator())
    assert before <= created.created_at_us <= after
    assert created.updated_at_us == created.created_at_us
    got = storage.catalog.get_aggregator(ORG, "agg_api")
    assert got == created
    assert got is not None and got.filter == RICH_FILTER
    assert storage.catalog.get_aggregator(ORG, "agg_missing") is None
    assert storage.catalog.get_aggregator(OTHER, "agg_api") is None


def test_aggregator_without_filter_and_generated_id(storage: SqlStorage) -> None:
    created = storage.catalog.create_aggregator(ORG, Aggregator(id="", name="Count", event_type="login"))
    assert created.id
    got = storage.catalog.get_aggregator(ORG, created.id)
    assert got == created
    assert got is not None
    assert (got.operation, got.property, got.unit_name, got.display_name_property, got.filter) == (
        "count",
        "",
        "",
        "",
        None,
    )
    other = storage.catalog.create_aggregator(ORG, Aggregator(id="", name="Count", event_type="login"))
    assert other.id != created.id


def test_create_aggregator_duplicate_id_is_already_exists(storage: SqlStorage) -> None:
    storage.catalog.create_aggregator(ORG, make_aggregator("agg_1", name="first"))
    with pytest.raises(AlreadyExists):
        storage.catalog.create_aggregator(ORG, make_aggregator("agg_1", name="second"))
    got = storage.catalog.get_aggregator(ORG, "agg_1")
    assert got is not None and got.name == "first"
    assert storage.catalog.create_aggregator(OTHER, make_aggregator("agg_1", name="theirs")).name == "theirs"


def test_list_aggregators_paginates_by_id(storage: SqlStorage) -> None:
    for agg_id in ["agg_c", "agg_a", "agg_e", "agg_b", "agg_d"]:
        storage.catalog.create_aggregator(ORG, make_aggregator(agg_id))
    storage.catalog.create_aggregator(OTHER, make_aggregator("agg_0"))
    assert [a.id for a in storage.catalog.list_aggregators(ORG, None, 2)] == ["agg_a", "agg_b"]
    assert [a.id for a in storage.catalog.list_aggregators(ORG, "agg_b", 2)] == ["agg_c", "agg_d"]
    assert [a.id for a in storage.catalog.list_aggregators(ORG, "agg_d", 2)] == ["agg_e"]
    assert storage.catalog.list_aggregators(ORG, "agg_e", 2) == []
    listed = storage.catalog.list_aggregators(ORG, None, 100)
    assert [a.id for a in listed] == ["agg_a", "agg_b", "agg_c", "agg_d", "agg_e"]
    assert all(a.filter == RICH_FILTER for a in listed)
    assert [a.id for a in storage.catalog.list_aggregators(OTHER, None, 100)] == ["agg_0"]


def test_update_aggregator(storage: SqlStorage) -> None:
    created = storage.catalog.create_aggregator(ORG, make_aggregator())
    time.sleep(0.002)
    new_filter = PropertyFilter("and", (Condition("region", "equals", "us"),))
    changed = make_aggregator(
        name="Renamed",
        event_type="api_request",
        operation="count",
        property="",
        unit_name="calls",
        display_name_property="",
        filter=new_filter,
    )
    updated = storage.catalog.update_aggregator(ORG, "agg_api", lambda _current: changed)
    assert updated is not None
    assert same_aggregator_fields(updated, changed)
    assert updated.created_at_us == created.created_at_us
    assert updated.updated_at_us > created.updated_at_us
    assert storage.catalog.get_aggregator(ORG, "agg_api") == updated
    # Clearing the filter.
    cleared = storage.catalog.update_aggregator(ORG, "agg_api", lambda _a: make_aggregator(filter=None))
    assert cleared is not None and cleared.filter is None
    # Unknown id, or another organization's: nothing to update.
    assert storage.catalog.update_aggregator(ORG, "agg_missing", lambda a: a) is None
    assert storage.catalog.update_aggregator(OTHER, "agg_api", lambda a: replace(a, name="hijack")) is None
    got = storage.catalog.get_aggregator(ORG, "agg_api")
    assert got is not None and got.name == "API calls"
    assert storage.catalog.get_aggregator(ORG, "agg_missing") is None


def test_delete_aggregator_removes_its_filters(storage: SqlStorage) -> None:
    storage.catalog.create_aggregator(ORG, make_aggregator("agg_1"))
    storage.catalog.create_aggregator(ORG, make_aggregator("agg_2"))
    flt = PropertyFilter("and", (Condition("region", "equals", "eu"),))
    storage.catalog.create_aggregator_filter(ORG, AggregatorFilter("flt_1a", "agg_1", "EU", flt))
    storage.catalog.create_aggregator_filter(ORG, AggregatorFilter("flt_1b", "agg_1", "EU too", flt))
    storage.catalog.create_aggregator_filter(ORG, AggregatorFilter("flt_2a", "agg_2", "EU", flt))

    assert storage.catalog.delete_aggregator(OTHER, "agg_1") is False
    assert storage.catalog.get_aggregator(ORG, "agg_1") is not None

    assert storage.catalog.delete_aggregator(ORG, "agg_1") is True
    assert storage.catalog.get_aggregator(ORG, "agg_1") is None
    assert storage.catalog.list_aggregator_filters(ORG, "agg_1") == []
    assert storage.catalog.get_aggregator_filter(ORG, "flt_1a") is None
    assert storage.catalog.get_aggregator_filter(ORG, "flt_1b") is None
    # The other aggregator and its filter are untouched.
    assert storage.catalog.get_aggregator(ORG, "agg_2") is not None
    assert [f.id for f in storage.catalog.list_aggregator_filters(ORG, "agg_2")] == ["flt_2a"]
    assert storage.catalog.delete_aggregator(ORG, "agg_1") is False
    assert storage.catalog.delete_aggregator(ORG, "agg_missing") is False
    # The id is free again.
    assert storage.catalog.create_aggregator(ORG, make_aggregator("agg_1")).id == "agg_1"
    assert storage.catalog.list_aggregator_filters(ORG, "agg_1") == []


def test_update_aggregator_changes_nothing_when_its_change_refuses(storage: SqlStorage) -> None:
    created = storage.catalog.create_aggregator(ORG, make_aggregator())

    def refuse(current: Aggregator) -> Aggregator:
        assert current == created  # the change sees the stored aggregator
        raise InvalidArgument.field("aggregator.name", "refused")

    with pytest.raises(InvalidArgument):
        storage.catalog.update_aggregator(ORG, "agg_api", refuse)
    assert storage.catalog.get_aggregator(ORG, "agg_api") == created


# ---- aggregator filters --------------------------------------------------------------------


def test_aggregator_filters_create_get_list(storage: SqlStorage) -> None:
    storage.catalog.create_aggregator(ORG, make_aggregator("agg_1"))
    storage.catalog.create_aggregator(ORG, make_aggregator("agg_2"))
    f_eu = PropertyFilter("and", (Condition("region", "equals", "eu"), Condition("size", "gte", 2.5)))
    f_or = PropertyFilter("or", (Condition("tier", "in", ["pro", 3, False]), Condition("x", "is_not_null")))
    before = time.time_ns() // 1000
    b = storage.catalog.create_aggregator_filter(ORG, AggregatorFilter("flt_b", "agg_1", "Big EU", f_eu))
    a = storage.catalog.create_aggregator_filter(ORG, AggregatorFilter("flt_a", "agg_1", "Pro or x", f_or))
    after = time.time_ns() // 1000
    generated = storage.catalog.create_aggregator_filter(
        ORG, AggregatorFilter("", "agg_2", "Generated", f_eu)
    )
    assert generated.id and generated.id not in ("flt_a", "flt_b")
    assert (b.id, b.aggregator_id, b.name, b.filter) == ("flt_b", "agg_1", "Big EU", f_eu)
    assert before <= b.created_at_us <= after

    assert storage.catalog.get_aggregator_filter(ORG, "flt_a") == a
    assert storage.catalog.get_aggregator_filter(ORG, "flt_b") == b
    assert storage.catalog.get_aggregator_filter(ORG, generated.id) == generated
    assert storage.catalog.get_aggregator_filter(ORG, "flt_missing") is None
    assert storage.catalog.get_aggregator_filter(OTHER, "flt_a") is None

    assert storage.catalog.list_aggregator_filters(ORG, "agg_1") == [a, b]
    assert storage.catalog.list_aggregator_filters(ORG, "agg_2") == [generated]
    assert storage.catalog.list_aggregator_filters(ORG, "agg_missing") == []
    assert storage.catalog.list_aggregator_filters(OTHER, "agg_1") == []

    with pytest.raises(AlreadyExists):
        storage.catalog.create_aggregator_filter(ORG, AggregatorFilter("flt_a", "agg_2", "Taken", f_eu))
    assert storage.catalog.get_aggregator_filter(ORG, "flt_a") == a


def test_a_filter_needs_its_aggregator_and_its_admission(storage: SqlStorage) -> None:
    flt = PropertyFilter("and", (Condition("region", "equals", "eu"),))
    assert (
        storage.catalog.create_aggregator_filter(ORG, AggregatorFilter("flt_1", "agg_1", "EU", flt)) is None
    )
    storage.catalog.create_aggregator(ORG, make_aggregator("agg_1"))
    assert (
        storage.catalog.create_aggregator_filter(OTHER, AggregatorFilter("flt_1", "agg_1", "EU", flt)) is None
    )
    counts: list[int] = []
    for i in range(3):
        storage.catalog.create_aggregator_filter(
            ORG, AggregatorFilter(f"flt_{i}", "agg_1", "EU", flt), counts.append
        )
    assert counts == [0, 1, 2]

    def full(count: int) -> None:
        raise InvalidArgument.field("aggregator_filter.aggregator_id", f"full at {count}")

    with pytest.raises(InvalidArgument, match="full at 3"):
        storage.catalog.create_aggregator_filter(ORG, AggregatorFilter("flt_x", "agg_1", "EU", flt), full)
    assert [f.id for f in storage.catalog.list_aggregator_filters(ORG, "agg_1")] == [
        "flt_0",
        "flt_1",
        "flt_2",
    ]
    assert storage.catalog.list_aggregator_filters(OTHER, "agg_1") == []


def test_delete_aggregator_filter_requires_its_aggregator(storage: SqlStorage) -> None:
    storage.catalog.create_aggregator(ORG, make_aggregator("agg_1"))
    storage.catalog.create_aggregator(ORG, make_aggregator("agg_2"))
    flt = PropertyFilter("and", (Condition("region", "equals", "eu"),))
    kept = storage.catalog.create_aggregator_filter(ORG, AggregatorFilter("flt_keep", "agg_1", "Keep", flt))
    storage.catalog.create_aggregator_filter(ORG, AggregatorFilter("flt_1", "agg_1", "EU", flt))

    assert storage.catalog.delete_aggregator_filter(ORG, "agg_2", "flt_1") is False
    assert storage.catalog.delete_aggregator_filter(OTHER, "agg_1", "flt_1") is False
    assert storage.catalog.get_aggregator_filter(ORG, "flt_1") is not None

    assert storage.catalog.delete_aggregator_filter(ORG, "agg_1", "flt_1") is True
    assert storage.catalog.get_aggregator_filter(ORG, "flt_1") is None
    assert storage.catalog.list_aggregator_filters(ORG, "agg_1") == [kept]
    assert storage.catalog.delete_aggregator_filter(ORG, "agg_1", "flt_1") is False


# ---- ingestion -----------------------------------------------------------------------------


def test_ingest_accepts_and_stores_every_field(storage: SqlStorage) -> None:
    full = ev(
        "cus_1",
        "llm_tokens",
        T0 + 123_456,
        quantity="1.5",  # NewEvent holds canonical decimals (the ingest logic makes them so)
        idempotency_key="key-1",
        product_id="prod_1",
        subscription_id="sub_1",
        price_key="price_a",
        external_cost_amount="12.34",
        external_cost_currency="USD",
        wallet_currency="EUR",
        properties={"model": "gpt", "n": 3, "ratio": 0.25, "ok": True, "tags": ["a", "b"], "none": None},
    )
    bare = ev("cus_2", "login", T0 - 1)
    outcomes = storage.events.ingest(ORG, [full, bare], NOW)
    assert [o.status for o in outcomes] == ["ACCEPTED", "ACCEPTED"]
    id_full, id_bare = (o.event_id for o in outcomes)
    assert id_full and id_bare and id_full != id_bare

    stored = {e.id: e for e in all_events(storage)}
    assert set(stored) == {id_full, id_bare}
    assert stored[id_full] == StoredEvent(
        id=id_full,
        organization_id=ORG,
        customer_id="cus_1",
        metric_key="llm_tokens",
        quantity="1.5",
        timestamp_us=T0 + 123_456,
        ingested_at_us=NOW,
        product_id="prod_1",
        subscription_id="sub_1",
        price_key="price_a",
        idempotency_key="key-1",
        external_cost_amount="12.34",
        external_cost_currency="USD",
        wallet_currency="EUR",
        properties={"model": "gpt", "n": 3, "ratio": 0.25, "ok": True, "tags": ["a", "b"], "none": None},
    )
    assert stored[id_bare] == StoredEvent(
        id=id_bare,
        organization_id=ORG,
        customer_id="cus_2",
        metric_key="login",
        quantity="1",
        timestamp_us=T0 - 1,
        ingested_at_us=NOW,
    )


def test_ingest_duplicate_returns_first_id_and_stores_nothing(storage: SqlStorage) -> None:
    event = ev(idempotency_key="k1", quantity="2", properties={"a": 1, "b": "x"})
    [first] = ingest_ids(storage, [event])
    # Same content (properties in another order): DUPLICATE with the first id.
    again = ev(idempotency_key="k1", quantity="2", properties={"b": "x", "a": 1})
    outcomes = storage.events.ingest(ORG, [again], NOW + 5)
    assert [(o.status, o.event_id) for o in outcomes] == [("DUPLICATE", first)]
    stored = all_events(storage)
    assert [(e.id, e.ingested_at_us) for e in stored] == [(first, NOW)]


@pytest.mark.parametrize(
    "changed",
    [
        {"quantity": "3"},
        {"ts": T0 + 1},
        {"customer": "cus_2"},
        {"metric": "other"},
        {"properties": {"a": 2, "b": "x"}},
        {"properties": {"a": "1", "b": "x"}},
        {"product_id": "prod_1"},
    ],
    ids=["quantity", "timestamp", "customer", "metric", "property", "property-type", "product"],
)
def test_ingest_conflict_same_key_different_content(storage: SqlStorage, changed: dict[str, object]) -> None:
    base: dict[str, object] = {"idempotency_key": "k1", "quantity": "2", "properties": {"a": 1, "b": "x"}}
    [first] = ingest_ids(storage, [ev(**base)])  # type: ignore[arg-type]
    outcomes = storage.events.ingest(ORG, [ev(**{**base, **changed})], NOW)  # type: ignore[arg-type]
    assert [o.status for o in outcomes] == ["CONFLICT"]
    stored = all_events(storage)
    assert [(e.id, e.quantity, e.customer_id, e.metric_key, e.properties) for e in stored] == [
        (first, "2", "cus_1", "api_call", {"a": 1, "b": "x"})
    ]
    # Nothing changes: not even the customer of the refused event is registered.
    assert [c.id for c in storage.catalog.list_customers(ORG, None, 100)] == ["cus_1"]


def test_ingest_registers_only_the_customers_of_stored_events(storage: SqlStorage) -> None:
    ingest_ids(storage, [ev(idempotency_key="k1", customer="cus_a")])
    batch = [
        ev(idempotency_key="k1", customer="cus_a"),  # DUPLICATE
        ev(idempotency_key="k1", customer="cus_b", quantity="5"),  # CONFLICT
        ev(idempotency_key="k2", customer="cus_c"),  # ACCEPTED
        ev(idempotency_key="k2", customer="cus_d", quantity="7"),  # CONFLICT within the batch
    ]
    assert [o.status for o in storage.events.ingest(ORG, batch, NOW)] == [
        "DUPLICATE",
        "CONFLICT",
        "ACCEPTED",
        "CONFLICT",
    ]
    assert [c.id for c in storage.catalog.list_customers(ORG, None, 100)] == ["cus_a", "cus_c"]


def test_ingest_duplicate_keys_within_one_batch(storage: SqlStorage) -> None:
    a = ev(idempotency_key="k1", quantity="1")
    a_conflict = ev(idempotency_key="k1", quantity="9")
    c = ev(idempotency_key="k2", quantity="3")
    plain = ev(quantity="4")
    batch = [a, a, a_conflict, plain, c, plain, c]
    outcomes = storage.events.ingest(ORG, batch, NOW)
    statuses = [o.status for o in outcomes]
    assert statuses == ["ACCEPTED", "DUPLICATE", "CONFLICT", "ACCEPTED", "ACCEPTED", "ACCEPTED", "DUPLICATE"]
    assert outcomes[1].event_id == outcomes[0].event_id
    assert outcomes[6].event_id == outcomes[4].event_id
    accepted = {outcomes[i].event_id for i in (0, 3, 4, 5)}
    assert len(accepted) == 4
    stored = all_events(storage)
    assert {e.id for e in stored} == accepted
    assert sorted(e.quantity for e in stored) == ["1", "3", "4", "4"]

    # Retrying the whole batch stores only the key-less events again.
    retry = storage.events.ingest(ORG, batch, NOW + 1)
    assert [o.status for o in retry] == [
        "DUPLICATE",
        "DUPLICATE",
        "CONFLICT",
        "ACCEPTED",
        "DUPLICATE",
        "ACCEPTED",
        "DUPLICATE",
    ]
    assert (retry[0].event_id, retry[1].event_id) == (outcomes[0].event_id, outcomes[0].event_id)
    assert (retry[4].event_id, retry[6].event_id) == (outcomes[4].event_id, outcomes[4].event_id)
    assert retry[3].event_id not in accepted and retry[5].event_id not in accepted
    assert len(all_events(storage)) == 6


def test_ingest_keys_are_per_organization(storage: SqlStorage) -> None:
    [mine] = ingest_ids(storage, [ev(idempotency_key="k1")], ORG)
    [theirs] = ingest_ids(storage, [ev(idempotency_key="k1")], OTHER)
    assert mine != theirs
    assert [e.id for e in all_events(storage, ORG)] == [mine]
    assert [e.id for e in all_events(storage, OTHER)] == [theirs]


def test_ingest_registers_customers_on_first_sight(storage: SqlStorage) -> None:
    storage.catalog.create_customer(ORG, Customer("cus_known", "Known Ltd", 7))
    ingest_ids(storage, [ev("cus_new"), ev("cus_known"), ev("cus_new"), ev("cus_other_new")])
    assert storage.catalog.get_customer(ORG, "cus_known") == Customer("cus_known", "Known Ltd", 7)
    new = storage.catalog.get_customer(ORG, "cus_new")
    assert new is not None and (new.id, new.name) == ("cus_new", "")
    assert [c.id for c in storage.catalog.list_customers(ORG, None, 10)] == [
        "cus_known",
        "cus_new",
        "cus_other_new",
    ]
    assert storage.catalog.get_customer(OTHER, "cus_new") is None
    # Registering is idempotent.
    ingest_ids(storage, [ev("cus_new")])
    assert [c.id for c in storage.catalog.list_customers(ORG, None, 10)] == [
        "cus_known",
        "cus_new",
        "cus_other_new",
    ]


def test_ingest_empty_batch(storage: SqlStorage) -> None:
    assert storage.events.ingest(ORG, [], NOW) == []
    assert all_events(storage) == []


@pytest.mark.parametrize("workers", [8])
def test_ingest_concurrent_same_keys_store_each_key_once(storage: SqlStorage, workers: int) -> None:
    keys = [f"key-{i:03d}" for i in range(60)]
    batches = []
    for w in range(workers):
        order = keys[w % 7 :] + keys[: w % 7]  # each worker claims the keys in another order
        if w % 2:
            order.reverse()
        batches.append([ev(f"cus_{k[-1]}", ts=T0 + int(k[-3:]) * SEC, idempotency_key=k) for k in order])
    barrier = threading.Barrier(workers)

    def run(batch: list[NewEvent]) -> list[tuple[str, str, str]]:
        barrier.wait()
        outcomes = storage.events.ingest(ORG, batch, NOW)
        return [(e.idempotency_key or "", o.status, o.event_id) for e, o in zip(batch, outcomes, strict=True)]

    with ThreadPoolExecutor(workers) as pool:
        results = [r for rs in pool.map(run, batches) for r in rs]

    stored = all_events(storage)
    assert sorted(e.idempotency_key or "" for e in stored) == keys
    id_of = {e.idempotency_key: e.id for e in stored}
    for key, status, event_id in results:
        assert status in ("ACCEPTED", "DUPLICATE")
        assert event_id == id_of[key]
    accepted = sorted(key for key, status, _ in results if status == "ACCEPTED")
    assert accepted == keys


# ---- organization isolation ----------------------------------------------------------------


def test_organizations_never_see_each_other(storage: SqlStorage) -> None:
    mine = ingest_ids(storage, [ev("cus_1", "api_call", T0 + i * SEC, quantity="2") for i in range(3)], ORG)
    theirs = ingest_ids(
        storage, [ev("cus_1", "api_call", T0 + i * SEC, quantity="5") for i in range(2)], OTHER
    )
    assert set(mine).isdisjoint(theirs)

    assert {e.id for e in all_events(storage, ORG)} == set(mine)
    assert {e.id for e in all_events(storage, OTHER)} == set(theirs)
    assert all(e.organization_id == OTHER for e in all_events(storage, OTHER))
    assert all_events(storage, "org_nobody") == []

    query = CustomerEventQuery("cus_1", "api_call", T0, T0 + DAY)
    total, page = customer_events(storage, OTHER, query, 100, 0)
    assert (total, {e.id for e in page}) == (2, set(theirs))
    nobody = CustomerPageQuery("cus_1", "agg_x", None, T0, T0 + DAY, 100, 0)
    assert storage.reads.customer_page("org_nobody", nobody).missing == "customer"

    agg = AggregateQuery(
        T0,
        T0 + DAY,
        "day",
        (OffsetSegment(T0, 0),),
        "sum_quantity",
        "none",
        EventFilters(customer_id="cus_1"),
    )
    assert run_aggregate(storage, agg) == {("", expected_bucket_key(T0, "day", UTC)): Decimal(6)}
    assert run_aggregate(storage, agg, OTHER) == {("", expected_bucket_key(T0, "day", UTC)): Decimal(10)}
    assert storage.aggregates.aggregate("org_nobody", agg) == AggregateAnswer(0, [], [])

    assert [c.id for c in storage.catalog.list_customers(OTHER, None, 10)] == ["cus_1"]
    storage.catalog.create_aggregator(ORG, make_aggregator("agg_1"))
    storage.catalog.create_aggregator_filter(ORG, AggregatorFilter("flt_1", "agg_1", "f", PropertyFilter()))
    assert "agg_1" not in {a.id for a in storage.catalog.list_aggregators(OTHER, None, 10)}
    assert storage.catalog.get_aggregator_filter(OTHER, "flt_1") is None
    assert storage.catalog.delete_aggregator_filter(OTHER, "agg_1", "flt_1") is False
    assert storage.catalog.get_aggregator_filter(ORG, "flt_1") is not None


# ---- customer events (ListCustomerUsageEvents) ---------------------------------------------


def test_customer_events_window_is_half_open_and_scoped(storage: SqlStorage) -> None:
    start, end = T0, T0 + DAY
    inside = ingest_ids(storage, [ev(ts=start), ev(ts=start + HOUR), ev(ts=end - 1)])
    ingest_ids(
        storage,
        [
            ev(ts=start - 1),
            ev(ts=end),
            ev(ts=end + HOUR),
            ev("cus_2", ts=start + HOUR),  # another customer
            ev(metric="login", ts=start + HOUR),  # another metric
        ],
    )
    total, page = customer_events(storage, ORG, CustomerEventQuery("cus_1", "api_call", start, end), 50, 0)
    assert total == 3
    assert [e.id for e in page] == [inside[2], inside[1], inside[0]]
    assert [e.timestamp_us for e in page] == [end - 1, start + HOUR, start]
    assert all(isinstance(e, StoredEvent) and e.customer_id == "cus_1" for e in page)


def test_customer_events_order_and_offset_pagination(storage: SqlStorage) -> None:
    # Ties on the timestamp are ordered by id descending.
    stamps = [
        T0 + 5 * SEC,
        T0 + 5 * SEC,
        T0 + 5 * SEC,
        T0 + 9 * SEC,
        T0 + 1 * SEC,
        T0 + 9 * SEC,
        T0 + 7 * SEC,
    ]
    ids = ingest_ids(storage, [ev(ts=t) for t in stamps])
    expected = [i for _, i in sorted(zip(stamps, ids, strict=True), reverse=True)]
    query = CustomerEventQuery("cus_1", "api_call", T0, T0 + HOUR)

    total, page = customer_events(storage, ORG, query, 100, 0)
    assert (total, [e.id for e in page]) == (7, expected)
    assert customer_events(storage, ORG, query, 3, 0)[1] == page[0:3]
    assert [e.id for e in customer_events(storage, ORG, query, 3, 3)[1]] == expected[3:6]
    assert [e.id for e in customer_events(storage, ORG, query, 3, 6)[1]] == expected[6:]
    assert customer_events(storage, ORG, query, 3, 6)[0] == 7
    assert customer_events(storage, ORG, query, 3, 7) == (7, [])
    assert customer_events(storage, ORG, query, 3, 100) == (7, [])
    assert customer_events(storage, ORG, query, 0, 0) == (7, [])
    assert customer_events(storage, ORG, query, 0, 2) == (7, [])
    # A window without events.
    empty = CustomerEventQuery("cus_1", "api_call", T0 + HOUR, T0 + 2 * HOUR)
    assert customer_events(storage, ORG, empty, 10, 0) == (0, [])


# Each event is labelled; each filter case lists exactly the labels it must match.
FILTER_EVENTS: dict[str, dict[str, object]] = {
    "s5": {"v": "5", "region": "eu"},
    "s7": {"v": "7", "region": "us"},
    "n5": {"v": 5, "region": "eu"},
    "n5f": {"v": 5.0, "region": "us"},
    "n7.5": {"v": 7.5, "region": "eu"},
    "n10": {"v": 10, "region": "us"},
    "neg": {"v": -2, "region": "eu"},
    "true": {"v": True, "region": "us"},
    "false": {"v": False, "region": "eu"},
    "strue": {"v": "true", "region": "eu"},
    "null": {"v": None, "region": "us"},
    "absent": {"region": "eu"},
    "sa": {"v": "a", "region": "us", "plan.tier-x": "pro"},
    "sb": {"v": "b", "plan.tier-x": "free"},
    "arr": {"v": ["5", 5]},
}
ALL = set(FILTER_EVENTS)


def _c(prop: str, op: str, value: object = None) -> PropertyFilter:
    return PropertyFilter("and", (Condition(prop, op, value),))  # type: ignore[arg-type]


FILTER_CASES: list[tuple[str, tuple[PropertyFilter, ...], set[str]]] = [
    ("no-filter", (), ALL),
    ("empty-filter", (PropertyFilter(),), ALL),
    ("equals-string", (_c("v", "equals", "5"),), {"s5"}),
    ("equals-int", (_c("v", "equals", 5),), {"n5", "n5f"}),
    ("equals-float", (_c("v", "equals", 5.0),), {"n5", "n5f"}),
    ("equals-fraction", (_c("v", "equals", 7.5),), {"n7.5"}),
    ("equals-negative", (_c("v", "equals", -2),), {"neg"}),
    ("equals-true", (_c("v", "equals", True),), {"true"}),
    ("equals-false", (_c("v", "equals", False),), {"false"}),
    ("equals-string-true", (_c("v", "equals", "true"),), {"strue"}),
    ("equals-null", (_c("v", "equals", None),), {"null", "absent"}),
    ("equals-missing-prop", (_c("nope", "equals", "x"),), set()),
    ("not_equals-int", (_c("v", "not_equals", 5),), ALL - {"n5", "n5f"}),
    ("not_equals-string", (_c("v", "not_equals", "5"),), ALL - {"s5"}),
    ("not_equals-true", (_c("v", "not_equals", True),), ALL - {"true"}),
    ("not_equals-missing-prop", (_c("nope", "not_equals", "x"),), ALL),
    ("in-mixed", (_c("v", "in", ["5", 10]),), {"s5", "n10"}),
    ("in-bool-string", (_c("v", "in", [True, "a"]),), {"true", "sa"}),
    ("in-numbers", (_c("v", "in", [5, 7.5, 99]),), {"n5", "n5f", "n7.5"}),
    ("not_in", (_c("v", "not_in", [5, "a"]),), ALL - {"n5", "n5f", "sa"}),
    ("not_in-false-string7", (_c("v", "not_in", [False, "7"]),), ALL - {"false", "s7"}),
    ("gt-number", (_c("v", "gt", 5),), {"n7.5", "n10"}),
    ("gt-number-not-lexical", (_c("v", "gt", 9),), {"n10"}),
    ("gte-number", (_c("v", "gte", 5),), {"n5", "n5f", "n7.5", "n10"}),
    ("lt-number", (_c("v", "lt", 10),), {"n5", "n5f", "n7.5", "neg"}),
    ("lte-number", (_c("v", "lte", 7.5),), {"n5", "n5f", "n7.5", "neg"}),
    ("lt-zero", (_c("v", "lt", 0),), {"neg"}),
    ("gt-string", (_c("v", "gt", "a"),), {"sb", "strue"}),
    ("gte-string", (_c("v", "gte", "a"),), {"sa", "sb", "strue"}),
    ("lt-string", (_c("v", "lt", "6"),), {"s5"}),
    ("lte-string", (_c("v", "lte", "7"),), {"s5", "s7"}),
    ("is_null", (_c("v", "is_null"),), {"null", "absent"}),
    ("is_not_null", (_c("v", "is_not_null"),), ALL - {"null", "absent"}),
    ("is_null-missing-prop", (_c("nope", "is_null"),), ALL),
    ("key-with-dot-and-dash", (_c("plan.tier-x", "equals", "pro"),), {"sa"}),
    (
        "and",
        (PropertyFilter("and", (Condition("v", "gte", 5), Condition("region", "equals", "eu"))),),
        {"n5", "n7.5"},
    ),
    (
        "or",
        (PropertyFilter("or", (Condition("v", "equals", "a"), Condition("region", "equals", "us"))),),
        {"s7", "n5f", "n10", "true", "null", "sa"},
    ),
    (
        "or-with-not_equals",
        (PropertyFilter("or", (Condition("v", "equals", 10), Condition("region", "not_equals", "eu"))),),
        {"s7", "n5f", "n10", "true", "null", "sa", "sb", "arr"},
    ),
    (
        "two-filters-anded",
        (
            PropertyFilter("or", (Condition("v", "equals", 5), Condition("v", "equals", "5"))),
            PropertyFilter("and", (Condition("region", "equals", "eu"),)),
        ),
        {"s5", "n5"},
    ),
]


@pytest.mark.parametrize(
    ("filters", "expected"), [c[1:] for c in FILTER_CASES], ids=[c[0] for c in FILTER_CASES]
)
def test_customer_events_property_filters(
    storage: SqlStorage, filters: tuple[PropertyFilter, ...], expected: set[str]
) -> None:
    labels = list(FILTER_EVENTS)
    events = [ev(ts=T0 + i * SEC, properties=FILTER_EVENTS[label]) for i, label in enumerate(labels)]
    # Noise that must never match: other customer, other metric, outside the window.
    noise = [
        ev("cus_2", properties={"v": 5, "region": "eu"}),
        ev(metric="login", properties={"v": 5, "region": "eu"}),
        ev(ts=T0 + DAY, properties={"v": 5, "region": "eu"}),
    ]
    ids = ingest_ids(storage, events + noise)
    label_of = dict(zip(ids, labels, strict=False))
    query = CustomerEventQuery("cus_1", "api_call", T0, T0 + DAY, filters)
    total, page = customer_events(storage, ORG, query, 100, 0)
    assert {label_of.get(e.id, e.id) for e in page} == expected
    assert total == len(expected) == len(page)
    # Order holds under filters too (timestamps increase with the label index).
    assert [e.timestamp_us for e in page] == sorted((e.timestamp_us for e in page), reverse=True)


def test_customer_events_property_filters_one_after_another(storage: SqlStorage) -> None:
    """Every filter above on one storage, in turn: each filter's statement is compiled once and kept,
    and no filter is answered by another's (true, 1 and 1.0 are equal in Python, not in a filter)."""
    labels = list(FILTER_EVENTS)
    events = [ev(ts=T0 + i * SEC, properties=FILTER_EVENTS[label]) for i, label in enumerate(labels)]
    label_of = dict(zip(ingest_ids(storage, events), labels, strict=True))
    cases = [c[1:] for c in FILTER_CASES]
    cases += [((_c("v", "equals", True),), {"true"}), ((_c("v", "equals", 1),), set())]
    cases += [((_c("v", "in", [False]),), {"false"}), ((_c("v", "in", [0]),), set())]
    for filters, expected in cases * 2:
        query = CustomerEventQuery("cus_1", "api_call", T0, T0 + DAY, filters)
        total, page = customer_events(storage, ORG, query, 100, 0)
        assert ({label_of[e.id] for e in page}, total) == (expected, len(expected)), filters


def test_customer_events_exact_strings_and_big_numbers(storage: SqlStorage) -> None:
    props = {
        "sharp": {"v": "Straße"},
        "lower": {"v": "strasse"},
        "upper": {"v": "A"},
        "low-a": {"v": "a"},
        "accent": {"v": "é"},
        "z": {"v": "z"},
        "padded": {"v": " a"},
        "big": {"v": 9007199254740993},
        "big-1": {"v": 9007199254740992},
    }
    labels = list(props)
    ids = ingest_ids(storage, [ev(ts=T0 + i, properties=props[k]) for i, k in enumerate(labels)])
    label_of = dict(zip(ids, labels, strict=True))

    def match(*conditions: Condition) -> set[str]:
        query = CustomerEventQuery("cus_1", "api_call", T0, T0 + HOUR, (PropertyFilter("and", conditions),))
        total, page = customer_events(storage, ORG, query, 100, 0)
        assert total == len(page)
        return {label_of[e.id] for e in page}

    assert match(Condition("v", "equals", "Straße")) == {"sharp"}
    assert match(Condition("v", "equals", "a")) == {"low-a"}
    assert match(Condition("v", "equals", "A")) == {"upper"}
    assert match(Condition("v", "in", ["strasse", "é"])) == {"lower", "accent"}
    # Strings order by code point (byte order of UTF-8), whatever the database locale.
    assert match(Condition("v", "gt", "z")) == {"accent"}
    assert match(Condition("v", "lt", "a")) == {"upper", "padded", "sharp"}  # "S" < "a"
    assert match(Condition("v", "gte", "a"), Condition("v", "lt", "t")) == {"low-a", "lower"}
    assert match(Condition("v", "equals", 9007199254740993)) == {"big"}
    assert match(Condition("v", "gt", 9007199254740992)) == {"big"}
    assert match(Condition("v", "gte", 9007199254740992)) == {"big", "big-1"}


# ---- list events (ListUsageEvents) ---------------------------------------------------------


@pytest.mark.parametrize("limit", [25, 7, 1])
def test_list_events_keyset_never_repeats_or_skips_on_shared_timestamp(
    storage: SqlStorage, limit: int
) -> None:
    same = T0 + HOUR
    batch = [ev(f"cus_{i % 3}", ts=same) for i in range(300)]
    batch += [
        ev(ts=T0 + 2 * HOUR),
        ev(ts=T0 + 2 * HOUR),
        ev(ts=T0),
        ev(ts=T0 + HOUR + 1),
        ev(ts=T0 + HOUR - 1),
    ]
    ids = ingest_ids(storage, batch)
    expected = [e.id for e in newest_first(all_events(storage))]
    assert set(expected) == set(ids) and len(expected) == 305

    seen: list[str] = []
    after: tuple[int, str] | None = None
    pages = 0
    while True:
        page = storage.reads.list_events(ORG, EventFilters(), after, limit)[0]
        assert len(page) <= limit
        if not page:
            break
        seen.extend(event_id for _, event_id, _ in page)
        after = page[-1][:2]
        pages += 1
        assert pages <= 400
    assert seen == expected
    # The expected order is (timestamp desc, id desc), checked from the raw values.
    stored = {e.id: e for e in all_events(storage)}
    keys = [(stored[i].timestamp_us, i) for i in seen]
    assert keys == sorted(keys, reverse=True)


def test_list_events_limit_and_position(storage: SqlStorage) -> None:
    ids = ingest_ids(storage, [ev(ts=T0 + i * SEC) for i in range(10)])
    newest = list(reversed(ids))
    assert [e[1] for e in storage.reads.list_events(ORG, EventFilters(), None, 4)[0]] == newest[:4]
    # `after` is exclusive; a position need not be an existing event.
    assert [
        e[1] for e in storage.reads.list_events(ORG, EventFilters(), (T0 + 5 * SEC, ids[5]), 3)[0]
    ] == newest[5:8]
    assert [
        e[1] for e in storage.reads.list_events(ORG, EventFilters(), (T0 + 5 * SEC, "zzz"), 3)[0]
    ] == newest[4:7]
    assert [e[1] for e in storage.reads.list_events(ORG, EventFilters(), (T0 + 5 * SEC, ""), 3)[0]] == newest[
        5:8
    ]
    assert storage.reads.list_events(ORG, EventFilters(), (T0, ids[0]), 3)[0] == []


LIST_EVENTS = [
    # (label, customer, metric, offset seconds, product, subscription)
    ("a", "cus_1", "api_call", 0, "prod_1", "sub_1"),
    ("b", "cus_1", "login", 10, "prod_1", None),
    ("c", "cus_2", "api_call", 20, "prod_2", "sub_2"),
    ("d", "cus_2", "storage", 30, None, "sub_1"),
    ("e", "cus_3", "api_call", 40, "prod_1", "sub_2"),
    ("f", "cus_1", "storage", 50, None, None),
]

LIST_FILTER_CASES: list[tuple[str, EventFilters, str]] = [
    ("none", EventFilters(), "fedcba"),
    ("customer", EventFilters(customer_id="cus_1"), "fba"),
    ("customer-unknown", EventFilters(customer_id="cus_9"), ""),
    ("product", EventFilters(product_id="prod_1"), "eba"),
    ("subscription", EventFilters(subscription_id="sub_1"), "da"),
    ("one-metric", EventFilters(metric_keys=("api_call",)), "eca"),
    ("two-metrics", EventFilters(metric_keys=("login", "storage")), "fdb"),
    ("after-inclusive", EventFilters(occurred_after_us=T0 + 20 * SEC), "fedc"),
    ("before-exclusive", EventFilters(occurred_before_us=T0 + 20 * SEC), "ba"),
    ("window", EventFilters(occurred_after_us=T0 + 10 * SEC, occurred_before_us=T0 + 40 * SEC), "dcb"),
    (
        "combined",
        EventFilters(customer_id="cus_2", metric_keys=("api_call", "storage"), subscription_id="sub_2"),
        "c",
    ),
    ("product-and-metric", EventFilters(product_id="prod_1", metric_keys=("api_call",)), "ea"),
]


@pytest.mark.parametrize(
    ("filters", "expected"), [c[1:] for c in LIST_FILTER_CASES], ids=[c[0] for c in LIST_FILTER_CASES]
)
def test_list_events_filters(storage: SqlStorage, filters: EventFilters, expected: str) -> None:
    events = [
        ev(cus, metric, T0 + off * SEC, product_id=prod, subscription_id=sub)
        for _, cus, metric, off, prod, sub in LIST_EVENTS
    ]
    ids = ingest_ids(storage, events)
    ingest_ids(storage, events, OTHER)  # the same events in another organization never show up
    label_of = {i: row[0] for i, row in zip(ids, LIST_EVENTS, strict=True)}
    got = storage.reads.list_events(ORG, filters, None, 100)[0]
    assert "".join(label_of[event_id] for _, event_id, _ in got) == expected
    # Paging with filters: one at a time gives the same sequence.
    one_by_one: list[str] = []
    after: tuple[int, str] | None = None
    while page := storage.reads.list_events(ORG, filters, after, 1)[0]:
        one_by_one.append(label_of[page[0][1]])
        after = page[0][:2]
    assert "".join(one_by_one) == expected


# ---- aggregate (AggregateUsage) ------------------------------------------------------------


def to_local(ts_us: int, tz: dt.tzinfo) -> dt.datetime:
    return (EPOCH + dt.timedelta(microseconds=ts_us)).astimezone(tz)


def expected_bucket_key(ts_us: int, bucket: str, tz: dt.tzinfo) -> int:
    """The AggregateQuery bucket key, from the calendar: the UTC start of the local hour, the local
    day number since 1970-01-01, or the local ISO week number since Monday 1970-01-05."""
    local = to_local(ts_us, tz)
    if bucket == "hour":
        into_hour = dt.timedelta(minutes=local.minute, seconds=local.second, microseconds=local.microsecond)
        return ts_us - into_hour // dt.timedelta(microseconds=1)
    days = (local.date() - dt.date(1970, 1, 1)).days
    if bucket == "day":
        return days
    return (local.date() - dt.date(1970, 1, 5)).days // 7


def segments_for(tz: dt.tzinfo, since_us: int, until_us: int) -> tuple[OffsetSegment, ...]:
    """The UTC-offset segments of `tz` over [since, until), found by scanning minute by minute."""

    def offset(t: int) -> int:
        off = to_local(t, tz).utcoffset()
        assert off is not None
        return off // dt.timedelta(microseconds=1)

    segments = [OffsetSegment(since_us, offset(since_us))]
    for t in range(since_us, until_us, MIN):
        if offset(t) != segments[-1].offset_us:
            segments.append(OffsetSegment(t, offset(t)))
    return tuple(segments)


def expected_aggregate(
    events: list[NewEvent], query: AggregateQuery, tz: dt.tzinfo
) -> dict[tuple[str, int], Decimal]:
    out: dict[tuple[str, int], Decimal] = defaultdict(Decimal)
    for e in events:
        if not (query.since_us <= e.timestamp_us < query.until_us):
            continue
        f = query.filters
        if f.customer_id is not None and e.customer_id != f.customer_id:
            continue
        if f.metric_keys and e.metric_key not in f.metric_keys:
            continue
        if query.group_by == "metric_key":
            group = e.metric_key
        elif query.group_by.startswith("dim:"):
            raw = e.properties.get(query.group_by[4:])
            group = "" if raw is None else ("true" if raw is True else "false" if raw is False else str(raw))
        else:
            group = ""
        value = Decimal(1) if query.metric == "count" else Decimal(e.quantity)
        cell = (group, expected_bucket_key(e.timestamp_us, query.bucket, tz))
        out[cell] = EXACT.add(out[cell], value)
    return dict(out)


def run_aggregate(
    storage: SqlStorage, query: AggregateQuery, org: str = ORG
) -> dict[tuple[str, int], Decimal]:
    """{(group, bucket key): exact value} of every group (the query keeps them all: top 0)."""
    answer = storage.aggregates.aggregate(org, query)
    assert answer.groups == len(answer.series), "every group is a series"
    result: dict[tuple[str, int], Decimal] = {}
    totals: dict[int, Decimal] = defaultdict(Decimal)
    for cell in answer.cells:
        key = answer.series[cell.series][0]
        assert key is not None, "nothing folded"
        result[(key, cell.bucket_key)] = Decimal(cell.value)
        totals[cell.series] = EXACT.add(totals[cell.series], Decimal(cell.value))
    assert len(result) == len(answer.cells), "one value per (group, bucket)"
    assert [Decimal(total) for _, total in answer.series] == [totals[i] for i in range(len(answer.series))]
    return result


def test_aggregate_count_hour_utc_window_bounds(storage: SqlStorage) -> None:
    since, until = us("2024-06-01T10:00:00Z"), us("2024-06-01T13:00:00Z")
    stamps = [
        "2024-06-01T09:59:59.999999Z",  # before since
        "2024-06-01T10:00:00Z",
        "2024-06-01T10:59:59.999999Z",
        "2024-06-01T11:00:00Z",
        "2024-06-01T11:30:00Z",
        "2024-06-01T11:45:00Z",
        "2024-06-01T12:59:59.999999Z",
        "2024-06-01T13:00:00Z",  # until: excluded
        "2024-06-01T14:00:00Z",
    ]
    events = [ev(ts=us(s)) for s in stamps]
    ingest_ids(storage, events)
    query = AggregateQuery(since, until, "hour", (OffsetSegment(since, 0),), "count", "none", EventFilters())
    got = run_aggregate(storage, query)
    assert got == {
        ("", us("2024-06-01T10:00:00Z")): 2.0,
        ("", us("2024-06-01T11:00:00Z")): 3.0,
        ("", us("2024-06-01T12:00:00Z")): 1.0,
    }
    assert got == expected_aggregate(events, query, UTC)


def test_aggregate_partial_buckets_count_only_the_window(storage: SqlStorage) -> None:
    # since/until inside a day: events of the same days outside the window do not count.
    events = [
        ev(ts=us(s))
        for s in [
            "2024-06-01T05:00:00Z",
            "2024-06-01T07:00:00Z",
            "2024-06-02T03:00:00Z",
            "2024-06-02T09:00:00Z",
        ]
    ]
    ingest_ids(storage, events)
    since, until = us("2024-06-01T06:00:00Z"), us("2024-06-02T06:00:00Z")
    query = AggregateQuery(since, until, "day", (OffsetSegment(since, 0),), "count", "none", EventFilters())
    day1 = (dt.date(2024, 6, 1) - dt.date(1970, 1, 1)).days
    assert run_aggregate(storage, query) == {("", day1): 1.0, ("", day1 + 1): 1.0}


def test_aggregate_sums_quantities_exactly(storage: SqlStorage) -> None:
    # Billing sums: 0.1 + 0.2 is 0.3, not 0.30000000000000004, on both databases; a sum of the widest
    # quantities keeps every digit until the final double.
    big = "9" * 24 + "." + "9" * 12
    events = [
        ev(ts=us("2024-06-01T01:00:00Z"), quantity="0.1"),
        ev(ts=us("2024-06-01T02:00:00Z"), quantity="0.2"),
        *[ev(metric="m", ts=us("2024-06-02T01:00:00Z") + i, quantity="0.1") for i in range(10)],
        ev(metric="big", ts=us("2024-06-03T01:00:00Z"), quantity=big),
        ev(metric="big", ts=us("2024-06-03T02:00:00Z"), quantity="-" + big),
        ev(metric="big", ts=us("2024-06-03T03:00:00Z"), quantity="0.000000000001"),
    ]
    ingest_ids(storage, events)
    since, until = us("2024-06-01T00:00:00Z"), us("2024-06-04T00:00:00Z")
    d = (dt.date(2024, 6, 1) - dt.date(1970, 1, 1)).days
    q = AggregateQuery(
        since, until, "day", (OffsetSegment(since, 0),), "sum_quantity", "metric_key", EventFilters()
    )
    assert run_aggregate(storage, q) == {
        ("api_call", d): Decimal("0.3"),
        ("m", d + 1): 1,
        ("big", d + 2): Decimal("0.000000000001"),
    }


def test_aggregate_sum_quantity_by_metric_key_per_day(storage: SqlStorage) -> None:
    events = [
        ev(metric="api_call", ts=us("2024-06-01T00:00:00Z"), quantity="1.5"),
        ev(metric="api_call", ts=us("2024-06-01T23:59:59Z"), quantity="2.25"),
        ev(metric="api_call", ts=us("2024-06-02T00:00:00Z"), quantity="0.125"),
        ev(metric="storage", ts=us("2024-06-01T12:00:00Z"), quantity="1000"),
        ev(metric="storage", ts=us("2024-06-03T12:00:00Z"), quantity="0.5"),
        ev(metric="login", ts=us("2024-06-02T12:00:00Z"), quantity="3"),
        ev("cus_2", metric="login", ts=us("2024-06-02T13:00:00Z"), quantity="4"),
    ]
    ingest_ids(storage, events)
    since, until = us("2024-06-01T00:00:00Z"), us("2024-06-04T00:00:00Z")
    d = (dt.date(2024, 6, 1) - dt.date(1970, 1, 1)).days
    seg = (OffsetSegment(since, 0),)

    q = AggregateQuery(since, until, "day", seg, "sum_quantity", "metric_key", EventFilters())
    assert run_aggregate(storage, q) == {
        ("api_call", d): Decimal("3.75"),
        ("api_call", d + 1): Decimal("0.125"),
        ("storage", d): 1000.0,
        ("storage", d + 2): Decimal("0.5"),
        ("login", d + 1): 7.0,
    }
    assert run_aggregate(storage, q) == expected_aggregate(events, q, UTC)

    q_count = AggregateQuery(since, until, "day", seg, "count", "metric_key", EventFilters())
    assert run_aggregate(storage, q_count) == {
        ("api_call", d): 2.0,
        ("api_call", d + 1): 1.0,
        ("storage", d): 1.0,
        ("storage", d + 2): 1.0,
        ("login", d + 1): 2.0,
    }

    q_none = AggregateQuery(since, until, "day", seg, "sum_quantity", "none", EventFilters())
    assert run_aggregate(storage, q_none) == {
        ("", d): Decimal("1003.75"),
        ("", d + 1): Decimal("7.125"),
        ("", d + 2): Decimal("0.5"),
    }

    # Filters: customer and metric keys.
    q_f = AggregateQuery(
        since,
        until,
        "day",
        seg,
        "sum_quantity",
        "metric_key",
        EventFilters(customer_id="cus_1", metric_keys=("login", "storage")),
    )
    assert run_aggregate(storage, q_f) == {
        ("storage", d): 1000.0,
        ("storage", d + 2): Decimal("0.5"),
        ("login", d + 1): 3.0,
    }
    assert run_aggregate(storage, q_f) == expected_aggregate(events, q_f, UTC)


def test_aggregate_group_by_dimension(storage: SqlStorage) -> None:
    ts = us("2024-06-01T10:15:00Z")
    events = [
        ev(ts=ts, properties={"region": "eu"}),
        ev(ts=ts + MIN, properties={"region": "eu", "x": 1}),
        ev(ts=ts + 2 * MIN, properties={"region": "us"}),
        ev(ts=ts + HOUR, properties={"region": "us"}),
        ev(ts=ts, properties={}),
        ev(ts=ts + HOUR, properties={"other": "eu"}),
        ev(ts=ts + HOUR, properties={"region": None}),
        ev(ts=ts, properties={"region": 5}),
        ev(ts=ts, properties={"region": True}),
        ev(ts=ts, properties={"plan.tier-x": "pro"}),
    ]
    ingest_ids(storage, events)
    since, until = us("2024-06-01T00:00:00Z"), us("2024-06-02T00:00:00Z")
    q = AggregateQuery(
        since, until, "hour", (OffsetSegment(since, 0),), "count", "dim:region", EventFilters()
    )
    h10, h11 = us("2024-06-01T10:00:00Z"), us("2024-06-01T11:00:00Z")
    assert run_aggregate(storage, q) == {
        ("eu", h10): 2.0,
        ("us", h10): 1.0,
        ("us", h11): 1.0,
        ("", h10): 2.0,
        ("", h11): 2.0,
        ("5", h10): 1.0,
        ("true", h10): 1.0,
    }
    # A key with a dot and a dash, that only one event has: the rest under "".
    q_dotted = AggregateQuery(
        since, until, "hour", (OffsetSegment(since, 0),), "count", "dim:plan.tier-x", EventFilters()
    )
    assert run_aggregate(storage, q_dotted) == {("pro", h10): 1.0, ("", h10): 6.0, ("", h11): 3.0}
    # A key nobody has: everything under "".
    q_missing = AggregateQuery(
        since, until, "hour", (OffsetSegment(since, 0),), "count", "dim:nobody", EventFilters()
    )
    assert run_aggregate(storage, q_missing) == {("", h10): 7.0, ("", h11): 3.0}


def test_aggregate_week_buckets_start_monday(storage: SqlStorage) -> None:
    # 2024-06-02 is a Sunday, 2024-06-03 a Monday.
    stamps = [
        "2024-05-27T00:00:00Z",  # Monday
        "2024-06-02T23:59:59.999999Z",  # Sunday, same ISO week
        "2024-06-03T00:00:00Z",  # next week
        "2024-06-09T12:00:00Z",
        "2024-06-10T00:00:00Z",
    ]
    events = [ev(ts=us(s)) for s in stamps]
    ingest_ids(storage, events)
    since, until = us("2024-05-27T00:00:00Z"), us("2024-06-17T00:00:00Z")
    q = AggregateQuery(since, until, "week", (OffsetSegment(since, 0),), "count", "none", EventFilters())
    w = (dt.date(2024, 5, 27) - dt.date(1970, 1, 5)).days // 7
    assert (dt.date(2024, 5, 27) - dt.date(1970, 1, 5)).days % 7 == 0
    assert run_aggregate(storage, q) == {("", w): 2.0, ("", w + 1): 2.0, ("", w + 2): 1.0}
    assert run_aggregate(storage, q) == expected_aggregate(events, q, UTC)


# Zones, windows and event times chosen around offset changes and day/week edges.
TZ_CASES = [
    (
        "paris-spring-forward",
        "Europe/Paris",
        "2024-03-29T00:00:00Z",
        "2024-04-03T00:00:00Z",
        [
            "2024-03-30T22:59:59Z",  # Sat 23:59:59 local (+1)
            "2024-03-30T23:00:00Z",  # Sun 00:00 local (+1)
            "2024-03-31T00:30:00Z",  # 01:30 local (+1)
            "2024-03-31T00:59:59Z",  # 01:59:59 local (+1)
            "2024-03-31T01:00:00Z",  # 03:00 local (+2)
            "2024-03-31T01:30:00Z",
            "2024-03-31T21:59:59Z",  # Sun 23:59:59 local (+2)
            "2024-03-31T22:00:00Z",  # Mon 00:00 local: a new ISO week
            "2024-04-01T10:00:00Z",
        ],
    ),
    (
        "new-york-fall-back",
        "America/New_York",
        "2024-11-01T00:00:00Z",
        "2024-11-12T00:00:00Z",
        [
            "2024-11-03T03:59:59Z",  # Sat 23:59:59 EDT
            "2024-11-03T04:00:00Z",  # Sun 00:00 EDT
            "2024-11-03T05:30:00Z",  # 01:30 EDT
            "2024-11-03T06:30:00Z",  # 01:30 EST: the same local hour, a different bucket
            "2024-11-03T06:59:59Z",
            "2024-11-04T04:59:59Z",  # Sun 23:59:59 EST
            "2024-11-04T05:00:00Z",  # Mon 00:00 EST: a new ISO week
            "2024-11-11T04:59:59Z",  # Sun 23:59:59 EST
            "2024-11-11T05:00:00Z",  # Mon: the next week
        ],
    ),
    (
        "kolkata-half-hour",
        "Asia/Kolkata",
        "2024-06-01T00:00:00Z",
        "2024-06-04T00:00:00Z",
        [
            "2024-06-01T00:29:59Z",  # 05:59:59 local
            "2024-06-01T00:30:00Z",  # 06:00 local
            "2024-06-01T18:29:59Z",  # 23:59:59 local, Sat Jun 1
            "2024-06-01T18:30:00Z",  # Sun Jun 2 00:00 local
            "2024-06-02T18:29:59Z",  # Sun 23:59:59 local
            "2024-06-02T18:30:00Z",  # Mon 00:00 local: a new week
        ],
    ),
    (
        "auckland-ahead-of-utc-week",
        "Pacific/Auckland",
        "2024-04-01T00:00:00Z",
        "2024-04-15T00:00:00Z",
        [
            "2024-04-06T13:59:59Z",  # Sun 7 Apr 02:59:59 NZDT (+13)
            "2024-04-06T14:00:00Z",  # Sun 02:00 NZST (+12): clocks went back
            "2024-04-07T11:59:59Z",  # Sun 23:59:59 NZST
            "2024-04-07T12:00:00Z",  # Mon 8 Apr 00:00 NZST: a new week, while UTC is still Sunday
        ],
    ),
]


@pytest.mark.parametrize("bucket", ["hour", "day", "week"])
@pytest.mark.parametrize(
    ("zone", "since", "until", "stamps"), [c[1:] for c in TZ_CASES], ids=[c[0] for c in TZ_CASES]
)
def test_aggregate_buckets_in_time_zones(
    storage: SqlStorage, bucket: str, zone: str, since: str, until: str, stamps: list[str]
) -> None:
    tz = ZoneInfo(zone)
    since_us, until_us = us(since), us(until)
    segments = segments_for(tz, since_us, until_us)
    if zone in ("Europe/Paris", "America/New_York", "Pacific/Auckland"):
        assert len(segments) == 2, "the window spans one offset change"
    events = [ev(ts=us(s), quantity="0.5", properties={"i": str(i % 2)}) for i, s in enumerate(stamps)]
    ingest_ids(storage, events)
    for metric, group_by in [("count", "none"), ("sum_quantity", "dim:i")]:
        q = AggregateQuery(since_us, until_us, bucket, segments, metric, group_by, EventFilters())  # type: ignore[arg-type]
        expected = expected_aggregate(events, q, tz)
        assert run_aggregate(storage, q) == expected
    # A spot check of the expected keys themselves, written out by hand.
    if zone == "America/New_York" and bucket == "hour":
        q = AggregateQuery(since_us, until_us, "hour", segments, "count", "none", EventFilters())
        got = run_aggregate(storage, q)
        assert got[("", us("2024-11-03T05:00:00Z"))] == 1.0
        assert got[("", us("2024-11-03T06:00:00Z"))] == 2.0
    if zone == "Asia/Kolkata" and bucket == "hour":
        q = AggregateQuery(since_us, until_us, "hour", segments, "count", "none", EventFilters())
        got = run_aggregate(storage, q)
        assert got[("", us("2024-05-31T23:30:00Z"))] == 1.0
        assert got[("", us("2024-06-01T00:30:00Z"))] == 1.0
    if zone == "Pacific/Auckland" and bucket == "week":
        q = AggregateQuery(since_us, until_us, "week", segments, "count", "none", EventFilters())
        w = (dt.date(2024, 4, 1) - dt.date(1970, 1, 5)).days // 7  # Monday 1 Apr 2024
        assert run_aggregate(storage, q) == {("", w): 3.0, ("", w + 1): 1.0}
    if zone == "Europe/Paris" and bucket == "day":
        q = AggregateQuery(since_us, until_us, "day", segments, "count", "none", EventFilters())
        d = (dt.date(2024, 3, 30) - dt.date(1970, 1, 1)).days
        assert run_aggregate(storage, q) == {("", d): 1.0, ("", d + 1): 6.0, ("", d + 2): 2.0}


def test_aggregate_empty(storage: SqlStorage) -> None:
    ingest_ids(storage, [ev(ts=T0)])
    q = AggregateQuery(T0 + 1, T0 + DAY, "hour", (OffsetSegment(T0 + 1, 0),), "count", "none", EventFilters())
    assert storage.aggregates.aggregate(ORG, q) == AggregateAnswer(0, [], [])


# ---- deadlines -----------------------------------------------------------------------------

HEAVY_ROWS = 30_000


def test_aggregate_deadline_exceeded(storage: SqlStorage) -> None:
    base = us("2024-01-01T00:00:00Z")
    counter = itertools.count()
    for _ in range(HEAVY_ROWS // 5000):
        batch = []
        for _ in range(5000):
            i = next(counter)
            batch.append(
                ev(
                    f"cus_{i % 40}",
                    f"m{i % 7}",
                    base + i * 97 * SEC,
                    quantity="1.5",
                    properties={"r": f"r{i % 11}"},
                )
            )
        storage.events.ingest(ORG, batch, NOW)
    since, until = base, base + HEAVY_ROWS * 97 * SEC + 1
    segments = (OffsetSegment(since, HOUR), OffsetSegment(base + 400 * HOUR, 2 * HOUR))
    query = AggregateQuery(since, until, "week", segments, "sum_quantity", "dim:r", EventFilters())
    # Without a deadline the query completes (so a failure below is the deadline, not the query).
    answer = storage.aggregates.aggregate(ORG, query, Deadline(30.0))
    assert sum(Decimal(total) for _, total in answer.series) == HEAVY_ROWS * Decimal("1.5")
    started = time.monotonic()
    with pytest.raises(DeadlineExceeded):
        storage.aggregates.aggregate(ORG, query, Deadline(0.0005))
    assert time.monotonic() - started < 2.0
    # The storage stays usable after a cancelled statement.
    assert len(storage.reads.list_events(ORG, EventFilters(), None, 3)[0]) == 3


def test_ingest_waiting_for_a_lock_stops_at_its_deadline(storage: SqlStorage, db_url: str) -> None:
    holder = make_engine(db_url)
    try:
        with holder.connect() as conn, conn.begin():
            # Another transaction holds the lock every ingest needs.
            if conn.dialect.name == "postgresql":
                conn.exec_driver_sql("LOCK TABLE events IN EXCLUSIVE MODE")
            else:
                conn.exec_driver_sql(
                    "INSERT INTO customers (organization_id, id, name, created_at_us) "
                    "VALUES ('o', 'c', 'c', 0)"
                )
            started = time.monotonic()
            with pytest.raises(DeadlineExceeded):
                storage.events.ingest(ORG, [ev()], NOW, Deadline(0.3))
            waited = time.monotonic() - started
            conn.rollback()
    finally:
        holder.dispose()
    assert 0.25 < waited < 3.0
    assert all_events(storage) == []
    ingest_ids(storage, [ev()])  # usable again once the lock is gone
