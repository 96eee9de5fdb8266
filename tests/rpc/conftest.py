"""Fixtures of the RPC tests: a real server on each backend (`db_url` runs every test on SQLite and
PostgreSQL), reached through a real channel, and clients acting for two organizations."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from grpc_harness import Client, Harness


@pytest.fixture
def harness(db_url: str) -> Iterator[Harness]:
    h = Harness.start(db_url)
    try:
        yield h
    finally:
        h.close()


@pytest.fixture
def cached_harness(db_url: str) -> Iterator[Harness]:
    """A server that keeps AggregateUsage answers in its answer cache (8 MB)."""
    h = Harness.start(db_url, aggregate_cache_mb=8)
    try:
        yield h
    finally:
        h.close()


@pytest.fixture
def org_a(harness: Harness) -> Client:
    return harness.client("org_a")


@pytest.fixture
def org_b(harness: Harness) -> Client:
    return harness.client("org_b")
