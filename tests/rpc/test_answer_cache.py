"""AggregateUsage answers kept in the answer cache are never stale, on SQLite and PostgreSQL.

The cache keeps an encoded answer with the organization's data version read before computing it
(server/logic/answer_cache.py). These tests call the real server over a real channel: a repeated
request is a hit (the server's own /metrics counters say so) with the same bytes; any ingestion
that stores an event makes the next answer a fresh one that counts it; a DUPLICATE or a rejected
event changes nothing and keeps the answer; and under concurrent ingestion every answer counts at
least every event acknowledged before the request was sent.
"""

from __future__ import annotations

import datetime as dt
import threading
import uuid

import pytest
from grpc_harness import Client, Harness, event, ts
from usage.v1 import usage_service_pb2 as pb

START = dt.datetime(2026, 1, 10, tzinfo=dt.UTC)
UNTIL = START + dt.timedelta(days=2)


@pytest.fixture
def harness(cached_harness: Harness) -> Harness:
    return cached_harness  # answers may come from the answer cache too


def hits(h: Harness, result: str = "hit") -> float:
    value = h.running.observability.registry.get_sample_value(
        "usage_answer_cache_requests_total", {"result": result}
    )
    return value or 0.0


def request(**kw: object) -> pb.AggregateUsageRequest:
    return pb.AggregateUsageRequest(
        bucket="hour", since=ts(START), until=ts(UNTIL), metric="count", group_by="metric_key", **kw
    )


def total(response: pb.AggregateUsageResponse) -> int:
    return sum(int(s.exact_total) for s in response.series)


def test_a_repeated_request_is_answered_from_the_cache_until_the_events_change(harness: Harness) -> None:
    client = harness.client(f"org_{uuid.uuid4().hex}")
    client.ingest_ok([event(timestamp=START + dt.timedelta(minutes=i)) for i in range(5)])
    first = client.usage.AggregateUsage(request())
    assert total(first) == 5
    before = hits(harness)
    again = client.usage.AggregateUsage(request())
    assert hits(harness) == before + 1
    assert again.SerializeToString() == first.SerializeToString()
    # Stored events change the answer at once.
    client.ingest_ok([event(timestamp=START + dt.timedelta(hours=1), idempotency_key="k1")])
    assert total(client.usage.AggregateUsage(request())) == 6
    # A retry (DUPLICATE) and a rejected event store nothing: the kept answer stays right.
    misses = hits(harness, "miss")
    retried = client.ingest(
        event(timestamp=START + dt.timedelta(hours=1), idempotency_key="k1"), event(customer_id="")
    )
    assert [r.status for r in retried] == ["DUPLICATE", "REJECTED"]
    assert total(client.usage.AggregateUsage(request())) == 6
    # Another organization's events never touch this organization's answers.
    harness.client(f"org_{uuid.uuid4().hex}").ingest_ok([event(timestamp=START)])
    assert total(client.usage.AggregateUsage(request())) == 6
    assert hits(harness, "miss") >= misses  # (the two calls above were hits or recomputed: both fine)
    # Other requests are other answers; a window ending now is never kept.
    assert total(client.usage.AggregateUsage(request(top=1))) == 6
    now_ended = pb.AggregateUsageRequest(bucket="day", since=ts(START), group_by="metric_key")
    kept = hits(harness)
    assert total(client.usage.AggregateUsage(now_ended)) == 6
    assert total(client.usage.AggregateUsage(now_ended)) == 6
    assert hits(harness) == kept


def test_answers_under_concurrent_ingestion_are_never_stale(harness: Harness) -> None:
    org = f"org_{uuid.uuid4().hex}"
    writer, reader = harness.client(org), harness.client(org)
    acknowledged = 0  # events whose IngestUsageEvents returned
    lock = threading.Lock()
    stop = threading.Event()
    errors: list[BaseException] = []

    def ingest() -> None:
        nonlocal acknowledged
        try:
            for batch in range(40):
                writer.ingest_ok(
                    [event(timestamp=START + dt.timedelta(seconds=batch * 10 + i)) for i in range(5)]
                )
                with lock:
                    acknowledged += 5
        except BaseException as exc:  # surfaced below
            errors.append(exc)
        finally:
            stop.set()

    thread = threading.Thread(target=ingest)
    thread.start()
    checked = 0
    while not stop.is_set():
        with lock:
            floor = acknowledged
        got = total(reader.usage.AggregateUsage(request()))
        assert got >= floor, f"a stale answer: {got} events counted, {floor} acknowledged before the call"
        checked += 1
    thread.join()
    assert not errors, errors
    assert total(reader.usage.AggregateUsage(request())) == acknowledged == 200
    assert checked > 5 and hits(harness) > 0


def test_clients_of_one_server_share_kept_answers_only_within_their_organization(harness: Harness) -> None:
    a: Client = harness.client(f"org_{uuid.uuid4().hex}")
    b: Client = harness.client(f"org_{uuid.uuid4().hex}")
    a.ingest_ok([event(timestamp=START)] * 3)
    b.ingest_ok([event(timestamp=START)] * 7)
    assert total(a.usage.AggregateUsage(request())) == 3
    assert total(b.usage.AggregateUsage(request())) == 7
    assert total(a.usage.AggregateUsage(request())) == 3
