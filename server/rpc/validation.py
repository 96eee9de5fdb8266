"""Request validation with protovalidate: the constraints declared in the protos, as FieldViolations
with dotted paths (`events[3].timestamp`, `aggregator.filter.fields[0].operator`)."""

from __future__ import annotations

from typing import Any

import protovalidate
from google.protobuf.message import Message

from server.errors import FieldViolation, InvalidArgument

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


def violations(message: Message) -> list[FieldViolation]:
    """Every constraint the message breaks, with the path of the field and the rule's message."""
    return [
        FieldViolation(_path(v), v.proto.message or v.proto.rule_id)
        for v in _validator.collect_violations(message)
    ]


def check(message: Message) -> None:
    """Raise InvalidArgument naming every violated field, if any."""
    found = violations(message)
    if found:
        raise InvalidArgument.of(found)
