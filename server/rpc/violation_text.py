"""Protovalidate violations in words a person can act on.

protovalidate's own messages are written for the rule, not for the caller: a pattern rule answers
``does not match regex pattern `^(|none|metric_key|dim:...)$` ``, an `in` rule lists an empty string
as `[, count, sum_quantity]`. Here each rule of the contract gets a sentence saying what is allowed,
read from the rule's own values (lengths, bounds, lists), and each pattern a sentence of its own
(`PATTERNS`, keyed by the pattern text: a new pattern in the protos without words fails
tests/rpc/test_validation_messages.py). Where the fix is obvious the sentence ends with a suggestion:
`group_by: "region"` gets `did you mean "dim:region"?`, `metric: "sum"` gets `did you mean
"sum_quantity"?`.

The field itself is not named here: the violation carries its path, and the error message puts the
two together once (`invalid group_by: must be ...`).
"""

from __future__ import annotations

import datetime as dt
import difflib
import re
from collections.abc import Callable
from typing import Any

from buf.validate import validate_pb2

# Suggestions are only offered for values short enough to be a typo, and clipped like any echo.
_MAX_SUGGESTED = 80
_KEY = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_DECIMAL = re.compile(r"^-?[0-9]{1,24}(\.[0-9]{1,12})?$")
_ID_CHARACTERS = "letters, digits and the characters _ . : @ -"
_KEY_WORDS = "1 to 64 letters, digits or the characters _ . -"
_DECIMAL_WORDS = "a decimal number such as 1, 2.5 or -0.25 (at most 24 digits before the point and 12 after)"


def _dim_suggestion(value: str) -> str | None:
    """`region` -> `dim:region`; `metric-key` -> `metric_key`; `dim:` with a bad key: no guess."""
    if value.startswith("dim:"):
        return None
    close = difflib.get_close_matches(value.lower(), ["none", "metric_key"], n=1, cutoff=0.7)
    if close:
        return close[0]
    return f"dim:{value}" if _KEY.fullmatch(value) else None


def _decimal_suggestion(value: str) -> str | None:
    """`2,5` -> `2.5`, ` 3 ` -> `3`, `+4` -> `4`."""
    guess = value.strip().replace(",", ".").removeprefix("+")
    return guess if guess != value and _DECIMAL.fullmatch(guess) else None


def _currency_suggestion(value: str) -> str | None:
    guess = value.strip().upper()
    return guess if guess != value and re.fullmatch(r"[A-Z]{3}", guess) else None


def _key_suggestion(value: str) -> str | None:
    """A key with spaces: the same words joined with `_`."""
    guess = "_".join(value.split())
    return guess if guess != value and _KEY.fullmatch(guess) else None


# Each pattern of the contract, in words, with an optional guess at what the caller meant.
PATTERNS: dict[str, tuple[str, Callable[[str], str | None] | None]] = {
    "^(|none|metric_key|dim:[A-Za-z0-9_.-]{1,64})$": (
        'must be "none", "metric_key" or "dim:<key>", where <key> is ' + _KEY_WORDS,
        _dim_suggestion,
    ),
    "^[A-Za-z0-9_.:@-]+$": (f"may contain only {_ID_CHARACTERS}", None),
    "^[A-Za-z0-9_.:@-]*$": (f"may contain only {_ID_CHARACTERS} (empty: one is generated)", None),
    "^[A-Za-z0-9_.:/-]+$": (
        "may contain only letters, digits and the characters _ . : / - (no spaces, no commas: "
        "filters read commas as lists of metric keys)",
        None,
    ),
    "^[A-Za-z0-9_.-]+$": (f"must be {_KEY_WORDS}", _key_suggestion),
    "^[A-Za-z0-9_.-]*$": (f"must be empty or {_KEY_WORDS}", _key_suggestion),
    "^(-?[0-9]{1,24}(\\.[0-9]{1,12})?)?$": (
        f"must be {_DECIMAL_WORDS}, or empty for 1",
        _decimal_suggestion,
    ),
    "^-?[0-9]{1,24}(\\.[0-9]{1,12})?$": (f"must be {_DECIMAL_WORDS}", _decimal_suggestion),
    "^[A-Z]{3}$": (
        "must be an ISO 4217 currency code: three capital letters such as EUR",
        _currency_suggestion,
    ),
}


def _choices(allowed: list[str]) -> str:
    """`"a"`, `"a" or "b"`, `"a", "b" or "c"`: quoted, as they are written in JSON."""
    quoted = [f'"{a}"' for a in allowed]
    return quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} or {quoted[-1]}"


def _closest(value: str, allowed: list[str]) -> str | None:
    """The allowed value a typo most likely meant: same letters in another case, a prefix, or close."""
    by_case = [a for a in allowed if a.lower() == value.strip().lower()]
    if by_case:
        return by_case[0]
    if len(value) >= 3:
        prefixed = [a for a in allowed if a.startswith(value.lower())]
        if len(prefixed) == 1:
            return prefixed[0]
    close = difflib.get_close_matches(value.lower(), allowed, n=1, cutoff=0.6)
    return close[0] if close else None


def _with_suggestion(words: str, suggestion: str | None) -> str:
    return f'{words}; did you mean "{suggestion}"?' if suggestion else words


def _rule_holder(rules: validate_pb2.FieldRules, rule_path: list[str]) -> Any:
    """The rules message that holds the violated rule: `["string", "pattern"]` -> rules.string;
    `["repeated", "items", "string", "max_len"]` -> rules.repeated.items.string."""
    holder: Any = rules
    for name in rule_path[:-1]:
        holder = getattr(holder, name)
    return holder


def _bound(holder: Any, name: str) -> Any:
    return getattr(holder, name) if holder.HasField(name) else None


def _number_words(holder: Any) -> str:
    """`gte`/`gt`/`lte`/`lt` of an integer rule as a range."""
    low = _bound(holder, "gte")
    if low is None and (gt := _bound(holder, "gt")) is not None:
        low = gt + 1
    high = _bound(holder, "lte")
    if high is None and (lt := _bound(holder, "lt")) is not None:
        high = lt - 1
    if low is not None and high is not None:
        return f"must be between {low} and {high}"
    if low is not None:
        return f"must be {low} or more"
    if high is not None:
        return f"must be {high} or less"
    return "is out of range"


def _timestamp_words(holder: Any) -> str:
    for name, words in (("gte", "at or after"), ("gt", "after"), ("lte", "at or before"), ("lt", "before")):
        if holder.HasField(name):
            moment = dt.datetime.fromtimestamp(getattr(holder, name).seconds, dt.UTC)
            return f"must be {words} {moment:%Y-%m-%dT%H:%M:%SZ}"
    return "is out of range"


def _count(n: int, what: str) -> str:
    return f"{n} {what}" if n == 1 else f"{n} {what}s"


def _string_words(rule: str, holder: validate_pb2.StringRules, value: Any) -> str | None:
    if rule == "min_len":
        return "must not be empty" if holder.min_len == 1 else f"must be at least {holder.min_len} characters"
    if rule == "max_len":
        return f"must be at most {_count(holder.max_len, 'character')}"
    if rule == "in":
        allowed = list(getattr(holder, "in"))
        words = f"must be {_choices([a for a in allowed if a])}"
        words += ", or empty for the default" if "" in allowed else ""
        text = value if isinstance(value, str) and len(value) <= _MAX_SUGGESTED else ""
        return _with_suggestion(words, _closest(text, [a for a in allowed if a]) if text else None)
    if rule == "pattern":
        words, suggest = PATTERNS.get(holder.pattern, ("has a form that is not allowed here", None))
        text = value if isinstance(value, str) and 0 < len(value) <= _MAX_SUGGESTED else ""
        return _with_suggestion(words, suggest(text) if suggest and text else None)
    return None


def describe(rules: validate_pb2.FieldRules, rule_path: list[str], value: Any) -> str | None:
    """The words for one violated rule of a field (`rule_path`: the rule's path in FieldRules, as
    protovalidate reports it), or None for a rule this module has no words for."""
    if rule_path == ["required"]:
        return "is required"
    holder = _rule_holder(rules, rule_path)
    kind, rule = (rule_path[-2], rule_path[-1]) if len(rule_path) >= 2 else ("", rule_path[-1])
    if kind == "string":
        return _string_words(rule, holder, value)
    if kind in ("int32", "int64", "uint32", "uint64", "sint32", "sint64", "double", "float"):
        return _number_words(holder)
    if kind == "timestamp":
        return _timestamp_words(holder)
    if kind == "repeated" and rule == "min_items":
        return f"must have at least {_count(holder.min_items, 'item')}"
    if kind == "repeated" and rule == "max_items":
        return f"must have at most {_count(holder.max_items, 'item')}"
    return None
