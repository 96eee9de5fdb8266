"""`as_of` through a real channel, on SQLite and PostgreSQL (docs/api.md "as_of").

- Every query answer carries an as_of, and asking again with it gives the same answer, byte for
  byte, after events were ingested, voided and amended.
- An as_of given out never changes its answer: reads race ingestion and voids, and every answer is
  asked again once the writers stopped (the commit clock's proof is in storage/clock.py).
- A past moment the caller picks (between the organization's last change and now) waits for the
  writers that could still commit before it, then never changes either.
- Walks are stable: a ListUsageEvents cursor walk, and a ListCustomerUsageEvents take/skip walk
  with the first page's as_of, neither repeat nor miss an event while others write.
- Moments that cannot be answered are INVALID_ARGUMENT on `as_of`: the future, before the floor,
  older than the horizon (unless nothing changed since), another moment than a cursor's.
"""

from __future__ import annotations

import datetime as dt
import random
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from google.protobuf import field_mask_pb2, timestamp_pb2
from grpc_harness import Client, Harness, event, expect_invalid, expect_not_found, ts
from usage.v1 import catalog_pb2
from usage.v1 import catalog_service_pb2 as cpb
from usage.v1 import corrections_service_pb2 as xpb
from usage.v1 import usage_service_pb2 as pb

START = dt.datetime(2026, 1, 10, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)
PERIOD = {"start_date": ts(START), "end_date": ts(START + DAY)}


@pytest.fixture
def harness(cached_harness: Harness) -> Harness:
    return cached_harness  # answers may come from the answer cache too


def writer(h: Harness, org: str = "org_a") -> Client:
    """A client whose token names its caller (corrections need one)."""
    token = h.token(org, caller="user_1")
    return h.raw_client((("authorization", f"Bearer {token}"),), org=org, token=token)


def setup(client: Client, n: int = 60) -> list[str]:
    agg = catalog_pb2.Aggregator(id="agg", name="Calls", event_type="api_call", operation="sum")
    client.catalog.CreateAggregator(cpb.CreateAggregatorRequest(aggregator=agg))
    return client.ingest_ok(
        event(
            customer_id=f"cus_{i % 3}",
            timestamp=START + dt.timedelta(minutes=7 * i),
            quantity=f"{i}.25",
            properties={"region": ["eu", "us"][i % 2]},
        )
        for i in range(n)
    )


def change(client: Client, ids: list[str], tag: int) -> set[str]:
    """Ingest, void and amend: every kind of change an answer as of an earlier moment must ignore.
    The ids it voided or replaced."""
    client.ingest_ok(
        [event(customer_id="cus_0", timestamp=START + dt.timedelta(minutes=5 + tag), quantity="1000")]
    )
    client.corrections.VoidUsageEvents(xpb.VoidUsageEventsRequest(event_ids=[ids[tag]], reason="test"))
    amend = xpb.AmendUsageEventRequest(
        event_id=ids[tag + 1],
        event=event(quantity="77"),
        update_mask=field_mask_pb2.FieldMask(paths=["quantity"]),
        reason="wrong quantity",
    )
    client.corrections.AmendUsageEvent(amend)
    return {ids[tag], ids[tag + 1]}


# Every query RPC, asked with an optional as_of.
QUERIES: dict[str, Callable[[Client, timestamp_pb2.Timestamp | None], Any]] = {
    "ListUsageEvents": lambda c, at: c.usage.ListUsageEvents(pb.ListUsageEventsRequest(limit=100, as_of=at)),
    "ListCustomerUsageEvents": lambda c, at: c.usage.ListCustomerUsageEvents(
        pb.ListCustomerUsageEventsRequest(id="cus_0", aggregator_id="agg", take=100, as_of=at, **PERIOD)
    ),
    "AggregateUsage": lambda c, at: c.usage.AggregateUsage(
        pb.AggregateUsageRequest(
            bucket="hour", since=ts(START), until=ts(START + DAY), metric="sum_quantity", as_of=at
        )
    ),
    "AggregateUsage without until": lambda c, at: c.usage.AggregateUsage(
        pb.AggregateUsageRequest(bucket="day", since=ts(START), metric="count", as_of=at)
    ),
    "GetCustomerUsage": lambda c, at: c.usage.GetCustomerUsage(
        pb.GetCustomerUsageRequest(id="cus_0", as_of=at, **PERIOD)
    ),
    "GetAggregatorTimeSeries": lambda c, at: c.usage.GetAggregatorTimeSeries(
        pb.GetAggregatorTimeSeriesRequest(aggregator_id="agg", bucket="hour", as_of=at, **PERIOD)
    ),
    "ListAggregatorUsageByCustomer": lambda c, at: c.usage.ListAggregatorUsageByCustomer(
        pb.ListAggregatorUsageByCustomerRequest(aggregator_id="agg", as_of=at, **PERIOD)
    ),
    "ExportUsageEvents": lambda c, at: list(
        c.usage.ExportUsageEvents(pb.ExportUsageEventsRequest(chunk_size=25, as_of=at))
    ),
}


def _as_of(answer: Any) -> timestamp_pb2.Timestamp:
    return answer[0].as_of if isinstance(answer, list) else answer.as_of


def test_every_answer_is_given_again_by_its_as_of_after_changes(harness: Harness) -> None:
    client = writer(harness)
    ids = setup(client)
    before = {name: ask(client, None) for name, ask in QUERIES.items()}
    for name, answer in before.items():
        assert _as_of(answer).seconds > 0, name
        if name != "AggregateUsage without until":  # (its until moves: below)
            # Nothing changed since: read now, and kept since its clock is that moment's.
            assert QUERIES[name](client, _as_of(answer)) == answer, name
    change(client, ids, 0)
    time.sleep(0.002)
    change(client, ids, 10)
    for name, ask in QUERIES.items():
        again = ask(client, _as_of(before[name]))
        if name == "AggregateUsage without until":  # it ended at now, which moves: pass its until
            ended = before[name].until
            assert again.until == _as_of(before[name])  # as asked then: until defaults to as_of
            again = client.usage.AggregateUsage(
                pb.AggregateUsageRequest(
                    bucket="day", since=ts(START), until=ended, metric="count", as_of=_as_of(before[name])
                )
            )
        assert again == before[name], name
        assert ask(client, None) != before[name], f"{name}: the changes do show in a current answer"
    # The export's chunks are as of one moment, and their resume tokens keep it.
    chunks = before["ExportUsageEvents"]
    assert len({c.as_of.ToMicroseconds() for c in chunks}) == 1
    resumed = list(
        client.usage.ExportUsageEvents(
            pb.ExportUsageEventsRequest(chunk_size=25, resume_token=chunks[0].resume_token)
        )
    )
    assert resumed == chunks[1:]


def test_explain_as_of_a_moment_explains_the_version_of_then(harness: Harness) -> None:
    client = writer(harness)
    ids = setup(client, 4)
    then = client.usage.ListUsageEvents(pb.ListUsageEventsRequest()).as_of
    (later,) = client.ingest_ok([event(customer_id="cus_0", timestamp=START)])
    change(client, ids, 0)  # voids ids[0], amends ids[1]
    now = client.usage.ExplainUsageEvent(pb.ExplainUsageEventRequest(event_id=ids[0], aggregator_id="agg"))
    assert not now.counts and now.checks[0].name == "current" and not now.checks[0].passed
    past = client.usage.ExplainUsageEvent(
        pb.ExplainUsageEventRequest(event_id=ids[0], aggregator_id="agg", as_of=then)
    )
    assert past.counts and past.as_of == then
    assert past.checks[0].passed
    assert past.checks[0].detail.startswith(f"the event is current as of {then.ToJsonString()[:19]}")
    expect_not_found(  # recorded after the moment: it did not exist then
        client.usage.ExplainUsageEvent,
        pb.ExplainUsageEventRequest(event_id=later, aggregator_id="agg", as_of=then),
        "Usage event not found",
    )


def test_issued_as_ofs_never_change_while_writers_race_readers(harness: Harness) -> None:
    """Two writers ingest and void while two readers read now and at moments they pick in the
    gap between the last change and now; every answer is asked again after the writers stopped."""
    client = writer(harness)
    ids = setup(client, 30)
    stop = threading.Event()
    seen: list[tuple[str, timestamp_pb2.Timestamp, Any]] = []
    errors: list[BaseException] = []

    def write(seed: int) -> None:
        rnd = random.Random(seed)
        try:
            while not stop.is_set():
                new = client.ingest_ok(
                    event(customer_id="cus_0", timestamp=START + dt.timedelta(seconds=rnd.randrange(86_400)))
                    for _ in range(rnd.randrange(1, 20))
                )
                if rnd.random() < 0.5:
                    client.corrections.VoidUsageEvents(
                        xpb.VoidUsageEventsRequest(event_ids=[rnd.choice(new + ids)], reason="race")
                    )
        except BaseException as exc:  # noqa: BLE001 (reported below)
            errors.append(exc)

    def read(seed: int) -> None:
        rnd = random.Random(seed)
        names = ["ListCustomerUsageEvents", "AggregateUsage", "ListUsageEvents", "GetCustomerUsage"]
        try:
            while not stop.is_set():
                name = rnd.choice(names)
                if rnd.random() < 0.3:  # a moment of the caller's: just past, writers may hold it
                    at = timestamp_pb2.Timestamp()
                    at.FromMicroseconds(time.time_ns() // 1000 - rnd.randrange(1, 3000))
                    answer = QUERIES[name](client, at)
                    assert answer.as_of == at
                else:
                    answer = QUERIES[name](client, None)
                seen.append((name, answer.as_of, answer))
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(2)]
    threads += [threading.Thread(target=read, args=(10 + i,)) for i in range(2)]
    for t in threads:
        t.start()
    time.sleep(4)
    stop.set()
    for t in threads:
        t.join()
    assert not errors, errors[:3]
    assert len(seen) > 20 and len({at.ToMicroseconds() for _, at, _ in seen}) > 5, "reads saw writes"
    for name, at, answer in seen:
        assert QUERIES[name](client, at) == answer, (name, at.ToJsonString())


def test_a_cursor_walk_neither_repeats_nor_misses_while_others_write(harness: Harness) -> None:
    client = writer(harness)
    ids = setup(client, 120)
    first = client.usage.ListUsageEvents(pb.ListUsageEventsRequest(limit=15))
    walked = [e.id for e in first.data]
    cursor, rnd = first.pagination.cursor, random.Random(7)
    touched: set[str] = set()
    while cursor:
        # Others write between pages: events before and after the walk's position, voids and amends
        # of events the walk has not reached (ids are oldest first; the walk goes newest first).
        unseen = [i for i in ids if i not in walked and i not in touched]
        client.ingest_ok(
            event(customer_id="cus_1", timestamp=START + dt.timedelta(minutes=rnd.randrange(840)))
            for _ in range(3)
        )
        if len(unseen) > 2:
            touched |= change(client, unseen, rnd.randrange(len(unseen) - 1))
        page = client.usage.ListUsageEvents(pb.ListUsageEventsRequest(limit=15, cursor=cursor))
        assert page.as_of == first.as_of
        walked += [e.id for e in page.data]
        cursor = page.pagination.cursor
    assert len(walked) == len(set(walked)) == len(ids)
    assert set(walked) == set(ids)
    assert len(client.all_events()) != len(ids), "the writes did change the events now"


def test_a_take_skip_walk_with_the_first_pages_as_of_is_stable(harness: Harness) -> None:
    client = writer(harness)
    ids = setup(client, 90)
    mine = set(ids[0::3])  # cus_0's
    walked: list[str] = []
    as_of = None
    rnd = random.Random(3)
    touched: set[str] = set()
    while True:
        page = client.usage.ListCustomerUsageEvents(
            pb.ListCustomerUsageEventsRequest(
                id="cus_0", aggregator_id="agg", take=7, skip=len(walked), as_of=as_of, **PERIOD
            )
        )
        as_of = as_of or page.as_of
        assert page.meta.total == len(mine)
        walked += [e.id for e in page.data]
        if len(page.data) < 7:
            break
        unseen = [i for i in ids if i in mine and i not in walked and i not in touched]
        client.ingest_ok(
            [event(customer_id="cus_0", timestamp=START + dt.timedelta(minutes=rnd.randrange(600)))]
        )
        if len(unseen) > 2:
            touched |= change(client, unseen, 0)
    assert len(walked) == len(set(walked)) and set(walked) == mine


def test_moments_that_cannot_be_answered_are_invalid(harness: Harness) -> None:
    client = writer(harness)
    setup(client, 3)
    future = ts(dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5))
    long_ago = ts(dt.datetime(2020, 1, 1, tzinfo=dt.UTC))  # before the floor: this database's birth
    for name, ask in QUERIES.items():
        err = expect_invalid(lambda at, ask=ask, **_: ask(client, at), future, "as_of")
        assert "before now" in err.message, name
        err = expect_invalid(lambda at, ask=ask, **_: ask(client, at), long_ago, "as_of")
        assert "began recording" in err.message, name
    first = client.usage.ListUsageEvents(pb.ListUsageEventsRequest(limit=1))
    other = timestamp_pb2.Timestamp()
    other.FromMicroseconds(first.as_of.ToMicroseconds() - 1)
    err = expect_invalid(
        client.usage.ListUsageEvents,
        pb.ListUsageEventsRequest(limit=1, cursor=first.pagination.cursor, as_of=other),
        "as_of",
    )
    assert "the cursor's walk is as of another moment" in err.message
    # The same as_of as the cursor's is no conflict.
    client.usage.ListUsageEvents(
        pb.ListUsageEventsRequest(limit=1, cursor=first.pagination.cursor, as_of=first.as_of)
    )


def test_the_horizon_refuses_old_moments_unless_nothing_changed_since(db_url: str) -> None:
    h = Harness.start(db_url, as_of_horizon_days=0)
    try:
        client = writer(h)
        setup(client, 3)
        then = client.usage.ListUsageEvents(pb.ListUsageEventsRequest()).as_of
        again = client.usage.ListUsageEvents(pb.ListUsageEventsRequest(as_of=then))
        assert again.as_of == then  # nothing changed since: the answer then is the answer now
        client.ingest_ok([event()])
        err = expect_invalid(client.usage.ListUsageEvents, pb.ListUsageEventsRequest(as_of=then), "as_of")
        assert "within 0 days of now" in err.message
    finally:
        h.close()
