"""ExportUsageEvents through a real channel, on SQLite and PostgreSQL (docs/api.md: ExportUsageEvents).

The stream is compared with what ListUsageEvents pages give for the same filters: the same events,
byte for byte, in the same order (or reversed for `oldest_first`), each exactly once, also when the
stream is cut (the channel closed under it) and resumed from the last resume token received.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

import grpc
import pytest
from grpc_harness import Client, Harness, event, expect_error, expect_invalid, ts
from usage.v1 import usage_service_pb2 as pb
from usage.v1 import usage_service_pb2_grpc as pb_grpc

START = dt.datetime(2026, 1, 10, tzinfo=dt.UTC)


def _events(n: int) -> list[Any]:
    """`n` events over three customers and two metric keys; every fifth shares the previous one's
    timestamp (ties are ordered by id)."""
    out = []
    for i in range(n):
        minute = i - (1 if i % 5 == 4 else 0)
        out.append(
            event(
                customer_id=f"cus_{i % 3}",
                metric_key="api_call" if i % 2 else "storage",
                timestamp=START + dt.timedelta(minutes=minute),
                quantity=str(i),
                properties={"i": i},
            )
        )
    return out


def _listed(client: Client, **filters: Any) -> list[bytes]:
    """Every event ListUsageEvents gives for `filters`, walking its cursors, serialized."""
    out, cursor = [], ""
    while True:
        page = client.usage.ListUsageEvents(pb.ListUsageEventsRequest(limit=100, cursor=cursor, **filters))
        out.extend(e.SerializeToString() for e in page.data)
        cursor = page.pagination.cursor
        if not cursor:
            return out


def _exported(chunks: Iterable[pb.ExportUsageEventsResponse]) -> tuple[list[bytes], list[str]]:
    events, tokens = [], []
    for chunk in chunks:
        assert chunk.data, "a chunk is never empty"
        events.extend(e.SerializeToString() for e in chunk.data)
        tokens.append(chunk.resume_token)
    return events, tokens


def test_export_sends_what_list_pages_send_in_either_order(org_a: Client, org_b: Client) -> None:
    org_a.ingest_ok(_events(237))
    org_b.ingest_ok(_events(11))  # another organization's events never appear
    listed = _listed(org_a)
    assert len(listed) == 237
    events, tokens = _exported(org_a.usage.ExportUsageEvents(pb.ExportUsageEventsRequest(chunk_size=50)))
    assert events == listed
    assert len(tokens) == 5 and len(set(tokens)) == 5
    oldest, _ = _exported(
        org_a.usage.ExportUsageEvents(pb.ExportUsageEventsRequest(chunk_size=7, order="oldest_first"))
    )
    assert oldest == listed[::-1]
    default, tokens = _exported(org_a.usage.ExportUsageEvents(pb.ExportUsageEventsRequest()))
    assert default == listed and len(tokens) == 1  # 1000 per chunk by default


def test_export_applies_list_filters(org_a: Client) -> None:
    org_a.ingest_ok(_events(120))
    for filters in (
        {"customer_id": "cus_1"},
        {"metric_key": ["storage"]},
        {"customer_id": "cus_2", "metric_key": ["api_call,storage"]},
        {
            "occurred_after": ts(START + dt.timedelta(minutes=30)),
            "occurred_before": ts(START + dt.timedelta(minutes=61)),
        },
    ):
        listed = _listed(org_a, **filters)
        assert listed, filters
        events, _ = _exported(
            org_a.usage.ExportUsageEvents(pb.ExportUsageEventsRequest(chunk_size=9, **filters))
        )
        assert events == listed, filters


def test_nothing_to_export_is_an_empty_stream(org_a: Client) -> None:
    assert list(org_a.usage.ExportUsageEvents(pb.ExportUsageEventsRequest())) == []


def test_a_cut_stream_resumes_after_its_last_chunk_with_each_event_once(
    harness: Harness, org_a: Client
) -> None:
    """Events of 15 KB, 20 to a chunk: more than gRPC's windows hold, so the connection is closed
    while the server still has chunks to send. Whatever arrived after the last chunk the client
    took is lost with the connection; the resumed streams then bring each event exactly once."""
    blob = "x" * 15_000
    org_a.ingest_ok(
        (
            event(
                customer_id=f"cus_{i % 2}",
                timestamp=START + dt.timedelta(seconds=i),
                properties={"i": i, "b": blob},
            )
            for i in range(1000)
        ),
        chunk=300,
    )
    metadata = (("authorization", f"Bearer {org_a.token}"),)
    request = pb.ExportUsageEventsRequest(chunk_size=20, order="oldest_first", customer_id="cus_0")
    expected = _listed(org_a, customer_id="cus_0")[::-1]
    assert len(expected) == 500
    received: list[bytes] = []
    token = ""
    for cut_after in (1, 3):  # chunks taken before the connection goes away
        channel = grpc.insecure_channel(harness.address)
        stub = pb_grpc.UsageServiceStub(channel)
        request.resume_token = token
        stream = stub.ExportUsageEvents(request, metadata=metadata, timeout=30)
        for _ in range(cut_after):
            chunk = next(stream)
            received.extend(e.SerializeToString() for e in chunk.data)
            token = chunk.resume_token
        channel.close()  # the connection breaks mid-stream
        with pytest.raises(grpc.RpcError) as cut:
            next(stream)
        assert cut.value.code() == grpc.StatusCode.CANCELLED
    request.resume_token = token
    rest, _ = _exported(org_a.usage.ExportUsageEvents(request))
    assert len(received) == 80
    assert received + rest == expected
    assert len(set(received + rest)) == len(expected)


def test_a_resume_token_is_bound_to_its_organization_filters_and_order(org_a: Client, org_b: Client) -> None:
    org_a.ingest_ok(_events(30))
    org_b.ingest_ok(_events(30))
    first = next(iter(org_a.usage.ExportUsageEvents(pb.ExportUsageEventsRequest(chunk_size=10))))
    token = first.resume_token
    for client, request in (
        (org_a, pb.ExportUsageEventsRequest(resume_token=token, order="oldest_first")),
        (org_a, pb.ExportUsageEventsRequest(resume_token=token, customer_id="cus_1")),
        (org_b, pb.ExportUsageEventsRequest(resume_token=token)),
    ):
        got = expect_invalid(client.usage.ExportUsageEvents, request, "resume_token")
        assert "belongs to another query" in dict(got.violations)["resume_token"]
    got = expect_invalid(
        org_a.usage.ExportUsageEvents,
        pb.ExportUsageEventsRequest(resume_token="garbage"),
        "resume_token",
    )
    assert dict(got.violations)["resume_token"] == (
        "not issued by this service: pass back the resume_token of the last chunk received as it was given"
    )
    # A list cursor is not a resume token, nor the reverse.
    page = org_a.usage.ListUsageEvents(pb.ListUsageEventsRequest(limit=5))
    expect_invalid(
        org_a.usage.ExportUsageEvents,
        pb.ExportUsageEventsRequest(resume_token=page.pagination.cursor),
        "resume_token",
    )
    expect_invalid(org_a.usage.ListUsageEvents, pb.ListUsageEventsRequest(cursor=token), "cursor")


@pytest.mark.parametrize(
    ("request_", "field", "words"),
    [
        (pb.ExportUsageEventsRequest(chunk_size=5001), "chunk_size", "must be between 0 and 5000"),
        (pb.ExportUsageEventsRequest(chunk_size=-1), "chunk_size", "must be between 0 and 5000"),
        (pb.ExportUsageEventsRequest(order="newest"), "order", '"newest_first" or "oldest_first"'),
        (pb.ExportUsageEventsRequest(metric_key=["bad key!"]), "metric_key[0]", "a metric key is"),
        (
            pb.ExportUsageEventsRequest(
                occurred_after=ts("2026-01-02T00:00:00Z"), occurred_before=ts("2026-01-01T00:00:00Z")
            ),
            "occurred_before",
            "",
        ),
    ],
    ids=["chunk_size", "negative chunk_size", "order", "metric_key", "window"],
)
def test_invalid_exports_say_which_field_and_stream_nothing(
    org_a: Client, request_: pb.ExportUsageEventsRequest, field: str, words: str
) -> None:
    org_a.ingest_ok(_events(3))
    got = expect_invalid(org_a.usage.ExportUsageEvents, request_, field)
    assert words in dict(got.violations)[field]


def test_streams_are_bounded_per_organization_and_in_all(db_url: str) -> None:
    """A stream holds its slot while its reader is away; one past the bound is RESOURCE_EXHAUSTED
    at once, and the slot is given back when the stream ends."""
    harness = Harness.start(db_url, max_export_streams=2, max_export_streams_per_org=1)
    try:
        a, b, c = (harness.client(org) for org in ("org_a", "org_b", "org_c"))
        # Enough bytes that a reader that stops reading leaves the stream blocked in flow control.
        big = {"blob": "x" * 15_000}
        for client in (a, b):
            client.ingest_ok(
                [event(timestamp=START + dt.timedelta(seconds=i), properties=big) for i in range(400)]
            )
        request = pb.ExportUsageEventsRequest(chunk_size=10)
        held_a = a.usage.ExportUsageEvents(request)
        next(held_a)
        got = expect_error(
            lambda r: next(a.usage.ExportUsageEvents(r)), request, grpc.StatusCode.RESOURCE_EXHAUSTED
        )
        assert "this organization has 1 export streams open" in got.message
        held_b = b.usage.ExportUsageEvents(request)
        next(held_b)
        got = expect_error(
            lambda r: next(c.usage.ExportUsageEvents(r)), request, grpc.StatusCode.RESOURCE_EXHAUSTED
        )
        assert "the server has 2 export streams open" in got.message
        assert a.usage.ListUsageEvents(pb.ListUsageEventsRequest(limit=1)).data  # unary calls go on
        rest = sum(len(chunk.data) for chunk in held_a)  # read to its end: the slot is free again
        assert rest == 390
        held_b.cancel()
        assert sum(len(chunk.data) for chunk in a.usage.ExportUsageEvents(request)) == 400
    finally:
        harness.close()


def test_chunks_of_large_events_stay_within_four_mebibytes(org_a: Client) -> None:
    """600 events of 15 KB asked for in one chunk of 5000: three chunks of at most 4 MiB instead
    (one message of 9 MB would near gRPC's limit with larger batches)."""
    blob = {"blob": "x" * 15_000}
    org_a.ingest_ok([event(timestamp=START + dt.timedelta(seconds=i), properties=blob) for i in range(600)])
    chunks = list(org_a.usage.ExportUsageEvents(pb.ExportUsageEventsRequest(chunk_size=5000)))
    event_size = chunks[0].data[0].ByteSize()
    sizes = [len(c.data) for c in chunks]
    assert len(sizes) == 3 and sizes[0] == sizes[1] > 250 and sum(sizes) == 600, sizes
    # Full: one more event would not have fitted.
    assert all(
        4 * 1024 * 1024 - event_size < c.ByteSize() <= 4 * 1024 * 1024 + 1024 for c in chunks[:2]
    )  # + the token
    events, _ = _exported(chunks)
    assert events == _listed(org_a)
