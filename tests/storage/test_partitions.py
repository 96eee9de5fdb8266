"""Months of events (storage/partitions.py): the monthly partitions of PostgreSQL, the default
partition that takes any other time, idempotency across months, and retention on both databases.

The PostgreSQL test databases are migrated at the session's start, so they hold the partitions of
the months around today and the default one; the events here are of 2024 and land in the default
partition until `split_default` gives their months their own.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from rollup_check import assert_rollups_match_events
from stored_events import CustomerEventQuery, all_events, customer_events

from server.deadline import Deadline
from server.domain import AggregateQuery, Correction, EventFilters, NewEvent
from server.logic import buckets
from server.storage import partitions, schema
from server.storage.dialects import dialect_of
from server.storage.partitions import DEFAULT_PARTITION, Month
from server.storage.sql_storage import SqlStorage

ORG = "org_p"
OTHER = "org_q"
NOW = 1_900_000_000_000_000  # the ingestion clock handed to storage (2030)
HOUR = 3_600_000_000
DAY = 24 * HOUR


def us(text: str) -> int:
    return buckets.to_us(dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC))


def ev(
    ts: int, customer: str = "cus_1", metric: str = "api_call", key: str | None = None, q: str = "1"
) -> NewEvent:
    return NewEvent(
        customer_id=customer,
        metric_key=metric,
        timestamp_us=ts,
        quantity=q,
        idempotency_key=key,
        properties={"region": "eu" if ts % 2 else "us"},
    )


def where_stored(storage: SqlStorage, org: str = ORG) -> dict[str, str]:
    """{event id: the partition (PostgreSQL) or table (SQLite) holding it}."""
    with storage.db.engine.connect() as conn:
        if storage.db.engine.dialect.name == "postgresql":
            sql = "SELECT id, tableoid::regclass::text FROM events WHERE organization_id = :org"
        else:
            sql = "SELECT id, 'events' FROM events WHERE organization_id = :org"
        return {i: t for i, t in conn.execute(sa.text(sql), {"org": org})}


def in_transaction(storage: SqlStorage, work: Any) -> Any:
    with storage.db.engine.begin() as conn:
        return work(conn)


def test_months_are_utc_calendar_months() -> None:
    assert Month.of(us("2024-02-29T23:59:59.999999")) == Month(2024, 2)
    assert Month.of(us("2024-03-01T00:00:00")) == Month(2024, 3)
    assert Month(2024, 12).plus(1) == Month(2025, 1) and Month(2025, 1).plus(-1) == Month(2024, 12)
    assert Month(2024, 2).start_us == us("2024-02-01T00:00:00")
    assert Month(2024, 2).end_us == us("2024-03-01T00:00:00")
    assert Month.of(0) == Month(1970, 1) and Month(1970, 1).partition == "events_y1970m01"


@pytest.mark.postgres
def test_an_event_of_a_month_without_partition_is_kept_and_moves_into_its_month(pg_url: str) -> None:
    storage = SqlStorage(sa.create_engine(pg_url))
    try:
        times = [us("2024-05-31T23:59:59.999999"), us("2024-06-01T00:00:00"), us("1970-01-01T00:00:00")]
        outcomes = storage.events.ingest(ORG, [ev(t, key=f"k{i}") for i, t in enumerate(times)], NOW)
        ids = [o.event_id for o in outcomes]
        before = all_events(storage, ORG)
        assert set(where_stored(storage).values()) == {DEFAULT_PARTITION}

        moved = in_transaction(storage, partitions.split_default)
        assert moved == {Month(1970, 1): 1, Month(2024, 5): 1, Month(2024, 6): 1}
        assert where_stored(storage) == {
            ids[0]: "events_y2024m05",
            ids[1]: "events_y2024m06",
            ids[2]: "events_y1970m01",
        }
        assert all_events(storage, ORG) == before
        assert in_transaction(storage, partitions.split_default) == {}  # nothing left to move

        # A later event of a split month goes straight to its partition.
        later = storage.events.ingest(ORG, [ev(us("2024-06-15T00:00:00"))], NOW)[0].event_id
        assert where_stored(storage)[later] == "events_y2024m06"
    finally:
        storage.close()


@pytest.mark.postgres
def test_ensure_creates_this_month_and_the_ahead_ones_once(pg_url: str) -> None:
    storage = SqlStorage(sa.create_engine(pg_url))
    try:
        now = us("2031-11-20T00:00:00")
        created = in_transaction(storage, lambda c: partitions.ensure(c, now, ahead=2))
        assert created == {Month(2031, 11): 0, Month(2031, 12): 0, Month(2032, 1): 0}
        assert in_transaction(storage, lambda c: partitions.ensure(c, now, ahead=2)) == {}
        months = in_transaction(storage, lambda c: dialect_of(c.engine).month_partitions(c))
        assert months == sorted(months) and Month(2032, 1) in months
    finally:
        storage.close()


@pytest.mark.postgres
def test_creating_a_month_with_events_in_the_default_partition_moves_them_first(pg_url: str) -> None:
    storage = SqlStorage(sa.create_engine(pg_url))
    try:
        early = us("2031-12-24T12:00:00")  # ingested before its month's partition exists
        (outcome,) = storage.events.ingest(ORG, [ev(early, q="2.5")], NOW)
        assert where_stored(storage)[outcome.event_id] == DEFAULT_PARTITION
        created = in_transaction(storage, lambda c: partitions.ensure(c, us("2031-11-20T00:00:00"), ahead=1))
        assert created == {Month(2031, 11): 0, Month(2031, 12): 1}
        assert where_stored(storage)[outcome.event_id] == "events_y2031m12"
        assert [e.quantity for e in all_events(storage, ORG)] == ["2.5"]
    finally:
        storage.close()


def test_an_idempotency_key_claimed_in_one_month_is_taken_in_every_other(storage: SqlStorage) -> None:
    may, july = us("2024-05-10T00:00:00"), us("2024-07-10T00:00:00")
    (first,) = storage.events.ingest(ORG, [ev(may, key="once")], NOW)
    assert first.status == "ACCEPTED"
    in_transaction(storage, partitions.split_default)  # May has its own partition now (PostgreSQL)
    # The same key with another time (so another month, another partition): CONFLICT, stored nowhere.
    (other_month,) = storage.events.ingest(ORG, [ev(july, key="once")], NOW)
    assert (other_month.status, other_month.event_id) == ("CONFLICT", first.event_id)
    (again,) = storage.events.ingest(ORG, [ev(may, key="once")], NOW)
    assert (again.status, again.event_id) == ("DUPLICATE", first.event_id)
    # And the other way: July's partition exists before a key is claimed there.
    in_transaction(storage, lambda c: partitions.create_months(c, [Month(2024, 7)]))
    (in_july,) = storage.events.ingest(ORG, [ev(july, key="twice")], NOW)
    (in_may,) = storage.events.ingest(ORG, [ev(may, key="twice")], NOW)
    assert (in_may.status, in_may.event_id) == ("CONFLICT", in_july.event_id)
    assert len(all_events(storage, ORG)) == 2


# ---- retention ---------------------------------------------------------------------------------

# Events of April to September 2024; retention runs on 2024-09-15 keeping 2 months: August and
# September stay, everything before 2024-08-01 goes.
RETENTION_NOW = us("2024-09-15T00:00:00")
CUTOFF = us("2024-08-01T00:00:00")
MONTH_STARTS = [us(f"2024-{m:02d}-01T00:00:00") for m in range(4, 10)]


def _history(storage: SqlStorage) -> dict[str, list[str]]:
    """Each organization's events, a dozen in every month, with keys; voids and an amend in months
    on both sides of the cutoff. {"kept": keys claimed after retention, "gone": keys freed by it}."""
    keys: dict[str, list[str]] = {"kept": [], "gone": []}
    for org in (ORG, OTHER):
        batch = []
        for start in MONTH_STARTS:
            for n in range(12):
                ts = start + n * 2 * DAY + n * 977_000_003 % HOUR  # ragged times
                key = f"{org}-{ts}"
                batch.append(
                    ev(
                        ts,
                        customer=f"cus_{n % 3}",
                        metric=("api_call", "storage")[n % 2],
                        key=key,
                        q=f"{n}.25",
                    )
                )
                keys["kept" if ts >= CUTOFF else "gone"].append(key)
        ids = [o.event_id for o in storage.events.ingest(org, batch, NOW)]
        void = Correction(NOW, "tests", "wrong customer")
        storage.corrections.void(org, [ids[0], ids[-1]], void)  # April and September
        # April's voided version stays claimed: its claim names no live event, and retention removes
        # only the claims of the live events it removes.
        keys["gone"].remove(f"{org}-{batch[0].timestamp_us}")
        keys["kept"].append(f"{org}-{batch[0].timestamp_us}")
        # June, amended: the key's claim moves to the new version (June too), and goes with it.
        storage.corrections.amend(org, ids[30], None, lambda e: dataclasses.replace(e, quantity="99"), void)
    return keys


def _aggregate(storage: SqlStorage, org: str, since_us: int, until_us: int, group_by: str) -> Any:
    tz = ZoneInfo("UTC")
    since = dt.datetime.fromtimestamp(since_us / 1e6, dt.UTC)
    until = dt.datetime.fromtimestamp(until_us / 1e6, dt.UTC)
    query = AggregateQuery(
        since_us=since_us,
        until_us=until_us,
        bucket="day",
        segments=buckets.offset_segments(tz, since, until),
        metric="sum_quantity",
        group_by=group_by,
        filters=EventFilters(),
    )
    return storage.aggregates.aggregate(org, query, Deadline(30.0))


def _answers_inside_the_window(storage: SqlStorage) -> list[Any]:
    end = us("2024-10-01T00:00:00")
    out: list[Any] = []
    for org in (ORG, OTHER):
        out.append(all_events(storage, org, EventFilters(occurred_after_us=CUTOFF)))
        out.append(
            all_events(
                storage, org, EventFilters(occurred_after_us=CUTOFF + 7 * HOUR + 5, customer_id="cus_1")
            )
        )
        for group_by in ("none", "metric_key", "dim:region"):
            out.append(_aggregate(storage, org, CUTOFF, end, group_by))
            out.append(_aggregate(storage, org, CUTOFF + 17 * 60_000_000, end - HOUR, group_by))
        out.append(
            customer_events(storage, org, CustomerEventQuery("cus_1", "api_call", CUTOFF, end), take=5)
        )
    return out


def _everything(storage: SqlStorage) -> dict[str, list[tuple[Any, ...]]]:
    tables = [schema.events, schema.voided_events, schema.idempotency_keys, *partitions.ROLLUPS]
    with storage.db.engine.connect() as conn:
        return {t.name: sorted(tuple(map(str, r)) for r in conn.execute(sa.select(t))) for t in tables}


def _old_rollup_rows(storage: SqlStorage) -> int:
    with storage.db.engine.connect() as conn:
        return sum(
            conn.execute(sa.select(sa.func.count()).where(t.c.hour_us < CUTOFF)).scalar_one()
            for t in partitions.ROLLUPS
        )


def _versions(storage: SqlStorage) -> dict[str, int]:
    with storage.db.engine.connect() as conn:
        v = schema.organization_versions
        return {o: d for o, d in conn.execute(sa.select(v.c.organization_id, v.c.data_version))}


def test_retention_removes_the_old_months_and_changes_no_answer_inside_the_window(
    storage: SqlStorage,
) -> None:
    keys = _history(storage)
    postgres = storage.db.engine.dialect.name == "postgresql"
    if postgres:  # months get partitions, but July: its events stay in the default partition
        in_transaction(
            storage, lambda c: partitions.create_months(c, [Month(2024, m) for m in (4, 5, 6, 8, 9)])
        )
    answers = _answers_inside_the_window(storage)
    everything = _everything(storage)
    versions = _versions(storage)

    dry = in_transaction(storage, lambda c: partitions.retention(c, 2, RETENTION_NOW, apply=False))
    assert _everything(storage) == everything and _versions(storage) == versions  # a dry run changes nothing
    gone_events = sum(1 for r in everything["events"] if int(r[4]) < CUTOFF)
    assert dry.first_kept == Month(2024, 8)
    assert dry.partitions == (("events_y2024m04", "events_y2024m05", "events_y2024m06") if postgres else ())
    # Live events before August: 12 per month per organization, less April's void, with June's amend.
    assert dry.events == gone_events == 2 * (4 * 12 - 1)
    assert dry.voided_versions == 2 * 2  # April's void and June's amended version
    assert dry.idempotency_claims == len(keys["gone"]) == 2 * (4 * 12 - 1)
    assert dry.rollup_rows == _old_rollup_rows(storage) and (dry.rollup_rows > 0) == postgres
    assert "dry run" in "\n".join(dry.lines())

    done = in_transaction(storage, lambda c: partitions.retention(c, 2, RETENTION_NOW, apply=True))
    assert dataclasses.replace(done, applied=False) == dry
    after = _everything(storage)
    assert all(int(r[4]) >= CUTOFF for r in after["events"] + after["voided_events"])
    assert after["events"] == [r for r in everything["events"] if int(r[4]) >= CUTOFF]
    assert len(after["idempotency_keys"]) == len(everything["idempotency_keys"]) - dry.idempotency_claims
    assert _old_rollup_rows(storage) == 0
    assert _answers_inside_the_window(storage) == answers
    assert all(_versions(storage)[org] == versions[org] + 1 for org in versions)
    if postgres:
        months = in_transaction(storage, lambda c: dialect_of(c.engine).month_partitions(c))
        assert not [m for m in months if m.end_us <= CUTOFF]
        assert_rollups_match_events(storage.db.engine)
        with storage.db.engine.connect() as conn:  # July's rows were deleted from the default partition
            assert not conn.execute(
                sa.text(f"SELECT 1 FROM {DEFAULT_PARTITION} WHERE timestamp_us < :c"), {"c": CUTOFF}
            ).all()

    # The removed events' keys are free again; the kept ones (and voided versions') still claimed.
    for org in (ORG, OTHER):
        gone = [k for k in keys["gone"] if k.startswith(org)][:3]
        kept = [k for k in keys["kept"] if k.startswith(org)]
        ts = {k: int(k.rsplit("-", 1)[1]) for k in gone + kept}
        redo = storage.events.ingest(org, [ev(ts[k], key=k) for k in gone], NOW)
        assert {o.status for o in redo} == {"ACCEPTED"}
        again = storage.events.ingest(org, [ev(ts[k], key=k) for k in kept], NOW)
        assert "ACCEPTED" not in {o.status for o in again}

    # A second run finds only what was just stored again (in the default partition on PostgreSQL).
    second = in_transaction(storage, lambda c: partitions.retention(c, 2, RETENTION_NOW, apply=False))
    assert (second.partitions, second.events, second.idempotency_claims, second.voided_versions) == (
        (),
        6,
        6,
        0,
    )


def test_retention_never_removes_the_current_month(storage: SqlStorage) -> None:
    storage.events.ingest(ORG, [ev(RETENTION_NOW - DAY), ev(MONTH_STARTS[-1])], NOW)
    report = in_transaction(storage, lambda c: partitions.retention(c, 1, RETENTION_NOW, apply=True))
    assert report.first_kept == Month(2024, 9) and report.events == 0
    assert len(all_events(storage, ORG)) == 2
    with pytest.raises(ValueError, match="at least 1"):
        in_transaction(storage, lambda c: partitions.retention(c, 0, RETENTION_NOW, apply=False))


def test_decimal_sums_survive_the_move_between_partitions(storage: SqlStorage) -> None:
    t = us("2024-05-05T05:05:05")
    storage.events.ingest(ORG, [ev(t, q="0.000000000001"), ev(t + 1, q="123456789012345678901234.5")], NOW)
    in_transaction(storage, partitions.split_default)
    answer = _aggregate(storage, ORG, us("2024-05-01T00:00:00"), us("2024-06-01T00:00:00"), "none")
    assert [Decimal(c.value) for c in answer.cells] == [Decimal("123456789012345678901234.500000000001")]
