"""Shared helpers of the hostile-input and reliability tests: example counts that scale with the
`nightly` hypothesis profile, a fingerprint of everything stored, and field-path checks."""

from __future__ import annotations

import os
import re

import sqlalchemy as sa
from google.protobuf.descriptor import Descriptor

from server.storage import schema

NIGHTLY = os.environ.get("HYPOTHESIS_PROFILE") == "nightly"
SCALE = 10 if NIGHTLY else 1

# Messages whose inside is free-form: a path may name any key below them.
_OPAQUE = {"google.protobuf.Struct", "google.protobuf.Value", "google.protobuf.ListValue"}
_STEP = re.compile(r"([a-z_][a-z0-9_]*)(\[[^\]]*\])?")

TABLES = (
    schema.customers,
    schema.aggregators,
    schema.aggregator_filters,
    schema.events,
    schema.idempotency_keys,
    schema.voided_events,
)


def examples(base: int) -> int:
    return base * SCALE


def is_field_path(descriptor: Descriptor, path: str) -> bool:
    """Whether `path` (`events[3].timestamp`, `aggregator.filter.fields[0].value`, `properties.k`)
    names a field of `descriptor`, walking into nested messages; any key below a Struct is accepted."""
    rest = path
    current: Descriptor | None = descriptor
    while True:
        if current is None:
            return False
        if current.full_name in _OPAQUE:
            return True
        m = _STEP.match(rest)
        if m is None:
            return False
        field = current.fields_by_name.get(m.group(1))
        if field is None:
            return False
        if m.group(2) and not field.is_repeated:
            return False
        rest = rest[m.end() :]
        if not rest:
            return True
        if not rest.startswith("."):
            return False
        rest = rest[1:]
        current = field.message_type


def fingerprint(engine: sa.Engine) -> tuple[tuple[str, int], ...]:
    """The row count of every table (all organizations): equal before and after a rejected call."""
    with engine.connect() as conn:
        return tuple(
            (t.name, int(conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one()))
            for t in TABLES
        )
