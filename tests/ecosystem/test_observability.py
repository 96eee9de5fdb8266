"""Metrics, JSON RPC logs, request ids and tracing of a real server, read the way operators read them:
/metrics over HTTP (parsed with prometheus_client's parser), log records, response metadata, spans
from the OpenTelemetry SDK's in-memory exporter. Over both databases (the pool gauges differ)."""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import urllib.request
from collections.abc import Iterator

import grpc
import pytest
from grpc_harness import Harness, event, expect_error
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from prometheus_client.parser import text_string_to_metric_families
from usage.v1 import usage_service_pb2 as pb
from usage.v1 import usage_service_pb2_grpc

import server.app
from server.auth import mint_token
from server.config import Settings
from server.observability import RPC_LOGGER, JsonFormatter, Observability

USAGE = "usage.v1.UsageService"


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """GET /metrics: {(sample name, sorted labels): value}."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        assert response.status == 200
        text = response.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def rpc_labels(method: str, code: str | None = None) -> tuple[tuple[str, str], ...]:
    labels = {"grpc_service": USAGE, "grpc_method": method}
    if code:
        labels["grpc_code"] = code
    return tuple(sorted(labels.items()))


@pytest.fixture
def served(db_url: str) -> Iterator[tuple[Harness, int]]:
    h = Harness.start(db_url)
    metrics = h.running.observability.serve_metrics("127.0.0.1", 0)
    try:
        yield h, metrics.port
    finally:
        metrics.stop()
        h.close()


def test_metrics_move_with_real_calls(served: tuple[Harness, int]) -> None:
    h, port = served
    before = scrape(port)
    # Harness: db_pool_size=4, one pool on SQLite, two on PostgreSQL (the single-statement reads').
    assert before[("usage_db_pool_size", ())] == 4 * (
        2 if h.storage.db.engine.dialect.name == "postgresql" else 1
    )
    a = h.client("org_a")
    results = a.ingest(
        event(idempotency_key="k1"), event(idempotency_key="k1"), event(metric_key=""), event(quantity="2")
    )
    assert [r.status for r in results] == ["ACCEPTED", "DUPLICATE", "REJECTED", "ACCEPTED"]
    for _ in range(3):
        a.usage.ListUsageEvents(pb.ListUsageEventsRequest(limit=10))
    expect_error(
        a.usage.ListUsageEvents, pb.ListUsageEventsRequest(limit=-1), grpc.StatusCode.INVALID_ARGUMENT
    )
    anonymous = h.raw_client(())
    expect_error(
        anonymous.usage.ListUsageEvents, pb.ListUsageEventsRequest(), grpc.StatusCode.UNAUTHENTICATED
    )

    after = scrape(port)

    def moved(name: str, labels: tuple[tuple[str, str], ...]) -> float:
        return after.get((name, labels), 0.0) - before.get((name, labels), 0.0)

    handled = "grpc_server_handled_total"
    assert moved(handled, rpc_labels("ListUsageEvents", "OK")) == 3
    assert moved(handled, rpc_labels("ListUsageEvents", "INVALID_ARGUMENT")) == 1
    assert moved(handled, rpc_labels("ListUsageEvents", "UNAUTHENTICATED")) == 1
    assert moved(handled, rpc_labels("IngestUsageEvents", "OK")) == 1
    assert moved("grpc_server_started_total", rpc_labels("ListUsageEvents")) == 5
    assert moved("grpc_server_handling_seconds_count", rpc_labels("ListUsageEvents")) == 5
    assert moved("grpc_server_handling_seconds_sum", rpc_labels("ListUsageEvents")) > 0
    buckets = sorted(
        (float(dict(labels)["le"]), value)
        for (name, labels), value in after.items()
        if name == "grpc_server_handling_seconds_bucket" and dict(labels)["grpc_method"] == "ListUsageEvents"
    )
    assert buckets[-1] == (float("inf"), 5)
    assert [v for _, v in buckets] == sorted(v for _, v in buckets)  # cumulative
    assert after[("grpc_server_in_flight_rpcs", rpc_labels("ListUsageEvents"))] == 0
    for result, count in [("accepted", 2), ("duplicate", 1), ("rejected", 1)]:
        assert moved("usage_ingested_events_total", (("result", result),)) == count
    # The pool opened connections for these calls and got all of them back.
    assert after[("usage_db_pool_checked_out", ())] == 0
    assert after[("usage_db_pool_checked_in", ())] >= 1


def test_each_server_has_its_own_registry(served: tuple[Harness, int], db_url: str) -> None:
    h, _ = served
    h.client("org_a").usage.ListUsageEvents(pb.ListUsageEventsRequest())
    other = Harness.start(db_url)
    try:
        fresh = other.running.observability.handled.labels(USAGE, "ListUsageEvents", "OK")._value.get()
        assert fresh == 0
    finally:
        other.close()


def test_one_log_line_per_rpc_with_the_request_id_returned(
    served: tuple[Harness, int], caplog: pytest.LogCaptureFixture
) -> None:
    h, _ = served
    auth = (("authorization", f"Bearer {h.token('org_a')}"),)
    stub = usage_service_pb2_grpc.UsageServiceStub(h.channel)
    caplog.set_level(logging.INFO, logger=RPC_LOGGER)

    def request_id_of(metadata: tuple[tuple[str, str], ...], limit: int = 0) -> str:
        try:
            _, call = stub.ListUsageEvents.with_call(
                pb.ListUsageEventsRequest(limit=limit), metadata=auth + metadata, timeout=30
            )
        except grpc.RpcError as err:
            call = err  # a failed call has response metadata too
        return str(dict(call.initial_metadata())["x-request-id"])

    # The server echoes the caller's request id as response metadata...
    assert request_id_of((("x-request-id", "req-abc.1"),)) == "req-abc.1"
    # ...makes one up when there is none, or when the given one is not a short printable token...
    generated = request_id_of(())
    replaced = request_id_of((("x-request-id", "bad id {}"),))
    assert re.fullmatch(r"[0-9a-f]{32}", generated) and re.fullmatch(r"[0-9a-f]{32}", replaced)
    # ...and returns it on errors as well.
    assert request_id_of((("x-request-id", "req-err"),), limit=-1) == "req-err"

    lines = [r for r in caplog.records if r.name == RPC_LOGGER]
    fields = [r.fields for r in lines]  # type: ignore[attr-defined]
    assert [f["request_id"] for f in fields] == ["req-abc.1", generated, replaced, "req-err"]
    assert [f["code"] for f in fields] == ["OK", "OK", "OK", "INVALID_ARGUMENT"]
    for record, f in zip(lines, fields, strict=True):
        assert f["method"] == f"/{USAGE}/ListUsageEvents"
        assert f["organization"] == "org_a"
        assert f["duration_ms"] >= 0
        line = JsonFormatter().format(record)
        assert "\n" not in line
        parsed = json.loads(line)
        assert parsed["message"] == "rpc" and parsed["request_id"] == f["request_id"]
        assert parsed["level"] == "INFO" and parsed["logger"] == RPC_LOGGER


def test_health_checks_are_observed_without_a_token(
    served: tuple[Harness, int], caplog: pytest.LogCaptureFixture
) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    caplog.set_level(logging.DEBUG)
    h, port = served
    stub = health_pb2_grpc.HealthStub(h.channel)
    assert (
        stub.Check(health_pb2.HealthCheckRequest(), timeout=30).status
        == health_pb2.HealthCheckResponse.SERVING
    )
    expect_error(
        stub.Check, health_pb2.HealthCheckRequest(service="nope"), grpc.StatusCode.NOT_FOUND, timeout=30
    )
    # Health/List is not implemented by grpcio-health-checking: UNIMPLEMENTED, without a traceback.
    expect_error(stub.List, health_pb2.HealthListRequest(), grpc.StatusCode.UNIMPLEMENTED, timeout=30)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    # A probe that succeeds logs at DEBUG (probes come every few seconds); the failures at INFO.
    levels = [(r.fields["code"], r.levelno) for r in caplog.records if r.name == RPC_LOGGER]  # type: ignore[attr-defined]
    assert levels == [("OK", logging.DEBUG), ("NOT_FOUND", logging.INFO), ("UNIMPLEMENTED", logging.INFO)]
    after = scrape(port)
    labels = {"grpc_service": "grpc.health.v1.Health", "grpc_method": "Check"}
    assert after[("grpc_server_handled_total", tuple(sorted((labels | {"grpc_code": "OK"}).items())))] == 1
    assert (
        after[("grpc_server_handled_total", tuple(sorted((labels | {"grpc_code": "NOT_FOUND"}).items())))]
        == 1
    )


def test_rpcs_run_in_opentelemetry_spans(db_url: str, caplog: pytest.LogCaptureFixture) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    settings = Settings(
        database_url=db_url,
        jwt_secret="observability-test-secret-32-bytes-long",
        cursor_secret="c",
        max_workers=4,
    )
    storage = server.app.open_storage(settings, auto_migrate=False)
    observability = Observability(storage.engine, tracer_provider=provider)
    running = server.app.create_server(settings, storage, "127.0.0.1:0", observability)
    running.server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{running.port}")
    auth = (("authorization", f"Bearer {mint_token(settings, 'org_a', dt.timedelta(hours=1))}"),)
    stub = usage_service_pb2_grpc.UsageServiceStub(channel)
    caplog.set_level(logging.INFO, logger=RPC_LOGGER)
    try:
        stub.ListUsageEvents(pb.ListUsageEventsRequest(), metadata=auth, timeout=30)
        expect_error(
            stub.ListUsageEvents,
            pb.ListUsageEventsRequest(limit=-1),
            grpc.StatusCode.INVALID_ARGUMENT,
            metadata=auth,
            timeout=30,
        )
        parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        stub.AggregateUsage(
            pb.AggregateUsageRequest(bucket="day", since=event().timestamp),
            metadata=auth + (("traceparent", parent),),
            timeout=30,
        )
    finally:
        channel.close()
        running.server.stop(None).wait()
        storage.close()
    ok, failed, child = exporter.get_finished_spans()
    assert ok.name == f"{USAGE}/ListUsageEvents" and ok.kind == SpanKind.SERVER
    assert ok.attributes is not None and failed.attributes is not None
    assert ok.attributes["rpc.system"] == "grpc" and ok.attributes["rpc.grpc.status_code"] == 0
    assert ok.attributes["usage.organization"] == "org_a"
    assert ok.status.status_code == StatusCode.UNSET
    assert failed.status.status_code == StatusCode.ERROR and failed.attributes["rpc.grpc.status_code"] == 3
    assert child.context is not None and child.parent is not None
    assert f"{child.context.trace_id:032x}" == "0af7651916cd43dd8448eb211c80319c"  # W3C traceparent honoured
    assert f"{child.parent.span_id:016x}" == "b7ad6b7169203331"
    logged = [r.fields.get("trace_id") for r in caplog.records if r.name == RPC_LOGGER]  # type: ignore[attr-defined]
    assert logged == [f"{s.context.trace_id:032x}" for s in (ok, failed, child) if s.context]
