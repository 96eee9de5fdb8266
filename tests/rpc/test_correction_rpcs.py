"""CorrectionService over a real channel, on SQLite and PostgreSQL: voids leave every read (lists,
customer totals and pages, aggregates, an answer kept in the answer cache), keep the event with its
void in its history, name their caller from the token's claim, and refuse what they must; amends
replace an event by a new version that keeps its identity, guarded by the version the caller saw.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from typing import Any

import grpc
import jwt
import pytest
from google.protobuf import field_mask_pb2
from grpc_harness import (
    JWT_SECRET,
    Client,
    Harness,
    details,
    event,
    expect_error,
    expect_invalid,
    expect_not_found,
    to_dt,
    ts,
)
from usage.v1 import catalog_pb2
from usage.v1 import catalog_service_pb2 as cpb
from usage.v1 import corrections_service_pb2 as xpb
from usage.v1 import usage_service_pb2 as pb

START = dt.datetime(2026, 1, 10, tzinfo=dt.UTC)


@pytest.fixture
def harness(db_url: str) -> Iterator[Harness]:
    h = Harness.start(db_url, aggregate_cache_mb=8, jwt_caller_claim="email")
    try:
        yield h
    finally:
        h.close()


def client_as(h: Harness, org: str, **claims: object) -> Client:
    """Stubs for `org` with a token holding exactly these extra claims."""
    token = jwt.encode(
        {"org_id": org, "exp": int(time.time()) + 3600, **claims}, JWT_SECRET, algorithm="HS256"
    )
    return h.raw_client((("authorization", f"Bearer {token}"),), org=org, token=token)


def void(client: Client, *ids: str, reason: str = "test traffic") -> list[xpb.VoidResult]:
    return list(
        client.corrections.VoidUsageEvents(xpb.VoidUsageEventsRequest(event_ids=ids, reason=reason)).results
    )


def count(client: Client) -> int:
    answer = client.usage.AggregateUsage(
        pb.AggregateUsageRequest(
            bucket="day", since=ts(START), until=ts(START + dt.timedelta(days=1)), metric="count"
        )
    )
    return sum(int(s.exact_total) for s in answer.series)


def customer_total(client: Client) -> int:
    page = client.usage.ListCustomerUsageEvents(
        pb.ListCustomerUsageEventsRequest(
            id="cus_1", aggregator_id="agg", start_date=ts(START), end_date=ts(START + dt.timedelta(days=1))
        )
    )
    assert len(page.data) == page.meta.total
    return page.meta.total


def test_a_void_leaves_every_read_and_is_kept_in_the_history(harness: Harness) -> None:
    alice = client_as(harness, "org_a", email="alice@example.com")
    alice.catalog.CreateAggregator(
        cpb.CreateAggregatorRequest(
            aggregator=catalog_pb2.Aggregator(id="agg", name="agg", event_type="api_call", operation="count")
        )
    )
    ids = alice.ingest_ok([event(timestamp=START + dt.timedelta(minutes=7 * i)) for i in range(30)])
    listed = {e.id: e for e in alice.all_events()}
    assert count(alice) == customer_total(alice) == 30  # the AggregateUsage answer is now cached
    before = dt.datetime.now(dt.UTC)
    results = void(alice, ids[3], "evt_missing", ids[4], reason="sent twice")
    after = dt.datetime.now(dt.UTC)
    assert [(r.event_id, r.status) for r in results] == [
        (ids[3], "VOIDED"),
        ("evt_missing", "NOT_FOUND"),
        (ids[4], "VOIDED"),
    ]
    record = results[0].void
    assert (record.corrected_by, record.reason) == ("alice@example.com", "sent twice")
    assert before - dt.timedelta(seconds=1) <= to_dt(record.corrected_at) <= after + dt.timedelta(seconds=1)
    assert not results[1].HasField("void")
    # Gone from every read, the cached aggregate included.
    assert {e.id for e in alice.all_events()} == set(ids) - {ids[3], ids[4]}
    assert count(alice) == customer_total(alice) == 28
    # Kept, with its void.
    (version,) = alice.corrections.GetUsageEventHistory(
        xpb.GetUsageEventHistoryRequest(event_id=ids[3])
    ).versions
    assert version.event == listed[ids[3]] and version.voided == record
    (live,) = alice.corrections.GetUsageEventHistory(
        xpb.GetUsageEventHistoryRequest(event_id=ids[5])
    ).versions
    assert live.event == listed[ids[5]] and not live.HasField("voided")
    # Again, by someone else: the earlier void is the answer, nothing changes.
    bob = client_as(harness, "org_a", email="bob@example.com")
    (again,) = void(bob, ids[3], reason="cleanup")
    assert (again.status, again.void) == ("ALREADY_VOIDED", record)
    assert count(bob) == 28
    expect_not_found(
        alice.corrections.GetUsageEventHistory, xpb.GetUsageEventHistoryRequest(event_id="evt_missing")
    )


def test_another_organizations_events_are_not_found(harness: Harness) -> None:
    a = client_as(harness, "org_a", email="a@example.com")
    b = client_as(harness, "org_b", email="b@example.com")
    (mine,) = a.ingest_ok([event(timestamp=START)])
    (theirs,) = void(b, mine)
    assert theirs.status == "NOT_FOUND"
    expect_not_found(b.corrections.GetUsageEventHistory, xpb.GetUsageEventHistoryRequest(event_id=mine))
    assert [e.id for e in a.all_events()] == [mine]


def test_a_token_without_the_caller_claim_reads_but_cannot_correct(harness: Harness) -> None:
    anonymous = client_as(harness, "org_a", sub="someone")  # the configured claim is `email`
    (event_id,) = anonymous.ingest_ok([event(timestamp=START)])
    for attempt in (
        lambda: void(anonymous, event_id),
        lambda: void(client_as(harness, "org_a", email=""), event_id),
        lambda: void(client_as(harness, "org_a", email=["a", "b"]), event_id),
        lambda: amend(anonymous, event_id, ["quantity"], quantity="2"),
    ):
        with pytest.raises(grpc.RpcError) as caught:
            attempt()
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert details(caught.value).reason == "TOKEN_CALLER_MISSING"
        assert "'email' claim" in caught.value.details()
    assert [e.id for e in anonymous.all_events()] == [event_id]


@pytest.mark.parametrize(
    ("request_fields", "field"),
    [
        ({"event_ids": ["evt_1"]}, "reason"),
        ({"event_ids": ["evt_1"], "reason": "   "}, "reason"),
        ({"event_ids": ["evt_1"], "reason": "x" * 1025}, "reason"),
        ({"reason": "r"}, "event_ids"),
        ({"event_ids": ["evt_1", "evt_1"], "reason": "r"}, "event_ids"),
        ({"event_ids": [f"evt_{i}" for i in range(1001)], "reason": "r"}, "event_ids"),
        ({"event_ids": [""], "reason": "r"}, "event_ids[0]"),
        ({"event_ids": ["e" * 65], "reason": "r"}, "event_ids[0]"),
    ],
)
def test_invalid_voids_name_their_field(harness: Harness, request_fields: dict, field: str) -> None:
    client = client_as(harness, "org_a", email="a@example.com")
    expect_invalid(client.corrections.VoidUsageEvents, xpb.VoidUsageEventsRequest(**request_fields), field)


def test_invalid_history_requests_name_their_field(harness: Harness) -> None:
    client = client_as(harness, "org_a", email="a@example.com")
    for event_id in ("", "e" * 65):
        expect_invalid(
            client.corrections.GetUsageEventHistory,
            xpb.GetUsageEventHistoryRequest(event_id=event_id),
            "event_id",
        )
    expect_error(
        client.corrections.GetUsageEventHistory,
        xpb.GetUsageEventHistoryRequest(event_id="evt_x"),
        grpc.StatusCode.NOT_FOUND,
    )


# ---- AmendUsageEvent ------------------------------------------------------------------------------
def amend(
    client: Client, event_id: str, mask: list[str], reason: str = "wrong quantity", **fields: Any
) -> Any:
    expected = fields.pop("expected_version_id", None)
    request = xpb.AmendUsageEventRequest(
        event_id=event_id,
        event=event(**fields) if fields else None,
        update_mask=field_mask_pb2.FieldMask(paths=mask),
        reason=reason,
    )
    if expected is not None:
        request.expected_version_id = expected
    return client.corrections.AmendUsageEvent(request)


def test_an_amend_replaces_the_event_and_keeps_its_identity(harness: Harness) -> None:
    alice = client_as(harness, "org_a", email="alice@example.com")
    original = event(
        timestamp=START, quantity="2", properties={"region": "eu"}, idempotency_key="k-1", product_id="prod_1"
    )
    (first,) = alice.ingest_ok([original])
    (before,) = alice.all_events()
    assert count(alice) == 1
    got = amend(
        alice, first, ["quantity", "properties", "product_id"], quantity="3.50", properties={"region": "us"}
    )
    new = got.event
    assert got.replaced_version_id == first and new.id != first
    assert (new.quantity, dict(new.properties), new.HasField("product_id")) == (
        "3.5",
        {"region": "us"},
        False,
    )
    assert (new.customer_id, new.metric_key, new.idempotency_key, new.timestamp) == (
        before.customer_id,
        before.metric_key,
        before.idempotency_key,
        before.timestamp,
    )
    assert (got.amend.corrected_by, got.amend.reason) == ("alice@example.com", "wrong quantity")
    assert [e.id for e in alice.all_events()] == [new.id] and count(alice) == 1
    old, current = alice.corrections.GetUsageEventHistory(
        xpb.GetUsageEventHistoryRequest(event_id=first)
    ).versions
    assert (old.event, old.voided, old.replaced_by) == (before, got.amend, new.id)
    assert current.event == new and not current.HasField("voided") and current.replaced_by == ""
    # A retry of the original ingest is still a DUPLICATE, of the current version.
    assert [(r.status, r.event_id) for r in alice.ingest(original)] == [("DUPLICATE", new.id)]
    # The guard: a stale expected version changes nothing and names the current one.
    with pytest.raises(grpc.RpcError) as stale:
        amend(alice, first, ["quantity"], quantity="9", expected_version_id=first)
    assert stale.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert details(stale.value).metadata == {"current_version_id": new.id}
    again = amend(alice, first, ["quantity"], quantity="9", expected_version_id=new.id)
    assert again.replaced_version_id == new.id and again.event.quantity == "9"


def test_amends_that_cannot_apply(harness: Harness) -> None:
    a = client_as(harness, "org_a", email="a@example.com")
    b = client_as(harness, "org_b", email="b@example.com")
    first, second = a.ingest_ok([event(timestamp=START), event(timestamp=START + dt.timedelta(minutes=1))])
    void(a, second)
    for client, event_id in ((a, "evt_missing"), (b, first)):
        expect_not_found(
            client.corrections.AmendUsageEvent,
            xpb.AmendUsageEventRequest(
                event_id=event_id, update_mask=field_mask_pb2.FieldMask(paths=["quantity"]), reason="r"
            ),
            "Usage event not found",
        )
    with pytest.raises(grpc.RpcError) as voided:
        amend(a, second, ["quantity"], quantity="2")
    assert voided.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert [e.id for e in a.all_events()] == [first]


@pytest.mark.parametrize(
    ("mask", "fields", "field"),
    [
        ([], {}, "update_mask"),
        (["customer_id"], {"customer_id": "cus_2"}, "update_mask"),
        (["metric_key"], {}, "update_mask"),
        (["idempotency_key"], {}, "update_mask"),
        (["quantity"], {"quantity": "abc"}, "event.quantity"),
        (["timestamp"], {"timestamp": dt.datetime(2100, 1, 1, tzinfo=dt.UTC)}, "event.timestamp"),
        (["properties"], {"properties": {"a": {"nested": 1}}}, "event.properties.a"),
        (["external_cost_amount"], {"external_cost_amount": "1"}, "event.external_cost_currency"),
        (["quantity"], {"quantity": "1", "reason": " "}, "reason"),
    ],
)
def test_invalid_amends_name_their_field(harness: Harness, mask: list[str], fields: dict, field: str) -> None:
    client = client_as(harness, "org_a", email="a@example.com")
    (first,) = client.ingest_ok([event(timestamp=START)])
    fields = dict(fields)  # the parameters are shared by both backends' runs
    reason = fields.pop("reason", "r")
    with pytest.raises(grpc.RpcError) as caught:
        amend(client, first, mask, reason=reason, **{"customer_id": "", **fields})  # unmasked: not read
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert details(caught.value).fields == [field], details(caught.value)
    assert [e.id for e in client.all_events()] == [first]


def test_export_and_explain_see_only_current_versions(harness: Harness) -> None:
    client = client_as(harness, "org_a", email="a@example.com")
    client.catalog.CreateAggregator(
        cpb.CreateAggregatorRequest(
            aggregator=catalog_pb2.Aggregator(id="agg", name="agg", event_type="api_call", operation="count")
        )
    )
    voided, amended, kept = client.ingest_ok(
        [event(timestamp=START + dt.timedelta(minutes=i)) for i in range(3)]
    )
    void(client, voided)
    new = amend(client, amended, ["quantity"], quantity="4").event.id
    exported = [
        e.id for chunk in client.usage.ExportUsageEvents(pb.ExportUsageEventsRequest()) for e in chunk.data
    ]
    assert sorted(exported) == sorted([new, kept])
    # A voided or replaced version is explained as it was, and does not count: its first check says why.
    for gone in (voided, amended):
        got = client.usage.ExplainUsageEvent(pb.ExplainUsageEventRequest(event_id=gone, aggregator_id="agg"))
        assert not got.counts and got.event.id == gone
        assert (got.checks[0].name, got.checks[0].passed) == ("current", False)
    assert client.usage.ExplainUsageEvent(
        pb.ExplainUsageEventRequest(event_id=new, aggregator_id="agg")
    ).counts
