"""Voids and amends in storage, on SQLite and PostgreSQL: a voided event stops counting in every read
(pages, customer totals on the rollup path and the filtered path, aggregates), is kept with its void
in the history, never comes back through a retried ingest, and is voided exactly once under
concurrency; an amend replaces an event by a new version that keeps its identity, exactly once.
Expected values are counted here from what the test ingested, never asked of the storage layer.
"""

from __future__ import annotations

import dataclasses
import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest
import sqlalchemy as sa
import stored_events
from rollup_check import assert_rollups_match_events
from stored_events import CustomerEventQuery, StoredEvent, customer_events, decode

from server.deadline import Deadline
from server.domain import (
    AggregateQuery,
    Condition,
    Correction,
    EventFilters,
    NewEvent,
    OffsetSegment,
    PropertyFilter,
)
from server.storage import rollups, schema
from server.storage.sql_storage import SqlStorage

ORG = "org_a"
OTHER = "org_b"
MIN = 60_000_000
HOUR = 60 * MIN
DAY = 24 * HOUR
T0 = 1_717_200_000_000_000  # 2024-06-01T00:00:00Z
NOW = 1_900_000_000_000_000  # the ingestion clock handed to storage

VOID = Correction(NOW + 5, "user_1", "test traffic")


def ingest_ids(storage: SqlStorage, events: list[NewEvent], org: str = ORG) -> list[str]:
    outcomes = storage.events.ingest(org, events, NOW)
    assert [o.status for o in outcomes] == ["ACCEPTED"] * len(events)
    return [o.event_id for o in outcomes]


def all_events(storage: SqlStorage, org: str = ORG) -> list[StoredEvent]:
    return stored_events.all_events(storage, org)


def _events() -> list[NewEvent]:
    """Two days of one customer's events, 20 minutes apart, alternating regions and quantities."""
    return [
        NewEvent(
            customer_id="cus_1",
            metric_key="api_call",
            timestamp_us=T0 + i * 20 * MIN,
            quantity=["1.5", "2", "0.25"][i % 3],
            idempotency_key=f"key-{i}",
            properties={"region": "eu" if i % 2 else "us"},
        )
        for i in range(144)
    ]


def _aggregate(
    storage: SqlStorage, group_by: str, metric: str, **filters: object
) -> dict[str | None, Decimal]:
    query = AggregateQuery(
        since_us=T0,
        until_us=T0 + 2 * DAY,
        bucket="day",
        segments=(OffsetSegment(T0, 0),),
        metric=metric,  # type: ignore[arg-type]
        group_by=group_by,
        filters=EventFilters(**filters),  # type: ignore[arg-type]
    )
    answer = storage.aggregates.aggregate(ORG, query, Deadline(30.0))
    return {key: Decimal(total) for key, total in answer.series}


def test_a_voided_event_stops_counting_everywhere(storage: SqlStorage) -> None:
    if storage.db.dialect.keeps_rollups:
        with storage.engine.begin() as conn:
            assert rollups.add_dimension(conn, "region", NOW)
    events = _events()
    ids = ingest_ids(storage, events)
    # Every third event, and every event of the first hour (its rollup rows must go, not stay at 0).
    voided = {i for i in range(len(ids)) if i % 3 == 0 or events[i].timestamp_us < T0 + HOUR}
    version = storage.reads.data_version(ORG)
    outcomes = storage.corrections.void(ORG, [ids[i] for i in sorted(voided)], VOID)
    assert {o.status for o in outcomes} == {"VOIDED"}
    assert storage.reads.data_version(ORG) == version + 1
    kept = [i for i in range(len(ids)) if i not in voided]

    assert {e.id for e in all_events(storage)} == {ids[i] for i in kept}
    window = CustomerEventQuery("cus_1", "api_call", T0, T0 + 2 * DAY)  # whole hours: the rollup's path
    total, page = customer_events(storage, ORG, window, take=100)
    assert total == len(kept) and {e.id for e in page} <= {ids[i] for i in kept}
    ragged = CustomerEventQuery("cus_1", "api_call", T0 + 10 * MIN, T0 + DAY + 30 * MIN)
    in_ragged = [i for i in kept if ragged.start_us <= events[i].timestamp_us < ragged.end_us]
    assert customer_events(storage, ORG, ragged, take=0)[0] == len(in_ragged)
    eu = PropertyFilter("and", (Condition("region", "equals", "eu"),))
    filtered = CustomerEventQuery("cus_1", "api_call", T0, T0 + 2 * DAY, (eu,))
    assert customer_events(storage, ORG, filtered, take=0)[0] == sum(
        events[i].properties["region"] == "eu" for i in kept
    )

    def expected(group: object) -> dict[str | None, Decimal]:
        sums: Counter[str] = Counter()
        for i in kept:
            sums[str(group(events[i]))] += Decimal(events[i].quantity)  # type: ignore[operator]
        return dict(sums)

    assert _aggregate(storage, "none", "count") == {"": len(kept)}
    assert _aggregate(storage, "metric_key", "sum_quantity") == expected(lambda e: e.metric_key)
    assert _aggregate(storage, "dim:region", "sum_quantity") == expected(lambda e: e.properties["region"])
    assert _aggregate(storage, "none", "count", customer_id="cus_1") == {"": len(kept)}
    if storage.db.dialect.keeps_rollups:
        assert assert_rollups_match_events(storage.engine) > 0


def test_void_answers_per_id_and_is_idempotent(storage: SqlStorage) -> None:
    a, b = ingest_ids(storage, _events()[:2])
    (theirs,) = ingest_ids(storage, _events()[:1], org=OTHER)
    first = storage.corrections.void(ORG, [a, "evt_missing", theirs], VOID)
    assert [(o.event_id, o.status, o.void) for o in first] == [
        (a, "VOIDED", VOID),
        ("evt_missing", "NOT_FOUND", None),
        (theirs, "NOT_FOUND", None),  # another organization's event: as if it did not exist
    ]
    version = storage.reads.data_version(ORG)
    later = Correction(NOW + 99, "user_2", "again")
    again = storage.corrections.void(ORG, [a], later)
    # The earlier void is the answer: its time, caller and reason, not this call's.
    assert [(o.status, o.void) for o in again] == [("ALREADY_VOIDED", VOID)]
    assert storage.reads.data_version(ORG) == version  # nothing changed, nothing to invalidate
    assert [o.status for o in storage.corrections.void(ORG, [b, a], later)] == ["VOIDED", "ALREADY_VOIDED"]
    assert {e.id for e in all_events(storage, OTHER)} == {theirs}


def test_a_voided_event_is_kept_in_its_history_and_never_comes_back(storage: SqlStorage) -> None:
    events = _events()[:2]
    a, b = ingest_ids(storage, events)
    before = {e.id: e for e in all_events(storage)}
    storage.corrections.void(ORG, [a], VOID)
    (version,) = storage.corrections.history(ORG, a)
    assert decode([version.wire]) == [before[a]]  # every field, as it was ingested
    assert (version.void, version.replaced_by) == (VOID, None)
    (live,) = storage.corrections.history(ORG, b)
    assert decode([live.wire]) == [before[b]] and live.void is None
    assert storage.corrections.history(OTHER, a) == []
    assert storage.corrections.history(ORG, "evt_missing") == []
    # A retry of the original ingest is the DUPLICATE of the voided event, not a new event.
    assert [(o.status, o.event_id) for o in storage.events.ingest(ORG, events, NOW)] == [
        ("DUPLICATE", a),
        ("DUPLICATE", b),
    ]
    assert [e.id for e in all_events(storage)] == [b]


@pytest.mark.parametrize("workers", [8])
def test_concurrent_voids_void_each_event_once(storage: SqlStorage, workers: int) -> None:
    if storage.db.dialect.keeps_rollups:
        with storage.engine.begin() as conn:
            rollups.add_dimension(conn, "region", NOW)
    ids = ingest_ids(storage, _events()[:40])
    start = threading.Barrier(workers)

    def void(worker: int) -> list[tuple[str, str]]:
        # Overlapping sets in different orders: every event is voided by several workers at once.
        mine = ids[worker % 4 :: 2] if worker % 2 else list(reversed(ids[: 30 + worker]))
        start.wait()
        return [(o.event_id, o.status) for o in storage.corrections.void(ORG, mine, VOID, Deadline(60.0))]

    with ThreadPoolExecutor(workers) as pool:
        results = [r for rs in pool.map(void, range(workers)) for r in rs]
    voided = Counter(event_id for event_id, status in results if status == "VOIDED")
    assert set(voided) == {event_id for event_id, _ in results} and set(voided.values()) == {1}
    assert {status for _, status in results} <= {"VOIDED", "ALREADY_VOIDED"}
    survivors = set(ids) - set(voided)
    assert {e.id for e in all_events(storage)} == survivors
    if storage.db.dialect.keeps_rollups:
        assert_rollups_match_events(storage.engine)
    with storage.engine.connect() as conn:
        kept = conn.execute(sa.select(sa.func.count()).select_from(schema.voided_events)).scalar_one()
    assert kept == len(voided)  # one record per voided event, none for the ALREADY_VOIDED answers


# ---- amends -------------------------------------------------------------------------------------
AMEND = Correction(NOW + 7, "user_1", "wrong quantity")


def _with(**changes: object) -> Callable[[NewEvent], NewEvent]:
    """A change of the current version (canonical values, as the logic's checks make them)."""
    return lambda current: dataclasses.replace(current, properties_json=None, **changes)  # type: ignore[arg-type]


def test_an_amend_replaces_the_event_by_a_new_version(storage: SqlStorage) -> None:
    if storage.db.dialect.keeps_rollups:
        with storage.engine.begin() as conn:
            assert rollups.add_dimension(conn, "region", NOW)
    events = _events()[:3]
    first, other, _ = ingest_ids(storage, events)
    before = {e.id: e for e in all_events(storage)}
    version = storage.reads.data_version(ORG)
    result = storage.corrections.amend(
        ORG, first, None, _with(quantity="7.25", properties={"region": "ap"}), AMEND
    )
    assert (result.status, result.replaced_id, result.amend) == ("AMENDED", first, AMEND)
    new = result.new_id
    assert new != first and storage.reads.data_version(ORG) == version + 1
    listed = {e.id: e for e in all_events(storage)}
    assert set(listed) == set(before) - {first} | {new}
    assert listed[new] == dataclasses.replace(
        before[first], id=new, quantity="7.25", properties={"region": "ap"}, ingested_at_us=AMEND.at_us
    )  # customer, metric, time and idempotency key kept
    assert decode([result.version.wire]) == [listed[new]]  # type: ignore[union-attr]
    # The history, from either id: the old version voided with a link to the new one.
    for some_id in (first, new):
        old, current = storage.corrections.history(ORG, some_id)
        assert decode([old.wire]) == [before[first]] and (old.void, old.replaced_by) == (AMEND, new)
        assert decode([current.wire]) == [listed[new]] and current.void is None
    # A retry of the original ingest is a DUPLICATE of the event, answered with its current version.
    assert [(o.status, o.event_id) for o in storage.events.ingest(ORG, events[:1], NOW)] == [
        ("DUPLICATE", new)
    ]
    sums = _aggregate(storage, "dim:region", "sum_quantity")
    assert sums == {"ap": Decimal("7.25"), "eu": Decimal("2"), "us": Decimal("0.25")}
    if storage.db.dialect.keeps_rollups:
        assert_rollups_match_events(storage.engine)
    # Amended again through its first id: the current version is amended.
    again = storage.corrections.amend(ORG, first, None, _with(quantity="1"), AMEND)
    assert again.status == "AMENDED" and again.replaced_id == new
    assert len(storage.corrections.history(ORG, other)) == 1
    assert [v.replaced_by for v in storage.corrections.history(ORG, first)] == [new, again.new_id, None]


def test_an_amend_that_cannot_apply_changes_nothing(storage: SqlStorage) -> None:
    first, second = ingest_ids(storage, _events()[:2])
    amended = storage.corrections.amend(ORG, first, None, _with(quantity="3"), AMEND)
    storage.corrections.void(ORG, [second], VOID)
    before = (all_events(storage), storage.reads.data_version(ORG))
    assert storage.corrections.amend(ORG, "evt_missing", None, _with(), AMEND).status == "NOT_FOUND"
    assert storage.corrections.amend(OTHER, first, None, _with(), AMEND).status == "NOT_FOUND"
    voided = storage.corrections.amend(ORG, second, None, _with(), AMEND)
    assert (voided.status, voided.current_id) == ("VOIDED", second)
    stale = storage.corrections.amend(ORG, first, first, _with(quantity="4"), AMEND)
    assert (stale.status, stale.current_id) == ("NOT_CURRENT", amended.new_id)

    def refuse(current: NewEvent) -> NewEvent:
        raise ValueError("refused")

    with pytest.raises(ValueError, match="refused"):
        storage.corrections.amend(ORG, first, amended.new_id, refuse, AMEND)
    assert (all_events(storage), storage.reads.data_version(ORG)) == before


@pytest.mark.parametrize("workers", [8])
def test_concurrent_amends_of_one_version_amend_it_once(storage: SqlStorage, workers: int) -> None:
    (first,) = ingest_ids(storage, _events()[:1])
    start = threading.Barrier(workers)

    def amend(worker: int) -> tuple[str, str, str]:
        start.wait()
        r = storage.corrections.amend(
            ORG, first, first, _with(quantity=str(worker + 10)), AMEND, Deadline(60.0)
        )
        return r.status, r.new_id, r.current_id

    with ThreadPoolExecutor(workers) as pool:
        results = list(pool.map(amend, range(workers)))
    winners = [new for status, new, _ in results if status == "AMENDED"]
    assert len(winners) == 1, results
    # The others changed nothing and name the winner's version as the current one.
    assert {(s, current) for s, _, current in results if s != "AMENDED"} <= {
        ("RACED", winners[0]),
        ("NOT_CURRENT", winners[0]),
    }
    assert [e.id for e in all_events(storage)] == winners
    assert [v.replaced_by for v in storage.corrections.history(ORG, first)] == [winners[0], None]
    if storage.db.dialect.keeps_rollups:
        assert_rollups_match_events(storage.engine)
