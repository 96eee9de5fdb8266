"""Malformed request bytes (issue 11, item 4): a string that is not UTF-8, a truncated message, a Struct
nested past protobuf's depth limit. grpc's own deserialization answered INTERNAL "Exception
deserializing request!" without details and logged it at ERROR; the service answers INVALID_ARGUMENT
saying what is wrong, logs the call like any refused one, and keeps serving.

The bytes are written here by hand (the client's protobuf refuses to build them), and sent through a
raw channel method that skips client-side serialization.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import grpc
import pytest
from grpc_harness import Harness, details
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hostile_support import fingerprint
from usage.v1 import catalog_service_pb2 as cpb
from usage.v1 import usage_service_pb2 as pb


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        out.append(low | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (wire type 2)."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _nested_properties(levels: int) -> bytes:
    """IngestUsageEventsRequest{events: [{properties: {"a": {"a": ... }}}]}: Struct > map entry > Value
    is three messages deep per level."""
    struct = b""
    for _ in range(levels):
        value = _field(5, struct)  # Value.struct_value
        struct = _field(1, _field(1, b"a") + _field(2, value))  # Struct.fields entry {key, value}
    return _field(1, _field(12, struct))  # IngestUsageEventsRequest.events[0].properties


VALID_LIST = pb.ListUsageEventsRequest(customer_id="cus_1", limit=5).SerializeToString()
CASES = [
    ("/usage.v1.CatalogService/GetCustomer", _field(1, b"cus_\xff\xfe"), "a string field is not valid UTF-8"),
    ("/usage.v1.UsageService/ListUsageEvents", _field(3, b"\xc3\x28"), "a string field is not valid UTF-8"),
    ("/usage.v1.UsageService/ListUsageEvents", VALID_LIST[:-1], "the message is truncated or corrupt"),
    (
        "/usage.v1.UsageService/ListUsageEvents",
        b"\x1a\xff\xff\xff\xff\x0f",
        "the message is truncated or corrupt",
    ),
    ("/usage.v1.UsageService/IngestUsageEvents", _nested_properties(40), "nested more than 100 levels deep"),
]


@pytest.fixture
def harness(db_url: str) -> Iterator[Harness]:
    h = Harness.start(db_url)
    yield h
    h.close()


@pytest.mark.parametrize(("method", "raw", "problem"), CASES)
def test_malformed_bytes_are_invalid_argument(
    harness: Harness, method: str, raw: bytes, problem: str, caplog: pytest.LogCaptureFixture
) -> None:
    client = harness.client("org_bytes")
    call = harness.channel.unary_unary(method)  # bytes in, bytes out
    before = fingerprint(harness.storage.engine)
    with caplog.at_level(logging.INFO), pytest.raises(grpc.RpcError) as caught:
        call(raw, metadata=(("authorization", f"Bearer {client.token}"),), timeout=30)
    got = details(caught.value)
    assert got.code == grpc.StatusCode.INVALID_ARGUMENT, (got.code, got.message)
    assert got.reason == "MALFORMED_REQUEST"
    assert problem in got.message and method.rsplit("/", 1)[1] in got.message
    assert "Exception" not in got.message and "upb" not in got.message
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
    assert fingerprint(harness.storage.engine) == before
    # The server goes on serving: health, and the same RPC with good bytes.
    health = health_pb2_grpc.HealthStub(harness.channel).Check(health_pb2.HealthCheckRequest(), timeout=30)
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    assert client.usage.ListUsageEvents(pb.ListUsageEventsRequest(limit=1)).data is not None


def test_malformed_bytes_are_answered_before_authentication(harness: Harness) -> None:
    """Without a token the answer is still about the bytes: they are read before anything else."""
    call = harness.channel.unary_unary("/usage.v1.CatalogService/GetCustomer")
    with pytest.raises(grpc.RpcError) as caught:
        call(_field(1, b"\xff"), timeout=30)
    assert details(caught.value).reason == "MALFORMED_REQUEST"
    good = cpb.GetCustomerRequest(id="cus_1").SerializeToString()
    with pytest.raises(grpc.RpcError) as caught:
        call(good, timeout=30)
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
