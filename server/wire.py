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

A customer page (ListCustomerUsageEventsResponse) sends other field numbers: its events are
`CustomerUsageEvent(id, name, timestamp, payload)`. `customer_page_response` reads the stored entries
through a view whose timestamp and properties are `bytes` (a length-delimited field parses as bytes
as well as a message, without its contents being parsed), and writes a view of the response whose
timestamp and payload are those bytes: the same encoding as the messages, with no Struct parsed and
copied for each event (122 us a page of 50 against 315 us; parsed, the two answers are equal).

When UsageEvent changes in a way that alters stored events, a migration rewrites the column (as
0003 filled it): the column is a copy of the row in another form, never a source of truth.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format, timestamp_pb2
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


# The views, in a pool of their own (not the default pool: reflection and the contract never see
# them). proto2 for explicit presence: a present but empty Struct or Timestamp stays present.
_VIEWS = """
name: "usage_wire_views.proto"
package: "usage.wire_views"
syntax: "proto2"
message_type {
  name: "StoredEntries"  # ListUsageEventsResponse's `data` (1), the UsageEvent fields read
  field { name: "data" number: 1 label: LABEL_REPEATED type: TYPE_MESSAGE type_name: "StoredEvent" }
}
message_type {
  name: "StoredEvent"  # UsageEvent: id 1, timestamp 9, properties 15 (the others stay unknown)
  field { name: "id" number: 1 label: LABEL_OPTIONAL type: TYPE_STRING }
  field { name: "timestamp" number: 9 label: LABEL_OPTIONAL type: TYPE_BYTES }
  field { name: "properties" number: 15 label: LABEL_OPTIONAL type: TYPE_BYTES }
}
message_type {
  name: "CustomerPage"  # ListCustomerUsageEventsResponse
  field { name: "meta" number: 1 label: LABEL_OPTIONAL type: TYPE_BYTES }
  field { name: "data" number: 2 label: LABEL_REPEATED type: TYPE_MESSAGE type_name: "CustomerEvent" }
  field { name: "as_of" number: 3 label: LABEL_OPTIONAL type: TYPE_BYTES }
}
message_type {
  name: "CustomerEvent"  # CustomerUsageEvent
  field { name: "id" number: 1 label: LABEL_OPTIONAL type: TYPE_STRING }
  field { name: "name" number: 2 label: LABEL_OPTIONAL type: TYPE_STRING }
  field { name: "timestamp" number: 3 label: LABEL_OPTIONAL type: TYPE_BYTES }
  field { name: "payload" number: 4 label: LABEL_OPTIONAL type: TYPE_BYTES }
}
"""


def _view_classes() -> tuple[Any, Any]:
    pool = descriptor_pool.DescriptorPool()
    pool.Add(text_format.Parse(_VIEWS, descriptor_pb2.FileDescriptorProto()))
    return tuple(  # type: ignore[return-value]
        message_factory.GetMessageClass(pool.FindMessageTypeByName(f"usage.wire_views.{name}"))
        for name in ("StoredEntries", "CustomerPage")
    )


_StoredEntries, _CustomerPage = _view_classes()


def customer_page_response(
    events: Sequence[tuple[bytes, str | None]], total: int, skipped: int, as_of_us: int
) -> bytes:
    """The serialized ListCustomerUsageEventsResponse of a page of (stored entry, display name)."""
    meta = usage_service_pb2.PageMeta(total=total, taken=len(events), skipped=skipped)
    page = _CustomerPage(meta=meta.SerializeToString(), as_of=us_to_ts(as_of_us).SerializeToString())
    add = page.data.add
    stored = _StoredEntries.FromString(b"".join(entry for entry, _ in events)).data
    for event, (_, name) in zip(stored, events, strict=True):
        out = add()
        out.id, out.timestamp, out.payload = event.id, event.timestamp, event.properties
        if name:  # proto3's `name` is not sent when empty
            out.name = name
    return page.SerializeToString()


def list_response(entries: Sequence[bytes], cursor: str, as_of_us: int) -> bytes:
    """The serialized ListUsageEventsResponse of a page: its events' entries, then its pagination
    and as_of."""
    tail = usage_service_pb2.ListUsageEventsResponse(
        pagination=pagination_pb2.Pagination(cursor=cursor, has_more=bool(cursor)), as_of=us_to_ts(as_of_us)
    )
    return b"".join(entries) + tail.SerializeToString()


def export_chunk(entries: Sequence[bytes], resume_token: str, as_of_us: int) -> bytes:
    """The serialized ExportUsageEventsResponse of a chunk: its `data` has the field number of
    ListUsageEventsResponse's, so the stored entries are its events as they are."""
    tail = usage_service_pb2.ExportUsageEventsResponse(resume_token=resume_token, as_of=us_to_ts(as_of_us))
    return b"".join(entries) + tail.SerializeToString()


def us_to_ts(us: int) -> timestamp_pb2.Timestamp:
    """Microseconds since the epoch as a Timestamp (the RPC adapters' too: rpc/convert.py)."""
    seconds, micros = divmod(us, 1_000_000)
    return timestamp_pb2.Timestamp(seconds=seconds, nanos=micros * 1000)
