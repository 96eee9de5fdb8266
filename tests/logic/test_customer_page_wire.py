"""A customer page's response written from its events' stored forms (server/wire.py
`customer_page_response`, through views whose Struct and Timestamp are bytes) parses to the response
built the plain way, message by message, over random events: every optional field, empty, nested and
non-ASCII properties, names absent or empty, empty pages, any offset."""

from __future__ import annotations

from google.protobuf import timestamp_pb2
from hypothesis import given, settings
from hypothesis import strategies as st
from usage.v1 import usage_service_pb2 as pb

from server import wire
from server.domain import NewEvent

TEXT = st.text(st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), max_size=10)
SCALAR = st.one_of(TEXT, st.booleans(), st.none(), st.floats(allow_nan=False, allow_infinity=False))
VALUE = st.recursive(
    SCALAR,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=8,
)
PROPERTIES = st.dictionaries(TEXT.filter(bool), VALUE, max_size=5)
OPTIONAL = st.none() | TEXT.filter(bool)
EVENT = st.builds(
    lambda customer, metric, ts, optional, properties: NewEvent(
        customer, metric, ts, "1.5", *optional, properties
    ),
    TEXT.filter(bool),
    TEXT.filter(bool),
    st.integers(0, 253_402_300_799_000_000),
    st.tuples(*[OPTIONAL] * 7),
    PROPERTIES,
)
PAGE = st.lists(st.tuples(EVENT, st.none() | TEXT), max_size=6)


def plain_response(
    entries: list[tuple[bytes, str | None]], total: int, skipped: int, as_of_us: int
) -> pb.ListCustomerUsageEventsResponse:
    """The definition: each stored event parsed, its fields copied into a CustomerUsageEvent."""
    seconds, micros = divmod(as_of_us, 1_000_000)
    response = pb.ListCustomerUsageEventsResponse(
        meta=pb.PageMeta(total=total, taken=len(entries), skipped=skipped),
        as_of=timestamp_pb2.Timestamp(seconds=seconds, nanos=micros * 1000),
    )
    for event, (_, name) in zip(wire.decode(e for e, _ in entries), entries, strict=True):
        out = response.data.add(id=event.id, name=name)
        out.timestamp.CopyFrom(event.timestamp)
        out.payload.CopyFrom(event.properties)
    return response


@settings(max_examples=200, deadline=None, derandomize=True, database=None)
@given(
    page=PAGE, total=st.integers(0, 2**31 - 1), skipped=st.integers(0, 2**31 - 1), as_of=st.integers(0, 2**62)
)
def test_customer_page_bytes_parse_to_the_plain_response(
    page: list[tuple[NewEvent, str | None]], total: int, skipped: int, as_of: int
) -> None:
    entries = [
        (wire.event_entry("org", f"evt_{i}", event, 1_796_101_200_000_000), name)
        for i, (event, name) in enumerate(page)
    ]
    sent = pb.ListCustomerUsageEventsResponse.FromString(
        wire.customer_page_response(entries, total, skipped, as_of)
    )
    expected = plain_response(entries, total, skipped, as_of)
    assert sent == expected
    # Presence too (== compares it, but say it): every event has its timestamp and payload, even empty.
    assert all(e.HasField("timestamp") and e.HasField("payload") for e in sent.data)
    assert sent.HasField("meta") and sent.HasField("as_of")
