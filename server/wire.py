"""Each event's wire form, kept in its row (`events.wire`): what list responses send, stored once.

An event never changes after ingestion, so its serialized `UsageEvent` is computed once, at
ingestion, and a page of ListUsageEvents is the concatenation of its events' stored forms instead
of rows turned into objects turned into messages (the cost that dominated a page).

The stored form is one ENTRY of a `repeated UsageEvent` field numbered 1: its tag, its length and
the serialized UsageEvent, exactly the bytes `ListUsageEventsResponse(data=[event])` serializes to.
Protobuf's encoding makes concatenated entries the serialization of all of them in order, and a
message's fields may come in any order, so

    ListUsageEventsResponse bytes = b"".join(entries) + ListUsageEventsResponse(pagination=...) bytes

with every byte produced by the protobuf library. `decode` reads entries back as UsageEvents.

When UsageEvent changes in a way that alters stored events, a migration rewrites the column (as
0003 filled it): the column is a copy of the row in another form, never a source of truth.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from google.protobuf import timestamp_pb2
from usage.v1 import events_pb2, pagination_pb2, usage_service_pb2

from server.domain import NewEvent

_OPTIONAL = (
    "product_id",
    "subscription_id",
    "price_key",
    "idempotency_key",
    "external_cost_amount",
    "external_cost_currency",
    "wallet_currency",
)


def event_entry(org: str, event_id: str, e: NewEvent, ingested_at_us: int) -> bytes:
    """The stored wire form of an event being ingested (`e` checked and canonical)."""
    holder = usage_service_pb2.ListUsageEventsResponse()
    out = holder.data.add(
        id=event_id,
        organization_id=org,
        customer_id=e.customer_id,
        metric_key=e.metric_key,
        quantity=e.quantity,
    )
    seconds, micros = divmod(e.timestamp_us, 1_000_000)
    out.timestamp.seconds, out.timestamp.nanos = seconds, micros * 1000
    seconds, micros = divmod(ingested_at_us, 1_000_000)
    out.ingested_at.seconds, out.ingested_at.nanos = seconds, micros * 1000
    for name in _OPTIONAL:
        value = getattr(e, name)
        if value is not None:
            setattr(out, name, value)
    out.properties.SetInParent()  # present even when empty: `"properties": {}` in JSON
    if e.properties_wire is not None:
        # The request's own Struct (checked: normalizing changed no value it holds), parsed in C.
        out.properties.MergeFromString(e.properties_wire)
    else:
        out.properties.update(e.properties)
    return holder.SerializeToString()


def decode(entries: Iterable[bytes]) -> Sequence[events_pb2.UsageEvent]:
    """The UsageEvents of stored entries, in order (one parse for all of them)."""
    return usage_service_pb2.ListUsageEventsResponse.FromString(b"".join(entries)).data


def list_response(entries: Sequence[bytes], cursor: str, as_of_us: int) -> bytes:
    """The serialized ListUsageEventsResponse of a page: its events' entries, then its pagination
    and as_of."""
    tail = usage_service_pb2.ListUsageEventsResponse(
        pagination=pagination_pb2.Pagination(cursor=cursor, has_more=bool(cursor)), as_of=_timestamp(as_of_us)
    )
    return b"".join(entries) + tail.SerializeToString()


def export_chunk(entries: Sequence[bytes], resume_token: str, as_of_us: int) -> bytes:
    """The serialized ExportUsageEventsResponse of a chunk: its `data` has the field number of
    ListUsageEventsResponse's, so the stored entries are its events as they are."""
    tail = usage_service_pb2.ExportUsageEventsResponse(resume_token=resume_token, as_of=_timestamp(as_of_us))
    return b"".join(entries) + tail.SerializeToString()


def _timestamp(us: int) -> timestamp_pb2.Timestamp:
    seconds, micros = divmod(us, 1_000_000)
    return timestamp_pb2.Timestamp(seconds=seconds, nanos=micros * 1000)
