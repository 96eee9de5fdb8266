"""NewEvent.content_hash never changes shape: it is stored with every idempotency key, and a retry
years later must still be a DUPLICATE. The fast implementation (properties' JSON spliced in, not
serialized twice) is compared with the definition written out here, over random events."""

from __future__ import annotations

import dataclasses
import hashlib
import json

from hypothesis import given, settings
from hypothesis import strategies as st

from server.domain import NewEvent
from server.logic.ingest import normalize_properties

TEXT = st.text(st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), max_size=12)
SCALAR = st.one_of(
    TEXT, st.booleans(), st.integers(-(2**60), 2**60), st.floats(allow_nan=False, allow_infinity=False)
)
PROPERTIES = st.dictionaries(
    st.from_regex(r"[A-Za-z0-9_.-]{1,8}", fullmatch=True), SCALAR | st.lists(SCALAR, max_size=4), max_size=6
)
OPTIONAL = st.none() | TEXT.filter(bool)


def reference_hash(e: NewEvent) -> str:
    """The definition: SHA-256 of the sorted, compact, non-ASCII-escaped JSON of every field but
    the idempotency key."""
    content = {
        f.name: getattr(e, f.name)
        for f in dataclasses.fields(e)
        if f.name not in ("idempotency_key", "properties_json", "properties_wire")
    }
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(
    customer=TEXT.filter(bool),
    metric=TEXT.filter(bool),
    ts=st.integers(0, 2**62),
    quantity=st.sampled_from(["1", "0.5", "-3.25", "123456789012345678901234.123456789012"]),
    optional=st.tuples(*[OPTIONAL] * 7),
    properties=PROPERTIES,
)
def test_content_hash_is_the_canonical_json_digest(
    customer: str, metric: str, ts: int, quantity: str, optional: tuple[str | None, ...], properties: dict
) -> None:
    key, product, subscription, price, cost, currency, wallet = optional
    plain = NewEvent(
        customer, metric, ts, quantity, key, product, subscription, price, cost, currency, wallet, properties
    )
    normalized, text, violations = normalize_properties(properties)
    assert not violations
    checked = dataclasses.replace(plain, properties=normalized, properties_json=text)
    assert plain.content_hash() == reference_hash(plain)
    assert checked.content_hash() == reference_hash(checked)
