"""INVALID_ARGUMENT messages a person can act on (server/rpc/violation_text.py).

Every protovalidate rule declared in the usage.v1 contract is broken on purpose, one at a time, and
its message must say what is allowed in words: no regex, no empty entry in a list of choices, the
field named once. Then the examples a user met, through a real channel: `group_by: "region"`,
`quantity: "abc"`, `metric: "sum"`, an empty customer id.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from buf.validate import validate_pb2
from google.protobuf import descriptor, field_mask_pb2, message_factory, struct_pb2
from google.protobuf.message import Message
from grpc_harness import Client, expect_invalid, ts
from usage.v1 import (
    catalog_pb2,
    catalog_service_pb2,
    corrections_service_pb2,
    events_pb2,
    pagination_pb2,
    usage_service_pb2,
)
from usage.v1 import usage_service_pb2 as pb

from server.errors import InvalidArgument
from server.rpc import validation, violation_text

CONTRACT = (
    usage_service_pb2,
    catalog_service_pb2,
    corrections_service_pb2,
    events_pb2,
    catalog_pb2,
    pagination_pb2,
)
FD = descriptor.FieldDescriptor
# What regex text looks like: anchors, character classes, quantifiers, escapes, or the word itself.
REGEX_TEXT = re.compile(r"\^|\$|\[[^\]]*-[^\]]*\]|\{\d+(,\d*)?\}|\\[.d]|\)\?|regex|pattern", re.I)
EMPTY_CHOICE = re.compile(r"\[\s*,|,\s*,|,\s*\]|\"\"")


def _messages() -> Iterator[Any]:
    def walk(message: Any) -> Iterator[Any]:
        yield message
        for nested in message.nested_types:
            yield from walk(nested)

    for module in CONTRACT:
        for message in module.DESCRIPTOR.message_types_by_name.values():
            yield from walk(message)


def _set_rules(rules: Any, prefix: str = "") -> Iterator[str]:
    """The dotted names of the rules a FieldRules sets (`string.min_len`, `repeated.items.string.max_len`)."""
    for field, value in rules.ListFields():
        if field.name == "ignore":  # when rules apply (IGNORE_ALWAYS: never), not a rule to break
            continue
        if field.name == "cel":  # custom rules, each by its id
            yield from (f"cel.{rule.id}" for rule in value)
        elif field.type == FD.TYPE_MESSAGE and field.message_type.full_name.startswith("buf.validate."):
            yield from _set_rules(value, f"{prefix}{field.name}.")
        else:
            yield prefix + field.name


def _contract_rules() -> list[tuple[Any, Any, str]]:
    found = []
    for message in _messages():
        for field in message.fields:
            rules = field.GetOptions().Extensions[validate_pb2.field]
            for rule in _set_rules(rules):
                found.append((message, field, rule))
    return found


RULES = _contract_rules()


def _not_matching(pattern: str, max_len: int) -> str:
    for candidate in ("region", "abc", "a b", "!", "x" * 65, "eur", "2,5"):
        if not re.search(pattern, candidate) and len(candidate) <= max_len:
            return candidate
    raise AssertionError(f"no candidate breaks {pattern}")


# A value breaking each custom (CEL) rule of the contract, by rule id: a new one needs its own here.
CEL_BREAKING: dict[str, Any] = {
    "filter_value.size": struct_pb2.Value(string_value="x" * 4097),
    "update_mask.size": field_mask_pb2.FieldMask(paths=["name"] * 17),
}


def _breaking(field: Any, rule: str) -> tuple[Any, bool]:
    """A value of `field` that breaks `rule` (the item, for a repeated field's items rule), and
    whether it is one item of a list."""
    if rule.startswith("cel."):
        assert rule[4:] in CEL_BREAKING, f"add a value breaking {rule} to CEL_BREAKING"
        return CEL_BREAKING[rule[4:]], False
    rules = field.GetOptions().Extensions[validate_pb2.field]
    *owner_path, name = rule.split(".")
    owner: Any = rules
    for part in owner_path:
        owner = getattr(owner, part)
    item = owner_path[:2] == ["repeated", "items"]
    if name == "min_len":
        return "x" * (owner.min_len - 1), item
    if name == "max_len":
        return "a" * (owner.max_len + 1), item
    if name == "pattern":
        return _not_matching(owner.pattern, rules.string.max_len or 1000), item
    if name == "in":
        return "something-else", item
    if name in ("gte", "gt") and owner_path == ["timestamp"]:
        return {"seconds": getattr(owner, name).seconds - 1}, item
    if name in ("gte", "gt"):
        return getattr(owner, name) - 1, item
    if name in ("lte", "lt"):
        return getattr(owner, name) + 1, item
    if name == "min_items":
        return [], False
    if name == "max_items":
        return ["x"] * (owner.max_items + 1), False
    if name == "unique":
        return ["x", "x"], False
    raise AssertionError(f"no breaking value for {rule}")


def _with_value(message_type: Any, field: Any, value: Any, item: bool) -> Any:
    message = message_factory.GetMessageClass(message_type)()
    target = getattr(message, field.name)
    if isinstance(value, Message):
        target.CopyFrom(value)
    elif field.type == FD.TYPE_MESSAGE and field.message_type.full_name == "google.protobuf.Timestamp":
        target.seconds = value["seconds"]
    elif field.is_repeated and field.type == FD.TYPE_MESSAGE:
        for _ in value:
            target.add()
    elif field.is_repeated:
        target.extend([value] if item else value)
    else:
        setattr(message, field.name, value)
    return message


def assert_in_words(path: str, description: str) -> None:
    assert description, path
    assert not REGEX_TEXT.search(description), (path, description)
    assert not EMPTY_CHOICE.search(description), (path, description)
    message = InvalidArgument.field(path, description).message
    assert len(re.findall(rf"(?<![\w.\[]){re.escape(path)}(?![\w\[])", message)) == 1, message


def test_the_contract_declares_rules_of_every_kind_worded_here() -> None:
    assert len(RULES) > 60
    kinds = {rule.rsplit(".", 1)[-1] for _, _, rule in RULES}
    assert {
        "required",
        "min_len",
        "max_len",
        "pattern",
        "in",
        "gte",
        "lte",
        "min_items",
        "max_items",
    } <= kinds
    patterns = {
        field.GetOptions().Extensions[validate_pb2.field].string.pattern
        for _, field, rule in RULES
        if rule == "string.pattern"
    }
    assert patterns <= set(violation_text.PATTERNS), patterns - set(violation_text.PATTERNS)


@pytest.mark.parametrize(
    ("message_type", "field", "rule"),
    RULES,
    ids=[f"{m.name}.{f.name}:{r}" for m, f, r in RULES],
)
def test_every_rule_of_the_contract_is_broken_with_a_message_in_words(
    message_type: Any, field: Any, rule: str
) -> None:
    if rule == "required":
        message, path = message_factory.GetMessageClass(message_type)(), field.name
    else:
        value, item = _breaking(field, rule)
        message = _with_value(message_type, field, value, item)
        path = f"{field.name}[0]" if item else field.name
    found = validation.violations(message)
    assert [v.field for v in found].count(path) == 1, (rule, found[:5])  # once, even if two rules break
    for violation in found:
        assert_in_words(violation.field, violation.description)


SINCE = ts("2026-01-01T00:00:00Z")


@pytest.mark.parametrize(
    ("rpc", "request_", "field", "expected"),
    [
        (
            "AggregateUsage",
            pb.AggregateUsageRequest(bucket="day", since=SINCE, group_by="region"),
            "group_by",
            'did you mean "dim:region"?',
        ),
        (
            "AggregateUsage",
            pb.AggregateUsageRequest(bucket="day", since=SINCE, metric="sum"),
            "metric",
            'must be "count" or "sum_quantity", or empty for the default; did you mean "sum_quantity"?',
        ),
        (
            "AggregateUsage",
            pb.AggregateUsageRequest(bucket="days", since=SINCE),
            "bucket",
            'must be "hour", "day", "week" or "month"; did you mean "day"?',
        ),
        (
            "AggregateUsage",
            pb.AggregateUsageRequest(bucket="day", since=SINCE, top=-1),
            "top",
            "must be 0 or more",
        ),
        (
            "ListCustomerUsageEvents",
            pb.ListCustomerUsageEventsRequest(take=500),
            "take",
            "must be between 0 and 100",
        ),
    ],
    ids=["group_by", "metric", "bucket", "top", "take"],
)
def test_query_errors_over_a_real_channel(
    org_a: Client, rpc: str, request_: Any, field: str, expected: str
) -> None:
    got = expect_invalid(getattr(org_a.usage, rpc), request_, field)
    assert dict(got.violations)[field].endswith(expected), got.violations
    assert got.message.startswith(f"invalid {got.fields[0]}: ")
    for path, text in got.violations:
        assert_in_words(path, text)


def test_rejected_events_say_what_is_allowed(org_a: Client) -> None:
    bad = events_pb2.UsageEventInput(
        customer_id="", metric_key="api_call", quantity="abc", wallet_currency="eur"
    )
    bad.timestamp.CopyFrom(ts("2026-01-01T00:00:00Z"))
    comma = events_pb2.UsageEventInput(customer_id="cus_1", metric_key="api_call", quantity="2,5")
    comma.timestamp.CopyFrom(ts("2026-01-01T00:00:00Z"))
    first, second = org_a.ingest(bad, comma)
    assert first.status == second.status == "REJECTED"
    described = {v.field: v.description for v in first.violations}
    assert [v.field for v in first.violations].count("customer_id") == 1  # was two messages
    assert described["customer_id"] == "must not be empty"
    assert described["quantity"].startswith("must be a decimal number such as 1, 2.5 or -0.25")
    assert described["wallet_currency"].endswith('did you mean "EUR"?')
    assert [(v.field, v.description.rsplit("; ", 1)[-1]) for v in second.violations] == [
        ("quantity", 'did you mean "2.5"?')
    ]
    for v in [*first.violations, *second.violations]:
        assert_in_words(v.field, v.description)


def test_checks_made_outside_the_contract_say_what_is_allowed_in_words(org_a: Client) -> None:
    """Metric keys in filters and property keys are checked by the service, not by protovalidate:
    their messages are in words too."""
    got = expect_invalid(
        org_a.usage.ListUsageEvents,
        pb.ListUsageEventsRequest(metric_key=["api_call,bad key!"]),
        "metric_key[0]",
    )
    assert dict(got.violations)["metric_key[0]"] == (
        "invalid metric key 'bad key!': a metric key is 1 to 128 letters, digits or the characters _ . : / -"
    )
    event = events_pb2.UsageEventInput(customer_id="cus_1", metric_key="api_call", quantity="1")
    event.timestamp.CopyFrom(ts("2026-01-01T00:00:00Z"))
    event.properties.update({"bad key": 1})
    (result,) = org_a.ingest(event)
    assert result.status == "REJECTED"
    assert [(v.field, v.description) for v in result.violations] == [
        (
            "properties",
            "invalid key 'bad key': a property key is 1 to 64 letters, digits or the characters _ . -",
        )
    ]
    for path, text in [*got.violations, *((v.field, v.description) for v in result.violations)]:
        assert_in_words(path, text)
