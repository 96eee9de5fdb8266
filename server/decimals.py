"""Canonical decimal strings: exact quantities travel and compare as text, never as floats."""

from __future__ import annotations

from decimal import Context, Decimal, InvalidOperation

# Wide enough for any accepted value (24 integer + 12 fractional digits, and NUMERIC(38, 12) reads):
# the default context's 28 digits would round.
_EXACT = Context(prec=80)


def canonical_decimal(value: Decimal | str | int) -> str:
    """`'001.500'` -> `'1.5'`, `Decimal('5.000000000000')` -> `'5'`, `'-0'` -> `'0'`; no exponents."""
    if type(value) is str and value.isascii() and value.isdigit() and value[0] != "0":
        return value  # a whole number without leading zeros (most quantities) is its canonical form
    try:
        d = Decimal(value) if not isinstance(value, Decimal) else value
    except InvalidOperation as exc:
        raise ValueError(f"not a decimal: {value!r}") from exc
    if not d.is_finite():
        raise ValueError(f"not a finite decimal: {value!r}")
    if d == 0:
        return "0"
    text = format(d.normalize(_EXACT), "f")
    return text


def trim_decimal(text: str) -> str:
    """Canonical form of a plain decimal text as databases print it (`'5.000000000000'` -> `'5'`,
    `'-0.500'` -> `'-0.5'`): a string operation, no Decimal built (aggregates trim thousands)."""
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    if text == "-0":
        return "0"
    return text
