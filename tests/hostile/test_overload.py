"""Overload (issue 6, part 5): beyond `max_concurrent_rpcs` admitted calls, grpc answers
RESOURCE_EXHAUSTED at once while the admitted calls finish normally; a request larger than the
maximum message size is RESOURCE_EXHAUSTED; the server keeps serving afterwards."""

from __future__ import annotations

import datetime as dt
from typing import Any

import grpc
import sqlalchemy as sa
from grpc_harness import Harness, event
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hostile_support import fingerprint
from usage.v1 import usage_service_pb2 as pb
from usage.v1 import usage_service_pb2_grpc

import server.app
from server.storage.engine import make_engine

CALLS = 24
BATCH = 5000
NOW = dt.datetime.now(dt.UTC)


def _health(h: Harness) -> int:
    return health_pb2_grpc.HealthStub(h.channel).Check(health_pb2.HealthCheckRequest(), timeout=30).status


def test_calls_beyond_the_bound_are_resource_exhausted_and_admitted_ones_succeed(db_url: str) -> None:
    h = Harness.start(db_url, max_concurrent_rpcs=2)
    try:
        client = h.client("org_load")
        batch = pb.IngestUsageEventsRequest(
            events=[event(timestamp=NOW - dt.timedelta(seconds=i), properties={"i": i}) for i in range(BATCH)]
        )
        stub = usage_service_pb2_grpc.UsageServiceStub(h.channel)  # `.future` fires without waiting
        metadata = (("authorization", f"Bearer {client.token}"),)
        futures = [stub.IngestUsageEvents.future(batch, metadata=metadata, timeout=120) for _ in range(CALLS)]
        ok = rejected = 0
        for f in futures:
            try:
                response = f.result()
            except grpc.RpcError as err:
                assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, (err.code(), err.details())
                rejected += 1
            else:
                assert {r.status for r in response.results} == {"ACCEPTED"}
                ok += 1
        assert ok >= 1 and rejected >= 1, (ok, rejected)
        # Rejected calls stored nothing, admitted ones everything.
        assert dict(fingerprint(h.storage.engine))["events"] == ok * BATCH
        # Once the load is gone the server answers again, health included.
        assert _health(h) == health_pb2.HealthCheckResponse.SERVING
        assert len(client.ingest(event())) == 1
    finally:
        h.close()


def test_a_request_larger_than_the_message_limit_is_resource_exhausted(db_url: str) -> None:
    h = Harness.start(db_url)
    try:
        client = h.client("org_big")
        big = "x" * (server.app.MAX_MESSAGE_BYTES + 1024)
        before = fingerprint(h.storage.engine)
        try:
            client.ingest(event(properties={"big": big}))
        except grpc.RpcError as err:
            assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, (err.code(), err.details())
        else:
            raise AssertionError("an oversized request was accepted")
        assert fingerprint(h.storage.engine) == before
        assert _health(h) == health_pb2.HealthCheckResponse.SERVING
        assert [r.status for r in client.ingest(event())] == ["ACCEPTED"]
    finally:
        h.close()


def _hold_write_lock(engine: sa.Engine) -> sa.Connection:
    """A connection whose open transaction blocks every ingest until it is rolled back."""
    conn = engine.connect().execution_options(usage_write=True)
    conn.begin()  # on SQLite, BEGIN IMMEDIATE (storage/engine.py): the write lock
    if engine.dialect.name == "postgresql":
        conn.exec_driver_sql("LOCK TABLE events IN EXCLUSIVE MODE")
    return conn


def test_health_and_admitted_calls_keep_working_while_saturated(db_url: str) -> None:
    h = Harness.start(db_url, max_concurrent_rpcs=2, max_workers=2)
    holder_engine = make_engine(db_url)
    holder = _hold_write_lock(holder_engine)
    try:
        client = h.client("org_sat")
        stub = usage_service_pb2_grpc.UsageServiceStub(h.channel)
        metadata = (("authorization", f"Bearer {client.token}"),)

        # Two admitted ingests wait for the lock: the server is saturated for as long as it is held.
        def ingest(i: int) -> Any:
            request = pb.IngestUsageEventsRequest(events=[event(timestamp=NOW, idempotency_key=f"sat-{i}")])
            return stub.IngestUsageEvents.future(request, metadata=metadata, timeout=120)

        admitted = [ingest(0), ingest(1)]
        rejected = None
        for _ in range(200):  # a bound on a hang; each round either ends it or resends a lost ingest
            for i, f in enumerate(admitted):
                # An ingest that arrived while the probe below held a slot was turned away: resend it.
                if f.done() and f.exception() is not None:
                    assert f.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, f.exception()
                    admitted[i] = ingest(i)
            try:
                stub.ListUsageEvents(pb.ListUsageEventsRequest(), metadata=metadata, timeout=30)
            except grpc.RpcError as err:
                rejected = err
                break
        assert rejected is not None and rejected.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, rejected
        assert "limit of 2 concurrent calls" in (rejected.details() or "")
        # Health is not counted against the bound: it answers while the API is saturated.
        for _ in range(5):
            assert _health(h) == health_pb2.HealthCheckResponse.SERVING
        assert not any(f.done() for f in admitted)
    finally:
        holder.rollback()
        holder.close()
        holder_engine.dispose()
    try:
        # The admitted calls complete once the lock is gone.
        assert [f.result().results[0].status for f in admitted] == ["ACCEPTED", "ACCEPTED"]
        assert len(client.ingest(event())) == 1
    finally:
        h.close()
