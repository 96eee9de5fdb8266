"""Cursors outlive a deploy: a client holding a page cursor (or an export resume token) across a
restart or an upgrade must still have it accepted. The bytes a cursor and a fingerprint are made of
are pinned here (values written by the implementation of 2026-12-01, before its encoders were made
once per process), so a change to their encoding fails this test, not clients."""

from __future__ import annotations

from server.logic.cursors import CursorCodec, fingerprint

FILTERS = {"customer_id": None, "metric_keys": ["a", "é"], "x": 1}
POSITION = [1796101200000000, "evt_abc", 1796101200000001]
PINNED_FINGERPRINT = "acef976cd3e380b7abb238f4eff3295a"
PINNED_CURSOR = (
    "eyJiIjoiYWNlZjk3NmNkM2UzODBiN2FiYjIzOGY0ZWZmMzI5NWEiLCJwIjpbMTc5NjEwMTIwMDAwMDAwMCwiZXZ0X2FiYyIs"
    "MTc5NjEwMTIwMDAwMDAwMV19.PpP66z57ep1JOiUcIeS516VnnUs2OUgQpethuzeQAXA"
)


def test_fingerprint_and_cursor_bytes_are_those_issued_before() -> None:
    bound = fingerprint("org_big", "ListUsageEvents", FILTERS)
    assert bound == PINNED_FINGERPRINT
    assert CursorCodec("s").encode(bound, POSITION) == PINNED_CURSOR


def test_a_cursor_issued_before_is_accepted() -> None:
    assert CursorCodec("s").decode(PINNED_CURSOR, PINNED_FINGERPRINT) == POSITION
