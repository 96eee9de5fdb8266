"""Ingestion rules: per-event checks that need more than the proto constraints (clock skew, the
shape and size of properties, decimal canonical form), then exactly-once storage.

An invalid event is REJECTED with its violations; the valid events of the same batch are stored.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from typing import Any

from server.deadline import Deadline
from server.decimals import canonical_decimal
from server.domain import IngestOutcome, JsonValue, NewEvent, canonical_json
from server.errors import FieldViolation
from server.storage.interface import EventStorage

MAX_PROPERTIES = 64
MAX_PROPERTIES_BYTES = 16 * 1024
MAX_ARRAY_ITEMS = 100
# Violations reported per rejected event: the answer to a batch of 5000 events stays a few MB
# (an event may break dozens of rules: 64 bad property values, or many more bad keys).
MAX_EVENT_VIOLATIONS = 10
_KEY_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_SAFE_INT = 2**53


# An event as decoded from the request, before the checks of this module: the same fields as the
# event to store, with the quantity, the cost amount and the properties still as the caller sent them.
EventDraft = NewEvent


@dataclasses.dataclass(frozen=True)
class EventResult:
    index: int
    status: str
    event_id: str = ""
    violations: tuple[FieldViolation, ...] = ()


_NUL = "\x00"


def _scalar(value: Any) -> tuple[JsonValue, str | None]:
    """A property scalar in canonical form (integral floats become ints), or an error."""
    if type(value) is str:  # most values: one check
        return value, ("must not contain NUL characters" if _NUL in value else None)
    if isinstance(value, bool):
        return value, None
    if isinstance(value, int | float):
        if not math.isfinite(value):
            return None, "numbers must be finite"
        if float(value).is_integer() and abs(value) < _SAFE_INT:
            return int(value), None
        return float(value), None
    if value is None:
        return None, "null values are not allowed"
    return None, "values must be strings, numbers, booleans or arrays of those"


def normalize_properties(
    props: dict[str, Any],
) -> tuple[dict[str, JsonValue], str, list[FieldViolation]]:
    """The properties in canonical form, their canonical JSON text (keys sorted, compact: what the
    content hash digests and the database stores), and what is wrong with them.

    Canonical form changes no value a Struct holds (a whole float becomes an int, the same double),
    but one: -0.0 becomes 0 (see `changes_struct_values`)."""
    out: dict[str, JsonValue] = {}
    violations: list[FieldViolation] = []
    if len(props) > MAX_PROPERTIES:  # the keys are not read one by one: there may be 100,000 of them
        return out, "", [FieldViolation("properties", f"at most {MAX_PROPERTIES} keys")]
    for key, value in props.items():
        if not _KEY_RE.fullmatch(key):
            violations.append(
                FieldViolation(
                    "properties",
                    f"invalid key {key[:64]!r}: a property key is 1 to 64 letters, digits"
                    " or the characters _ . -",
                )
            )
            continue
        if type(value) is str and _NUL not in value:  # most values: stored as they are
            out[key] = value
            continue
        if isinstance(value, list):
            if len(value) > MAX_ARRAY_ITEMS:
                violations.append(
                    FieldViolation(f"properties.{key}", f"arrays hold at most {MAX_ARRAY_ITEMS} items")
                )
                continue
            items = []
            for item in value:
                norm, err = _scalar(item)
                if err:
                    violations.append(FieldViolation(f"properties.{key}", f"array items: {err}"))
                    break
                items.append(norm)
            out[key] = items
            continue
        norm, err = _scalar(value)
        if err:
            violations.append(FieldViolation(f"properties.{key}", err))
        else:
            out[key] = norm
    if violations:
        return out, "", violations
    text = canonical_json(out)
    # The bound counts the JSON with non-ASCII characters escaped (as it always has).
    size = len(text) if text.isascii() else len(json.dumps(out, separators=(",", ":")))
    if size > MAX_PROPERTIES_BYTES:
        violations.append(FieldViolation("properties", f"at most {MAX_PROPERTIES_BYTES} bytes serialized"))
    return out, text, violations


def changes_struct_values(props: dict[str, Any]) -> bool:
    """Whether canonical form changes a value of the request's Struct: only a negative zero does."""
    for value in props.values():
        if type(value) is float:
            if value == 0.0 and math.copysign(1.0, value) < 0:
                return True
        elif type(value) is list and any(
            type(v) is float and v == 0.0 and math.copysign(1.0, v) < 0 for v in value
        ):
            return True
    return False


def check_event(
    draft: EventDraft, now_us: int, max_future_skew_s: int
) -> tuple[NewEvent | None, list[FieldViolation]]:
    """The event to store, or the violations that reject it."""
    violations: list[FieldViolation] = []
    if draft.timestamp_us > now_us + max_future_skew_s * 1_000_000:
        violations.append(
            FieldViolation("timestamp", f"must not be more than {max_future_skew_s} s in the future")
        )
    if (draft.external_cost_amount is None) != (draft.external_cost_currency is None):
        violations.append(
            FieldViolation(
                "external_cost_currency", "external_cost_amount and external_cost_currency go together"
            )
        )
    properties, properties_json, prop_violations = normalize_properties(draft.properties)
    violations += prop_violations
    if violations:
        return None, violations
    cost = draft.external_cost_amount
    event = NewEvent(
        customer_id=draft.customer_id,
        metric_key=draft.metric_key,
        timestamp_us=draft.timestamp_us,
        quantity=canonical_decimal(draft.quantity or "1"),
        idempotency_key=draft.idempotency_key,
        product_id=draft.product_id,
        subscription_id=draft.subscription_id,
        price_key=draft.price_key,
        external_cost_amount=canonical_decimal(cost) if cost is not None else None,
        external_cost_currency=draft.external_cost_currency,
        wallet_currency=draft.wallet_currency,
        properties=properties,
        properties_json=properties_json,
        properties_wire=None if changes_struct_values(draft.properties) else draft.properties_wire,
    )
    return event, []


class Ingestion:
    def __init__(self, storage: EventStorage, max_future_skew_s: int) -> None:
        self._storage = storage
        self._skew = max_future_skew_s

    def ingest(
        self,
        org: str,
        drafts: list[EventDraft | tuple[FieldViolation, ...]],
        now_us: int,
        deadline: Deadline | None = None,
    ) -> list[EventResult]:
        """One result per draft, in order. A tuple of violations stands for an event already rejected."""
        results: list[EventResult | None] = [None] * len(drafts)
        valid: list[tuple[int, NewEvent]] = []
        for i, draft in enumerate(drafts):
            if isinstance(draft, tuple):
                results[i] = EventResult(i, "REJECTED", violations=draft[:MAX_EVENT_VIOLATIONS])
                continue
            event, violations = check_event(draft, now_us, self._skew)
            if event is None:
                results[i] = EventResult(i, "REJECTED", violations=tuple(violations[:MAX_EVENT_VIOLATIONS]))
            else:
                valid.append((i, event))
        if valid:
            outcomes: list[IngestOutcome] = self._storage.ingest(org, [e for _, e in valid], now_us, deadline)
            for (i, _), outcome in zip(valid, outcomes, strict=True):
                results[i] = EventResult(i, outcome.status, outcome.event_id)
        return [r for r in results if r is not None]
