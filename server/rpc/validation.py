"""Request validation with protovalidate: the constraints declared in the protos, as FieldViolations
with dotted paths (`events[3].timestamp`, `aggregator.filter.fields[0].operator`), worded for people
by violation_text.py (what is allowed, and a suggestion where the fix is obvious). A field breaking
several rules at once (an empty id: too short and not matching its pattern) is named once, with the
first of them: fixing it shows the next.

Two rules are not expressible there, and hold for every field of every request:
- no string (ids, names, filter values, property keys and values) may hold a NUL character, which
  PostgreSQL cannot store in text or jsonb; both databases reject it the same way;
- every `google.protobuf.Timestamp` must be one its own definition allows: seconds within years
  0001-9999 and nanos 0-999,999,999 (protovalidate compares times but does not check this; an
  out-of-range time would overflow the databases' microsecond integers, or shift by whole seconds).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any

import protovalidate
from buf.validate import validate_pb2
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from server.errors import FieldViolation, InvalidArgument
from server.rpc import violation_text

_validator = protovalidate.Validator()


def _path(violation: Any) -> str:
    parts: list[str] = []
    for element in violation.proto.field.elements:
        part = element.field_name
        subscript = element.subscript
        if subscript is not None:
            value = subscript.value
            part += f"[{value}]" if isinstance(value, int) and not isinstance(value, bool) else f"[{value!r}]"
        parts.append(part)
    return ".".join(parts)


_JSON_TYPES = {"google.protobuf.Struct", "google.protobuf.Value", "google.protobuf.ListValue"}
_NUL = "\x00"


def _json_has_nul(value: Any) -> bool:
    """Whether a Struct, Value or ListValue holds a NUL in a key or string (numbers are not read:
    json_format refuses non-finite ones, which the ingestion rules reject with their own message)."""
    name = value.DESCRIPTOR.full_name
    if name == "google.protobuf.Struct":
        return any(_NUL in k or _json_has_nul(v) for k, v in value.fields.items())
    if name == "google.protobuf.ListValue":
        return any(_json_has_nul(v) for v in value.values)
    kind = value.WhichOneof("kind")
    if kind == "string_value":
        return _NUL in value.string_value
    if kind in ("struct_value", "list_value"):
        return _json_has_nul(getattr(value, kind))
    return False


def _nul_paths(message: Message, prefix: str = "", json_checked: bool = False) -> Iterator[str]:
    """The paths of the string fields (and JSON values, unless `json_checked`) of `message` that
    contain a NUL character."""
    for field, value in message.ListFields():
        path = prefix + field.name
        items = list(enumerate(value)) if field.is_repeated else [(None, value)]
        for i, item in items:
            here = path if i is None else f"{path}[{i}]"
            if field.message_type is not None and field.message_type.full_name in _JSON_TYPES:
                if not json_checked and _json_has_nul(item):
                    yield here
            elif field.message_type is not None:
                yield from _nul_paths(item, here + ".", json_checked)
            elif field.type == FieldDescriptor.TYPE_STRING and _NUL in item:
                yield here


# google.protobuf.Timestamp's own range: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999999999Z.
TIMESTAMP_MIN_SECONDS = -62_135_596_800
TIMESTAMP_MAX_SECONDS = 253_402_300_799
_BAD_TIMESTAMP = "must be a valid timestamp between 0001-01-01 and 9999-12-31, with nanos 0-999999999"
_TIMESTAMP = "google.protobuf.Timestamp"


@functools.cache
def _timestamp_chains(descriptor: Any) -> tuple[tuple[Any, ...], ...]:
    """The chains of fields from a message type to each Timestamp inside it (JSON values hold none;
    the request types are not recursive), computed once per type: only these are visited."""
    chains: list[tuple[Any, ...]] = []
    for field in descriptor.fields:
        kind = field.message_type
        if kind is None or kind.full_name in _JSON_TYPES:
            continue
        if kind.full_name == _TIMESTAMP:
            chains.append((field,))
        else:
            chains += [(field, *rest) for rest in _timestamp_chains(kind)]
    return tuple(chains)


def _bad_timestamps(message: Message) -> Iterator[str]:
    """The paths of the Timestamps of `message` outside their defined range."""
    for chain in _timestamp_chains(message.DESCRIPTOR):
        yield from _walk_to_timestamps(message, chain, "")


def _walk_to_timestamps(message: Any, chain: tuple[Any, ...], prefix: str) -> Iterator[str]:
    field, rest = chain[0], chain[1:]
    value = getattr(message, field.name)
    if field.is_repeated:
        items: Any = enumerate(value)
    else:
        items = [(None, value)] if message.HasField(field.name) else []
    for i, item in items:
        # The path is written only where it is needed: a batch has thousands of valid timestamps.
        if rest:
            yield from _walk_to_timestamps(item, rest, _path_of(prefix, field.name, i) + ".")
        elif not (
            TIMESTAMP_MIN_SECONDS <= item.seconds <= TIMESTAMP_MAX_SECONDS and 0 <= item.nanos <= 999_999_999
        ):
            yield _path_of(prefix, field.name, i)


def _path_of(prefix: str, name: str, index: int | None) -> str:
    return f"{prefix}{name}" if index is None else f"{prefix}{name}[{index}]"


def _field_rules(root: Any, violation: Any) -> validate_pb2.FieldRules | None:
    """The rules declared on the violated field, found by walking its path from the request."""
    message, field = root, None
    for element in violation.proto.field.elements:
        if message is None or element.field_number not in message.fields_by_number:
            return None
        field = message.fields_by_number[element.field_number]
        message = field.message_type
    return None if field is None else field.GetOptions().Extensions[validate_pb2.field]


def _description(root: Any, violation: Any) -> str:
    rules = _field_rules(root, violation)
    rule_path = [element.field_name for element in violation.proto.rule.elements]
    words = violation_text.describe(rules, rule_path, violation.field_value) if rules and rule_path else None
    # A rule without words (none in today's contract: tests check every one) keeps protovalidate's.
    return words or violation.proto.message or violation.proto.rule_id


def violations(message: Message, json_checked: bool = False) -> list[FieldViolation]:
    """Every field the message gets wrong, once each, with its path and what is allowed in words.

    `json_checked`: the logic checks the message's JSON values (Struct, Value) for NUL characters
    itself (ingestion walks every property anyway), so they are not walked here.
    """
    found: dict[str, FieldViolation] = {}
    for v in _validator.collect_violations(message):
        path = _path(v)
        if path not in found:
            found[path] = FieldViolation(path, _description(message.DESCRIPTOR, v))
    # No 0x00 byte in the encoding: no string holds a NUL (a cheap look before a walk of every field).
    if b"\x00" in message.SerializeToString():
        for path in _nul_paths(message, "", json_checked):
            found.setdefault(path, FieldViolation(path, "must not contain NUL characters"))
    for path in _bad_timestamps(message):  # not a time at all: this says more than a rule it breaks
        found[path] = FieldViolation(path, _BAD_TIMESTAMP)
    return list(found.values())


def check(message: Message) -> None:
    """Raise InvalidArgument naming every violated field, if any."""
    found = violations(message)
    if found:
        raise InvalidArgument.of(found)
