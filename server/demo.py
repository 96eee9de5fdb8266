"""The demo data set of `serve --demo`: three organizations, customers with skewed usage, aggregators
with filters, and ~30,000 events over the last 90 days. Deterministic (seeded) and loaded once: a
second start finds it and loads nothing."""

from __future__ import annotations

import random
import time
from typing import Any

from server.domain import Aggregator, AggregatorFilter, Condition, Customer, NewEvent, PropertyFilter
from server.storage.sql_storage import SqlStorage

DEMO_ORG = "org_demo"
ORGS = {DEMO_ORG: 24_000, "org_acme": 4_000, "org_globex": 2_000}
METRICS = ["api_call", "storage_gb", "compute_seconds", "email_sent"]
REGIONS = ["eu-west", "us-east", "ap-south"]
ENDPOINTS = ["/v1/search", "/v1/orders", "/v1/users", "/v1/export"]
_DAY_US = 86_400_000_000


def _catalog(storage: SqlStorage, org: str) -> None:
    for i in range(1, 21):
        storage.create_customer(org, Customer(f"cus_{i:03d}", f"Customer {i:03d}"))
    storage.create_aggregator(
        org,
        Aggregator(
            "agg_api_calls",
            "API calls",
            "api_call",
            "count",
            unit_name="calls",
            display_name_property="endpoint",
        ),
    )
    storage.create_aggregator(
        org,
        Aggregator(
            "agg_eu_api_calls",
            "API calls in the EU",
            "api_call",
            "count",
            unit_name="calls",
            filter=PropertyFilter("and", (Condition("region", "equals", "eu-west"),)),
        ),
    )
    storage.create_aggregator(org, Aggregator("agg_storage", "Storage", "storage_gb", "sum", unit_name="GB"))
    storage.create_aggregator_filter(
        org,
        AggregatorFilter(
            "flt_get",
            "agg_api_calls",
            "GET requests",
            PropertyFilter("and", (Condition("method", "equals", "GET"),)),
        ),
    )
    storage.create_aggregator_filter(
        org,
        AggregatorFilter(
            "flt_slow",
            "agg_api_calls",
            "Slow requests",
            PropertyFilter(
                "or", (Condition("latency_ms", "gte", 500), Condition("status", "in", [500, 503]))
            ),
        ),
    )


def _event(rng: random.Random, now_us: int, org: str, n: int) -> NewEvent:
    # Skew: a few customers produce most of the events.
    customer = f"cus_{min(20, int(rng.paretovariate(1.2))):03d}"
    metric = rng.choices(METRICS, weights=[70, 10, 15, 5])[0]
    props: dict[str, Any] = {"region": rng.choice(REGIONS)}
    quantity = "1"
    if metric == "api_call":
        props.update(
            endpoint=rng.choice(ENDPOINTS),
            method=rng.choice(["GET", "GET", "POST"]),
            status=rng.choice([200] * 20 + [404, 500, 503]),
            latency_ms=int(rng.expovariate(1 / 120)),
        )
    elif metric == "storage_gb":
        quantity = f"{rng.uniform(0.1, 50):.3f}"
    elif metric == "compute_seconds":
        quantity = str(rng.randint(1, 3600))
        props["instance"] = rng.choice(["small", "medium", "large"])
    else:
        props["name"] = rng.choice(["Welcome email", "Invoice email", "Reset password"])
    return NewEvent(
        customer_id=customer,
        metric_key=metric,
        timestamp_us=now_us - rng.randrange(90 * _DAY_US),
        quantity=quantity,
        idempotency_key=f"demo-{org}-{n}",
        product_id=rng.choice(["prod_core", "prod_analytics"]),
        subscription_id=f"sub_{customer[4:]}",
        properties=props,
    )


def load_demo(storage: SqlStorage) -> dict[str, Any]:
    """Load the demo data set unless it is already there; returns what the banner prints."""
    now_us = time.time_ns() // 1000
    total = 0
    for org, count in ORGS.items():
        total += count
        if storage.get_aggregator(org, "agg_api_calls") is not None:
            continue  # loaded by an earlier start
        _catalog(storage, org)
        rng = random.Random(f"usage-service demo {org}")
        events = [_event(rng, now_us, org, n) for n in range(count)]
        for start in range(0, len(events), 5000):
            storage.ingest(org, events[start : start + 5000], now_us)
    return {
        "organization": DEMO_ORG,
        "organizations": list(ORGS),
        "events": total,
        "customer_id": "cus_001",
        "aggregator_id": "agg_api_calls",
    }
