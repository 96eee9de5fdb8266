"""A request body's JSON checked against the message it will be parsed into, as strictly as
grpc-gateway's protojson reads it, before `json_format` sees it.

Python's `json_format` is lenient where Go's protojson is not: it walks a string given for a message
field as if it were an object (so `"x"` for `aggregator` becomes an empty aggregator), and its errors
for a wrong type are Python's own words (`expected string or bytes-like object, got 'int'`). This walk
refuses a value of the wrong JSON type with the dotted path of the field (`events[0].customer_id`) and
a plain problem (`expected a string`). Unknown fields are left alone (the gateway ignores them);
`null` is accepted anywhere, as protojson does (the field keeps its default).
"""

from __future__ import annotations

import math
import re
from typing import Any

from google.protobuf import descriptor, timestamp_pb2

FD = descriptor.FieldDescriptor
Field = Any  # descriptor.FieldDescriptor (see transcode.Field)

# RFC 3339 as protojson accepts it: a date, `T`, a time with up to 9 fractional digits, and a zone.
RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$")
TIMESTAMP_PROBLEM = "must be an RFC 3339 timestamp such as 2026-11-01T00:00:00Z or 2026-11-01T01:00:00+01:00"
_INT = re.compile(r"^-?[0-9]+$")
_NUMBER_WORDS = {"NaN", "Infinity", "-Infinity"}
# The range of each integer type; 64-bit ones are strings in JSON but must fit all the same.
INT_RANGES = {
    **dict.fromkeys((FD.TYPE_INT32, FD.TYPE_SINT32, FD.TYPE_SFIXED32), (-(2**31), 2**31 - 1)),
    **dict.fromkeys((FD.TYPE_INT64, FD.TYPE_SINT64, FD.TYPE_SFIXED64), (-(2**63), 2**63 - 1)),
    **dict.fromkeys((FD.TYPE_UINT32, FD.TYPE_FIXED32), (0, 2**32 - 1)),
    **dict.fromkeys((FD.TYPE_UINT64, FD.TYPE_FIXED64), (0, 2**64 - 1)),
}
# Wrapper types: their JSON is the JSON of their `value`.
WRAPPERS = {
    "google.protobuf.StringValue",
    "google.protobuf.BytesValue",
    "google.protobuf.BoolValue",
    "google.protobuf.Int32Value",
    "google.protobuf.Int64Value",
    "google.protobuf.UInt32Value",
    "google.protobuf.UInt64Value",
    "google.protobuf.FloatValue",
    "google.protobuf.DoubleValue",
}


def is_timestamp(text: str) -> bool:
    """Whether `text` is an RFC 3339 timestamp that protobuf's Timestamp accepts (a real date too)."""
    if not RFC3339.fullmatch(text):
        return False
    try:
        timestamp_pb2.Timestamp().FromJsonString(text)
    except ValueError:
        return False
    return True


class ShapeError(ValueError):
    """A JSON value of the wrong type for its field."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


def check_message(document: Any, message_type: Any, path: str) -> None:
    """`document` must be a JSON object whose known fields have values of the right JSON types."""
    if not isinstance(document, dict):
        raise ShapeError(path, "expected a JSON object")
    for key, value in document.items():
        field = field_by_name(message_type, key)
        if field is None or value is None:
            continue
        check_field(value, field, f"{path}.{field.name}" if path else field.name)


def check_field(value: Any, field: Field, path: str) -> None:
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        if not isinstance(value, dict):
            raise ShapeError(path, "expected a JSON object")
        value_field = field.message_type.fields_by_name["value"]
        for key, item in value.items():
            if item is not None:
                _check_single(item, value_field, f"{path}[{key!r}]")
        return
    if field.is_repeated:
        if not isinstance(value, list):
            raise ShapeError(path, "expected a JSON array")
        for i, item in enumerate(value):
            if item is None:
                raise ShapeError(f"{path}[{i}]", "null is not allowed in a list")
            _check_single(item, field, f"{path}[{i}]")
        return
    _check_single(value, field, path)


def _check_single(value: Any, field: Field, path: str) -> None:
    if field.type == FD.TYPE_MESSAGE:
        _check_message_value(value, field.message_type, path)
    else:
        _check_scalar(value, field.type, field, path)


def _check_message_value(value: Any, message_type: Any, path: str) -> None:
    name = message_type.full_name
    if name == "google.protobuf.Value":
        _check_json_numbers(value, path)  # any JSON value whose numbers are doubles
        return
    if name == "google.protobuf.ListValue":
        if not isinstance(value, list):
            raise ShapeError(path, "expected a JSON array")
        _check_json_numbers(value, path)
        return
    if name in ("google.protobuf.Struct", "google.protobuf.Any", "google.protobuf.Empty"):
        if not isinstance(value, dict):
            raise ShapeError(path, "expected a JSON object")
        if name == "google.protobuf.Struct":
            _check_json_numbers(value, path)
        return
    if name == "google.protobuf.Timestamp":
        if not isinstance(value, str) or not is_timestamp(value):
            raise ShapeError(path, TIMESTAMP_PROBLEM)
        return
    if name in ("google.protobuf.Duration", "google.protobuf.FieldMask"):
        if not isinstance(value, str):
            raise ShapeError(path, "expected a string")
        return
    if name in WRAPPERS:
        inner = message_type.fields_by_name["value"]
        _check_scalar(value, inner.type, inner, path)
        return
    check_message(value, message_type, path)


def _check_json_numbers(value: Any, path: str) -> None:
    """The numbers of a free-form JSON value (Struct, Value, ListValue) are doubles: an integer
    beyond a double's range (400 digits) has none."""
    if isinstance(value, dict):
        for key, item in value.items():
            _check_json_numbers(item, f"{path}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _check_json_numbers(item, f"{path}[{i}]")
    elif isinstance(value, int) and not isinstance(value, bool):
        try:
            float(value)
        except OverflowError:
            raise ShapeError(path, "a number out of the range of a double") from None


def _check_scalar(value: Any, kind: int, field: Field, path: str) -> None:
    if kind == FD.TYPE_STRING:
        if not isinstance(value, str):
            raise ShapeError(path, "expected a string")
    elif kind == FD.TYPE_BYTES:
        if not isinstance(value, str):
            raise ShapeError(path, "expected a base64 string")
    elif kind == FD.TYPE_BOOL:
        if not isinstance(value, bool):
            raise ShapeError(path, "expected true or false")
    elif kind in INT_RANGES:
        _check_integer(value, kind, path)
    elif kind in (FD.TYPE_DOUBLE, FD.TYPE_FLOAT):
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise ShapeError(path, "expected a number")
        if isinstance(value, str) and value not in _NUMBER_WORDS:
            try:
                float(value)
            except ValueError:
                raise ShapeError(path, "expected a number") from None
    elif kind == FD.TYPE_ENUM:
        names = field.enum_type.values_by_name
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise ShapeError(path, f"expected one of {', '.join(names)}")
        if isinstance(value, str) and value not in names:
            raise ShapeError(path, f"expected one of {', '.join(names)}")


def _check_integer(value: Any, kind: int, path: str) -> None:
    if isinstance(value, bool):
        raise ShapeError(path, "expected an integer")
    if isinstance(value, float):
        if not math.isfinite(value) or not value.is_integer():
            raise ShapeError(path, "expected an integer")
        value = int(value)
    elif isinstance(value, str):  # protojson takes 64-bit integers as strings too
        if not _INT.fullmatch(value):
            raise ShapeError(path, "expected an integer")
        value = int(value)
    elif not isinstance(value, int):
        raise ShapeError(path, "expected an integer")
    low, high = INT_RANGES[kind]
    if not low <= value <= high:
        raise ShapeError(path, f"out of range ({low} to {high})")


def field_by_name(message_type: Any, key: str) -> Field | None:
    """A field by its proto name or its lowerCamelCase JSON name."""
    field = message_type.fields_by_name.get(key)
    if field is not None:
        return field
    for f in message_type.fields:
        if f.json_name == key:
            return f
    return None
