"""The demo data set of `serve --demo`: three organizations, customers with skewed usage, aggregators
with filters, and ~30,000 events over the last 90 days. Deterministic (seeded) and loaded once: a
second start finds it and loads nothing. Also the banner `serve --demo` prints: a token, grpcurl
examples and, when the HTTP gateway runs, curl examples of the same calls."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
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
        storage.catalog.create_customer(org, Customer(f"cus_{i:03d}", f"Customer {i:03d}"))
    storage.catalog.create_aggregator(
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
    storage.catalog.create_aggregator(
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
    storage.catalog.create_aggregator(
        org, Aggregator("agg_storage", "Storage", "storage_gb", "sum", unit_name="GB")
    )
    storage.catalog.create_aggregator_filter(
        org,
        AggregatorFilter(
            "flt_get",
            "agg_api_calls",
            "GET requests",
            PropertyFilter("and", (Condition("method", "equals", "GET"),)),
        ),
    )
    storage.catalog.create_aggregator_filter(
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
    """Load the demo data set unless it is already there; returns what the banner prints (`loaded`:
    the organizations loaded now, none on a restart)."""
    now_us = time.time_ns() // 1000
    total = 0
    loaded = []
    for org, count in ORGS.items():
        total += count
        if storage.catalog.get_aggregator(org, "agg_api_calls") is not None:
            continue  # loaded by an earlier start
        loaded.append(org)
        _catalog(storage, org)
        rng = random.Random(f"usage-service demo {org}")
        events = [_event(rng, now_us, org, n) for n in range(count)]
        for start in range(0, len(events), 5000):
            storage.events.ingest(org, events[start : start + 5000], now_us)
    return {
        "organization": DEMO_ORG,
        "organizations": list(ORGS),
        "events": total,
        "loaded": loaded,
        "customer_id": "cus_001",
        "aggregator_id": "agg_api_calls",
    }


@dataclasses.dataclass(frozen=True)
class DemoExamples:
    """Ready-to-paste calls on the demo data: its ids and the 30 days up to the server's start.

    One window for every example, so that the curl lines (printed once the gateway listens, after the
    grpcurl ones) ask the same questions as the grpcurl lines.
    """

    summary: dict[str, Any]
    token: str
    start: str
    end: str

    @classmethod
    def now(cls, summary: dict[str, Any], token: str) -> DemoExamples:
        end = dt.datetime.now(dt.UTC).replace(microsecond=0)
        start = end - dt.timedelta(days=30)
        return cls(summary, token, _rfc3339(start), _rfc3339(end))

    def banner(self, grpc_address: str) -> str:
        """What was loaded, the token as an `export TOKEN=...` line, and grpcurl examples."""
        s = self.summary
        customer_events = {
            "id": s["customer_id"],
            "aggregator_id": s["aggregator_id"],
            "start_date": self.start,
            "end_date": self.end,
            "take": 5,
        }
        calls = [
            ("UsageService/ListCustomerUsageEvents", customer_events),
            ("UsageService/ListUsageEvents", {"limit": 5, "metric_key": ["api_call,storage_gb"]}),
            ("UsageService/AggregateUsage", self._aggregate()),
            ("UsageService/IngestUsageEvents", self._ingest("try-1")),
            ("CatalogService/ListAggregators", {}),
        ]
        grpcurl = f"grpcurl -plaintext {_AUTH}"
        lines = [f"grpcurl -plaintext {grpc_address} list"]
        lines += [f"{grpcurl} -d '{_json(body)}' {grpc_address} usage.v1.{rpc}" for rpc, body in calls]
        return (
            f"\n{_loaded_line(s)}\n"
            f"Demo token for organization {s['organization']} (valid 30 days):\n\n"
            f"  export TOKEN={self.token}\n\n"
            "Try (grpcurl, server reflection is on):\n\n" + _indented(lines)
        )

    def curl(self, base_url: str) -> str:
        """The same calls through the HTTP/JSON gateway at base_url (routes: the protos' google.api.http)."""
        s = self.summary
        window = {"start_date": self.start, "end_date": self.end, "take": 5}
        gets = [
            f"/v1/customers/{s['customer_id']}/usage/{s['aggregator_id']}/events?{_query(window)}",
            f"/v1/usage-events?{_query({'limit': 5, 'metric_key': 'api_call,storage_gb'})}",
            f"/v1/usage-events/aggregate?{_query(self._aggregate())}",
        ]
        lines = [f'curl {_AUTH} "{base_url}{path}"' for path in gets]
        # Another idempotency key than grpcurl's: pasting both stores two events, not a DUPLICATE.
        ingest = _json(self._ingest("try-http-1"))
        lines.append(
            f"curl {_AUTH} -H 'content-type: application/json' -X POST \"{base_url}/v1/usage-events/batch\" "
            f"-d '{ingest}'"
        )
        return "\nTry (curl, the HTTP/JSON gateway, same $TOKEN):\n\n" + _indented(lines)

    def _aggregate(self) -> dict[str, Any]:
        return {
            "bucket": "day",
            "since": self.start,
            "group_by": "metric_key",
            "top": 3,
            "time_zone": "Europe/Paris",
        }

    def _ingest(self, idempotency_key: str) -> dict[str, Any]:
        event = {
            "customer_id": self.summary["customer_id"],
            "metric_key": "api_call",
            "timestamp": self.end,
            "idempotency_key": idempotency_key,
        }
        return {"events": [event]}


_AUTH = '-H "authorization: Bearer $TOKEN"'


def _loaded_line(summary: dict[str, Any]) -> str:
    """What this start did: loaded the data set, or found it from an earlier start (then the events
    span the 90 days before that start, and those ingested since are there too)."""
    loaded, organizations = summary["loaded"], summary["organizations"]
    if not loaded:
        return (
            f"Demo data already there from an earlier start ({summary['events']} events of "
            f"{', '.join(organizations)} over the 90 days before it): nothing loaded now."
        )
    if len(loaded) == len(organizations):
        return f"Demo data loaded: {summary['events']} events, organizations {', '.join(organizations)}."
    events = sum(ORGS[org] for org in loaded)
    return f"Demo data loaded for {', '.join(loaded)}: {events} events (the others had theirs already)."


def _rfc3339(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _json(body: dict[str, Any]) -> str:
    """Compact JSON, as one would type it in a shell's single quotes."""
    return json.dumps(body, separators=(",", ":"))


def _query(params: dict[str, Any]) -> str:
    """A query string left readable: RFC 3339 times, commas and slashes need no escaping here."""
    return "&".join(f"{key}={value}" for key, value in params.items())


def _indented(lines: list[str]) -> str:
    return "".join(f"  {line}\n" for line in lines)
