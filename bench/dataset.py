"""The shape of the benchmark's data set: organizations, customers, metric keys, products and
property dimensions, with their skew. Shared by the generator (what is loaded), the scenarios (which
customer, metric and product they query) and the ingest run (what comparable events look like).

Everything derives from the event count and a seed, so a data set is reproducible; nothing here
touches the database.

- One big organization holds a third of all events (about 1M in any 30-day window at 10M events);
  20 smaller ones share the rest with a Zipf-like skew.
- Customers per organization are Zipf-distributed (s = 1.1): the first few produce most events.
- 24 metric keys (Zipf, s = 1.0), each with its quantity kind (a count "1", an integer, a decimal).
- Properties: `region` (6 values) and `plan` (4) fixed per customer, `endpoint` (50, Zipf) and
  `method` (4) on API-like metrics, and the high-cardinality `user_id` (~100k values) on 70% of events.
- `product_id` on ~60% of events (tied to the metric), `subscription_id` on half (one per customer),
  `price_key`, `external_cost_*` on LLM metrics, `wallet_currency` on some, and an idempotency key
  on a share of the events (with its `idempotency_keys` row).
"""

from __future__ import annotations

import dataclasses
import itertools

DAY_US = 86_400_000_000
SPAN_DAYS = 90
BIG_ORG = "org_big"
BIG_ORG_SHARE = 1 / 3
OTHER_ORGS = 20
BIG_ORG_CUSTOMERS = 2000
OTHER_ORG_CUSTOMERS = 3000  # shared by the other organizations, in proportion to their events
CUSTOMER_ZIPF_S = 1.1
USER_IDS = 100_000

REGIONS = ("us-east-1", "eu-west-1", "us-west-2", "eu-central-1", "ap-southeast-1", "sa-east-1")
REGION_WEIGHTS = (35, 25, 15, 12, 8, 5)
PLANS = ("free", "starter", "pro", "enterprise")
PLAN_WEIGHTS = (40, 30, 20, 10)
METHODS = ("GET", "POST", "PUT", "DELETE")
METHOD_WEIGHTS = (60, 25, 10, 5)
ENDPOINTS = tuple(
    f"/v1/{resource}{suffix}"
    for resource in (
        "search",
        "events",
        "customers",
        "invoices",
        "subscriptions",
        "products",
        "prices",
        "usage",
        "exports",
        "webhooks",
    )
    for suffix in ("", "/{id}", "/{id}/items", "/batch", "/count")
)  # 50

# (metric key, quantity kind, API-like: carries endpoint and method)
METRICS: tuple[tuple[str, str, bool], ...] = (
    ("api_call", "one", True),
    ("llm_input_tokens", "int", False),
    ("storage_gb_hours", "decimal", False),
    ("llm_output_tokens", "int", False),
    ("compute_seconds", "decimal", False),
    ("webhook_delivery", "one", True),
    ("bandwidth_gb", "decimal", False),
    ("db_query", "one", True),
    ("search_query", "one", True),
    ("emails_sent", "int", False),
    ("file_upload", "one", True),
    ("image_generation", "one", False),
    ("sms_sent", "int", False),
    ("file_download", "one", True),
    ("transcription_minutes", "decimal", False),
    ("active_user", "one", False),
    ("build_minutes", "decimal", False),
    ("deploy", "one", False),
    ("log_ingested_gb", "decimal", False),
    ("metric_datapoints", "int", False),
    ("notification_push", "int", False),
    ("export_job", "one", True),
    ("seat_day", "one", False),
    ("api_error", "one", True),
)
METRIC_ZIPF_S = 1.0
ENDPOINT_ZIPF_S = 1.2
PRODUCTS = 12  # prod_00 .. prod_11; a metric's product is fixed
PRODUCT_SHARE = 0.6
SUBSCRIPTION_SHARE = 0.5
PRICE_KEY_SHARE = 0.3
WALLET_SHARE = 0.2
USER_ID_SHARE = 0.7
IDEMPOTENCY_SHARE = 0.25


def zipf_weights(n: int, s: float) -> list[float]:
    return [1.0 / (k**s) for k in range(1, n + 1)]


def cumulative(weights: list[float] | tuple[int, ...]) -> list[float]:
    return list(itertools.accumulate(float(w) for w in weights))


def metric_product(metric_index: int) -> str:
    return f"prod_{metric_index % PRODUCTS:02d}"


def customer_id(n: int) -> str:
    return f"cus_{n:05d}"


@dataclasses.dataclass(frozen=True)
class Org:
    id: str
    share: float  # of all events
    customers: int


@dataclasses.dataclass(frozen=True)
class Dataset:
    """The data set of `events` events; `end_us` is fixed when it is generated."""

    events: int
    seed: int = 42

    @property
    def orgs(self) -> list[Org]:
        rest = zipf_weights(OTHER_ORGS, 0.8)
        total = sum(rest)
        orgs = [Org(BIG_ORG, BIG_ORG_SHARE, BIG_ORG_CUSTOMERS)]
        for i, w in enumerate(rest, start=2):
            share = (1 - BIG_ORG_SHARE) * w / total
            customers = max(20, round(OTHER_ORG_CUSTOMERS * w / total))
            orgs.append(Org(f"org_{i:03d}", share, customers))
        return orgs

    # Who the scenarios query (ranks in the Zipf order: 1 is the heaviest).
    heavy_customer = customer_id(1)
    light_customer = customer_id(300)  # ~28 api_call events at 1M, ~280 at 10M
    aggregator_metric = METRICS[0][0]  # api_call: the heavy customer's most frequent metric
    list_metric = METRICS[4][0]  # a mid-frequency metric (~5% of events)
    list_product = metric_product(5)  # prod_05: webhook_delivery and deploy (~3.5% of events)
