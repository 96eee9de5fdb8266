"""canonical_decimal answers whole numbers without building a Decimal: that shortcut must give
exactly what the Decimal route gives, for every text a caller can send."""

from __future__ import annotations

from decimal import Context, Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from server.decimals import canonical_decimal


def by_decimal(text: str) -> str:
    """The definition: normalized under an 80-digit context, written without an exponent."""
    d = Decimal(text)
    return "0" if d == 0 else format(d.normalize(Context(prec=80)), "f")


@settings(max_examples=500, deadline=None, derandomize=True, database=None)
@given(st.from_regex(r"[+-]?[0-9]{1,30}(\.[0-9]{0,14})?", fullmatch=True) | st.integers(0, 10**36).map(str))
def test_every_decimal_text_is_canonicalized_as_by_decimal(text: str) -> None:
    assert canonical_decimal(text) == by_decimal(text)


@pytest.mark.parametrize(
    ("text", "canonical"),
    [("1", "1"), ("007", "7"), ("0", "0"), ("-0", "0"), ("10", "10"), ("1.50", "1.5"), ("1e3", "1000")],
)
def test_known_forms(text: str, canonical: str) -> None:
    assert canonical_decimal(text) == canonical


def test_digits_of_other_scripts_take_the_decimal_route() -> None:
    # str.isdigit() is true for Arabic-Indic digits and for "²": the shortcut must not take them.
    # (The request's constraints refuse such quantities before this; Decimal reads the first.)
    assert canonical_decimal("١٢") == by_decimal("١٢") == "12"
    with pytest.raises(ValueError):
        canonical_decimal("²")


@pytest.mark.parametrize("text", ["NaN", "Infinity", "1x", ""])
def test_non_numbers_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        canonical_decimal(text)
