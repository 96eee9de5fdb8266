"""Transcoding between HTTP and protobuf, the way grpc-gateway does it.

Request: the body (when the route has one: `*` for the whole message, else one top-level field) is
checked for JSON types (`json_shape`) and parsed with `json_format` (proto and lowerCamelCase names,
unknown fields ignored); a PATCH without `update_mask` updates the fields its body names; then path
variables, then query parameters are set by field path (`a.b`, either spelling). Query parameters
that name no field, or a field the path or body already binds, are ignored. Repeated fields take
repeated parameters; Timestamps are RFC 3339; a value that does not parse is `BadParameter`, which
the gateway answers 400 INVALID_ARGUMENT naming the parameter.

Response: `json_format` with proto field names, fields without presence always printed.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from google.protobuf import descriptor, json_format
from google.protobuf.message import Message

from server.errors import clip
from server.gateway import json_shape
from server.gateway.json_shape import field_by_name
from server.gateway.routes import Route

FD = descriptor.FieldDescriptor
# Descriptors typed loosely: the stubs make message_type/enum_type optional and the upb classes
# differ from the pure-Python ones, which only adds casts to code that checks the type first.
Field = Any
MessageType = Any
_INT = re.compile(r"^[+-]?[0-9]+$")
_FLOAT = re.compile(r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$|^(NaN|[+-]?Infinity)$")
_BOOL = {"true": True, "1": True, "t": True, "false": False, "0": False, "f": False}
# The longest parameter name or path an error repeats (a field path into a Struct may be any key).
MAX_PARAMETER_ECHO = 128
# Well-known message types that a query parameter or path variable sets from their JSON string form.
SCALAR_MESSAGES = {
    "google.protobuf.Timestamp",
    "google.protobuf.Duration",
    "google.protobuf.FieldMask",
    *json_shape.WRAPPERS,
}


class BadParameter(ValueError):
    """A path variable, query parameter or body that does not fit the request message. The
    parameter and the problem (which may quote the value) are clipped: an answer never echoes more
    than a part of what it was sent."""

    def __init__(self, parameter: str, problem: str, *, where: str = "query parameter") -> None:
        parameter, problem = clip(parameter, MAX_PARAMETER_ECHO), clip(problem)
        super().__init__(f"invalid value for {where} {parameter}: {problem}")
        self.parameter = parameter
        self.problem = problem


def resolve(message: Message, path: str) -> tuple[Message, Field] | None:
    """The message holding the last field of a dotted path, and that field; None if it names nothing."""
    names = path.split(".")
    for name in names[:-1]:
        field = field_by_name(message.DESCRIPTOR, name)
        if field is None or field.type != FD.TYPE_MESSAGE or _is_repeated(field):
            return None
        if field.message_type.full_name in SCALAR_MESSAGES:
            return None
        message = getattr(message, field.name)
    field = field_by_name(message.DESCRIPTOR, names[-1])
    return None if field is None else (message, field)


def canonical_path(message_descriptor: MessageType, path: str) -> str | None:
    """`aggregatorFilter.aggregatorId` -> `aggregator_filter.aggregator_id`; None if it names nothing."""
    out, current = [], message_descriptor
    for i, name in enumerate(path.split(".")):
        field = field_by_name(current, name) if current is not None else None
        if field is None:
            return None
        out.append(field.name)
        if i < len(path.split(".")) - 1:
            current = field.message_type
    return ".".join(out)


def _is_repeated(field: Field) -> bool:
    return bool(field.is_repeated)


def scalar(field: Field, text: str) -> Any:
    """A string from the URL as the Python value of a scalar field; ValueError when it does not fit."""
    t = field.type
    if t == FD.TYPE_STRING:
        return text
    if t in json_shape.INT_RANGES:
        if not _INT.fullmatch(text):
            raise ValueError(f"{text!r} is not an integer")
        number = int(text)
        low, high = json_shape.INT_RANGES[t]
        if not low <= number <= high:
            raise ValueError(f"{text} is out of range ({low} to {high})")
        return number
    if t in (FD.TYPE_DOUBLE, FD.TYPE_FLOAT):
        if not _FLOAT.fullmatch(text):
            raise ValueError(f"{text!r} is not a number")
        return float(text)
    if t == FD.TYPE_BOOL:
        if text.lower() not in _BOOL:
            raise ValueError(f"{text!r} is not true or false")
        return _BOOL[text.lower()]
    if t == FD.TYPE_ENUM:
        value = field.enum_type.values_by_name.get(text)
        if value is None:
            raise ValueError(f"{text!r} is not one of {', '.join(field.enum_type.values_by_name)}")
        return value.number
    if t == FD.TYPE_BYTES:
        padded = text + "=" * (-len(text) % 4)
        try:
            return base64.urlsafe_b64decode(padded.replace("+", "-").replace("/", "_"))
        except ValueError:
            raise ValueError("not base64") from None
    raise ValueError("this field cannot be set from a URL")


def _scalar_message(target: Message, text: str) -> None:
    """Set a well-known type from its JSON string form (`2026-01-01T00:00:00Z`, `a,b`, `1.5s`)."""
    name = target.DESCRIPTOR.full_name
    if name == "google.protobuf.FieldMask":  # accept `unit_name` as well as the JSON form `unitName`
        for path in filter(None, text.split(",")):
            snake = path if "_" in path else re.sub(r"([A-Z])", lambda m: "_" + m.group(1).lower(), path)
            target.paths.append(snake)  # type: ignore[attr-defined]
        return
    if name == "google.protobuf.Timestamp":
        if not json_shape.is_timestamp(text):
            hint = " (in a URL, write + as %2B)" if " " in text else ""
            raise ValueError(json_shape.TIMESTAMP_PROBLEM + hint)
        target.FromJsonString(text)  # type: ignore[attr-defined]
        return
    if name == "google.protobuf.Duration":
        try:
            target.FromJsonString(text)  # type: ignore[attr-defined]
        except ValueError:
            raise ValueError("must be a duration in seconds such as 1.5s") from None
        return
    value = scalar(target.DESCRIPTOR.fields_by_name["value"], text)
    target.value = value  # type: ignore[attr-defined]


def set_field(message: Message, field: Field, values: Sequence[str]) -> None:
    """Set a scalar or well-known-type field (repeated or not) from URL strings; ValueError if bad."""
    repeated = _is_repeated(field)
    if not repeated and len(values) > 1:
        raise ValueError(f"expected one value, got {len(values)}")
    if field.type == FD.TYPE_MESSAGE:
        if field.message_type.full_name not in SCALAR_MESSAGES:
            raise ValueError("this field cannot be set from a URL")
        for text in values:
            target = getattr(message, field.name).add() if repeated else getattr(message, field.name)
            _scalar_message(target, text)
        return
    converted = [scalar(field, text) for text in values]
    if repeated:
        getattr(message, field.name).extend(converted)
    else:
        setattr(message, field.name, converted[0])


def apply_body(request: Message, route: Route, body: bytes) -> Any:
    """Parse the JSON body into the whole request (`*`) or the route's body field; the parsed JSON."""
    if not route.body:
        return None
    try:
        document = json.loads(body) if body.strip() else {}
    except (ValueError, RecursionError) as exc:
        problem = "not JSON"
        if isinstance(exc, json.JSONDecodeError):  # where it broke, in words rather than Python's
            problem = (
                f"not valid JSON: {exc.msg[0].lower()}{exc.msg[1:]} at line {exc.lineno}, column {exc.colno}"
            )
        raise BadParameter("body", problem, where="request") from None
    try:
        if route.body == "*":
            json_shape.check_message(document, request.DESCRIPTOR, "")
        else:
            json_shape.check_field(document, request.DESCRIPTOR.fields_by_name[route.body], route.body)
    except json_shape.ShapeError as exc:
        raise BadParameter(
            exc.path or "body", exc.problem, where="body field" if exc.path else "request"
        ) from None
    except RecursionError:
        raise BadParameter("body", "nested too deeply", where="request") from None
    wrapped = document if route.body == "*" else {route.body: document}
    try:
        json_format.ParseDict(wrapped, request, ignore_unknown_fields=True)
    except json_format.ParseError as exc:
        raise BadParameter("body", str(exc), where="request") from None
    except (ValueError, TypeError, AttributeError, RecursionError, OverflowError):
        raise BadParameter("body", "does not match the request message", where="request") from None
    return document


def apply_path(request: Message, bound: Mapping[str, str]) -> None:
    """Set the fields named by the path template's variables."""
    for path, text in bound.items():
        found = resolve(request, path)
        if found is None:  # the template names a field the message lacks: a bad annotation
            raise LookupError(f"path variable {path} names no field of {request.DESCRIPTOR.full_name}")
        holder, field = found
        try:
            set_field(holder, field, [text])
        except ValueError as exc:
            raise BadParameter(path, str(exc), where="path variable") from None


def apply_query(request: Message, route: Route, query: Sequence[tuple[str, str]]) -> None:
    """Set fields from query parameters; unknown names and fields bound elsewhere are ignored."""
    bound = set(route.path_fields)
    if route.body == "*":
        return  # the body is the whole message: grpc-gateway binds no query parameter
    grouped: dict[str, list[str]] = {}
    for name, text in query:
        grouped.setdefault(name, []).append(text)
    for name, texts in grouped.items():
        path = canonical_path(request.DESCRIPTOR, name)
        if path is None or _is_bound(path, bound, route.body):
            continue
        found = resolve(request, path)
        if found is None:
            continue
        holder, field = found
        try:
            set_field(holder, field, texts)
        except ValueError as exc:
            raise BadParameter(name, str(exc)) from None


def _is_bound(path: str, path_fields: set[str], body: str) -> bool:
    if body and (path == body or path.startswith(body + ".")):
        return True
    return any(path == p or path.startswith(p + ".") or p.startswith(path + ".") for p in path_fields)


def build_request(
    route: Route, bound: Mapping[str, str], query: Sequence[tuple[str, str]], body: bytes
) -> Message:
    """The request message of an HTTP request: body first, then path variables, then the query."""
    request = route.input_class()
    document = apply_body(request, route, body)
    apply_path(request, bound)
    apply_query(request, route, query)
    fill_update_mask(request, route, document)
    return request


def fill_update_mask(request: Message, route: Route, document: Any) -> None:
    """grpc-gateway's patch feature: a PATCH whose body is one field, without an `update_mask` in the
    query, updates just the fields its body names (their top-level names; a nested message such as
    `filter` is replaced whole). An empty mask would replace every field."""
    mask_field = request.DESCRIPTOR.fields_by_name.get("update_mask")
    if (
        route.http_method != "PATCH"
        or route.body in ("", "*")
        or mask_field is None
        or mask_field.message_type is None
        or mask_field.message_type.full_name != "google.protobuf.FieldMask"
        or not isinstance(document, dict)
    ):
        return
    mask = request.update_mask  # type: ignore[attr-defined]
    if mask.paths:
        return
    body_type = request.DESCRIPTOR.fields_by_name[route.body].message_type
    for key in document:
        field = field_by_name(body_type, key)
        if field is not None and field.name not in mask.paths:
            mask.paths.append(field.name)


def to_json(message: Message) -> str:
    """A message as the gateway's JSON: proto field names, fields without presence always printed,
    integral doubles written as integers (`200`, not `200.0`), as grpc-gateway's protojson does."""
    return json.dumps(_integral_floats_as_ints(to_dict(message)), ensure_ascii=False)


_SAFE_INT = 2**53


def _integral_floats_as_ints(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer() and abs(value) < _SAFE_INT:
        return int(value)
    if isinstance(value, dict):
        return {k: _integral_floats_as_ints(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_integral_floats_as_ints(v) for v in value]
    return value


def to_dict(message: Message) -> dict[str, Any]:
    return json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
