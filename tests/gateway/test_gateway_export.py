"""ExportUsageEvents end to end on the real `usage-service serve --http-port 0` process: over HTTP as
newline-delimited JSON (grpc-gateway's stream format), resumed with a resume token, failing cleanly
before and after the stream started; and over gRPC, a reader that stops reading holds the server
back instead of making it buffer the export in memory.
"""

from __future__ import annotations

import json
import time
from typing import Any

import grpc
import httpx
import pytest
from gateway_process import ORG, Stack, token
from usage.v1 import usage_service_pb2 as pb
from usage.v1 import usage_service_pb2_grpc as pb_grpc

pytestmark = pytest.mark.e2e

BLOB = "x" * 15_000  # a large event: 4000 of them make a 60 MB export
BIG_EVENTS = 4000


def _batch(start: int, n: int, blob: str = "") -> dict[str, Any]:
    events = []
    for i in range(start, start + n):
        properties: dict[str, Any] = {"i": i}
        if blob:
            properties["blob"] = blob
        minute, second = divmod(i, 60)
        events.append(
            {
                "customer_id": f"cus_{i % 2}",
                "metric_key": "api_call",
                "timestamp": f"2026-01-10T{minute // 60:02d}:{minute % 60:02d}:{second:02d}Z",
                "properties": properties,
            }
        )
    return {"events": events}


@pytest.fixture(scope="module")
def seeded(stack: Stack) -> None:
    """30 small events of ORG, and BIG_EVENTS large ones of org_big."""
    with stack.client(ORG) as http:
        assert http.post("/v1/usage-events/batch", json=_batch(0, 30)).status_code == 200
    with stack.client("org_big") as http:
        # Small batches: ingestion leaves the server no more heap than a batch takes, which the
        # export could reuse unseen.
        for start in range(0, BIG_EVENTS, 100):
            response = http.post("/v1/usage-events/batch", json=_batch(start, 100, BLOB))
            assert response.status_code == 200, response.text


def _lines(response: httpx.Response) -> list[dict[str, Any]]:
    return [json.loads(line) for line in response.iter_lines() if line]


def _listed(http: httpx.Client) -> list[dict[str, Any]]:
    out, cursor = [], ""
    while True:
        page = http.get("/v1/usage-events", params={"limit": 100, "cursor": cursor}).json()
        out.extend(page["data"])
        cursor = page["pagination"]["cursor"]
        if not cursor:
            return out


def test_export_streams_ndjson_chunks_and_resumes(stack: Stack, seeded: None, http: httpx.Client) -> None:
    with http.stream("GET", "/v1/usage-events:export", params={"chunk_size": 7}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/x-ndjson"
        assert response.headers["x-request-id"]
        lines = _lines(response)
    assert [set(line) for line in lines] == [{"result"}] * 5
    events = [e for line in lines for e in line["result"]["data"]]
    assert events == _listed(http)
    # Resumed after the second chunk: the rest, once each.
    rest = _lines(
        http.get(
            "/v1/usage-events:export",
            params={"chunk_size": 7, "resume_token": lines[1]["result"]["resume_token"]},
        )
    )
    assert [e for line in rest for e in line["result"]["data"]] == events[14:]


def test_an_export_refused_before_it_starts_is_an_ordinary_error(seeded: None, http: httpx.Client) -> None:
    response = http.get("/v1/usage-events:export", params={"chunk_size": 5001})
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == 3
    assert [v["field"] for d in body["details"] for v in d.get("field_violations", [])] == ["chunk_size"]


def test_an_export_failing_once_started_ends_with_an_error_line(stack: Stack, seeded: None) -> None:
    """The deadline (grpc-timeout) passes while the reader pauses: the chunks sent before it, then
    one `{"error": ...}` line with DEADLINE_EXCEEDED (code 4)."""
    with (
        stack.client("org_big", **{"grpc-timeout": "2S"}) as http,
        http.stream("GET", "/v1/usage-events:export", params={"chunk_size": 50}) as response,
    ):
        assert response.status_code == 200
        lines = response.iter_lines()
        assert "result" in json.loads(next(lines))
        time.sleep(3)
        rest = [json.loads(line) for line in lines if line]
    assert all(set(line) == {"result"} for line in rest[:-1])
    assert rest[-1]["error"]["code"] == 4, rest[-1]
    assert sum(len(line["result"]["data"]) for line in rest[:-1]) < BIG_EVENTS - 50


def _rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        line = next(row for row in status if row.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


def test_a_reader_that_stops_holds_the_export_back(stack: Stack, seeded: None) -> None:
    """60 MB to export; the reader takes one chunk and stops. The server sends what flow control
    lets through and waits: its memory grows by far less than the export, and every event still
    arrives once the reader reads on."""
    pid = stack.processes[0].proc.pid
    channel = grpc.insecure_channel(f"127.0.0.1:{stack.grpc_port}")
    try:
        stub = pb_grpc.UsageServiceStub(channel)
        before = _rss_mib(pid)
        stream = stub.ExportUsageEvents(
            pb.ExportUsageEventsRequest(chunk_size=20),
            metadata=(("authorization", f"Bearer {token('org_big')}"),),
            timeout=120,
        )
        received = len(next(stream).data)
        time.sleep(2)  # the reader is away: the server may only fill the windows
        paused = _rss_mib(pid)
        print(f"server RSS {before:.0f} MiB before the export, {paused:.0f} MiB with the reader away")
        ids = set()
        for chunk in stream:
            ids.update(e.id for e in chunk.data)
            received += len(chunk.data)
    finally:
        channel.close()
    export_mib = BIG_EVENTS * len(BLOB) / 2**20
    assert paused - before < export_mib / 3, (before, paused, export_mib)
    assert received == BIG_EVENTS and len(ids) == BIG_EVENTS - 20
