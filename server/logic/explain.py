"""ExplainUsageEvent: whether one event counts for an aggregator, check by check.

The checks are the ones ListCustomerUsageEvents applies, in its order: that the event is current
(not voided, not replaced by an amend: CorrectionService), the customer, the metric key against the
aggregator's event type, the period (half-open), the aggregator's own filter, then the named filter.
A voided or replaced version is explained as it was, with its void. Filter verdicts, whole and per
condition, come from storage, which computes them with the SQL the pages filter with: the
explanation is the page's decision shown, not a second implementation of it. Only the words are made here.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

from server.deadline import Deadline
from server.domain import Condition, EventVerdicts, FilterVerdict
from server.errors import InvalidArgument, NotFound
from server.logic.as_of import AsOf
from server.storage.interface import Storage


@dataclasses.dataclass(frozen=True)
class ExplainRequest:
    event_id: str
    aggregator_id: str
    aggregator_filter_id: str | None = None
    customer_id: str | None = None
    start_us: int | None = None
    end_us: int | None = None
    as_of_us: int | None = None


@dataclasses.dataclass(frozen=True)
class Check:
    name: str  # customer, event_type, period, aggregator_filter, named_filter
    passed: bool
    detail: str
    conditional: str = ""
    conditions: tuple[tuple[Condition, bool], ...] = ()


@dataclasses.dataclass(frozen=True)
class Explanation:
    counts: bool
    wire: bytes  # the event as list pages send it
    checks: tuple[Check, ...]
    as_of_us: int


# What storage did not find: the message and resource of its NOT_FOUND (the pages' own words).
_MISSING = {
    "event": ("Usage event not found", "usage_event"),
    "customer": ("Customer not found", "customer"),
    "aggregator": ("Aggregator not found", "aggregator"),
    "aggregator_filter": ("Aggregator filter not found", "aggregator_filter"),
}


class Explainer:
    def __init__(self, storage: Storage, as_of: AsOf) -> None:
        self._storage = storage
        self._as_of = as_of

    def explain(self, org: str, req: ExplainRequest, deadline: Deadline | None = None) -> Explanation:
        if req.end_us is not None:
            if req.start_us is None:
                raise InvalidArgument.field("end_date", "needs start_date: a period has both ends")
            if req.end_us <= req.start_us:
                raise InvalidArgument.field("end_date", "must be after start_date")
        as_of_us = self._as_of.past(org, req.as_of_us, "as_of", deadline)
        found = self._storage.reads.explain(
            org,
            req.event_id,
            req.aggregator_id,
            req.aggregator_filter_id,
            req.customer_id,
            deadline,
            as_of_us,
        )
        if found.missing is not None:
            message, resource = _MISSING[found.missing]
            raise NotFound(message, resource=resource)
        as_of_us = as_of_us if as_of_us is not None else self._as_of.issued(found.clock_us)
        checks = [
            _current(found, as_of_us),
            _customer(found, req.customer_id or found.customer_id),
            _event_type(found),
        ]
        if req.start_us is not None:
            checks.append(_period(found.timestamp_us, req.start_us, req.end_us))
        assert found.aggregator_filter is not None
        checks.append(_filter_check("aggregator_filter", "the aggregator's filter", found.aggregator_filter))
        if found.named_filter is not None:
            checks.append(
                _filter_check("named_filter", f"filter {req.aggregator_filter_id!r}", found.named_filter)
            )
        return Explanation(all(c.passed for c in checks), found.wire, tuple(checks), as_of_us)


def _current(found: EventVerdicts, as_of_us: int) -> Check:
    # Worded by the answer's as_of alone, read now or again with it: the same request with its
    # as_of gives the same answer, word for word.
    void = found.void
    if void is None:
        return Check(
            "current",
            True,
            f"the event is current as of {_iso(as_of_us)}: neither voided nor replaced by then",
        )
    when = f"at {_iso(void.voided_at_us)} by {void.voided_by!r}: {void.reason!r}"
    if void.replaced_by is not None:
        return Check("current", False, f"this version was replaced by {void.replaced_by!r} {when}")
    return Check("current", False, f"the event was voided {when}")


def _customer(found: EventVerdicts, customer: str) -> Check:
    if found.customer_id == customer:
        return Check("customer", True, f"the event is customer {customer!r}'s")
    return Check("customer", False, f"the event is customer {found.customer_id!r}'s, not {customer!r}'s")


def _event_type(found: EventVerdicts) -> Check:
    if found.metric_key == found.event_type:
        return Check(
            "event_type", True, f"its metric key {found.metric_key!r} is the aggregator's event type"
        )
    return Check(
        "event_type",
        False,
        f"its metric key {found.metric_key!r} is not the aggregator's event type {found.event_type!r}",
    )


def _iso(us: int) -> str:
    return (
        (dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=us))
        .isoformat()
        .replace("+00:00", "Z")
    )


def _period(at_us: int, start_us: int, end_us: int | None) -> Check:
    window = f"[{_iso(start_us)}, {_iso(end_us) if end_us is not None else 'no end'})"
    if at_us < start_us:
        return Check("period", False, f"its time {_iso(at_us)} is before the period {window}")
    if end_us is not None and at_us >= end_us:
        return Check("period", False, f"its time {_iso(at_us)} is not before the period's end {window}")
    return Check("period", True, f"its time {_iso(at_us)} is in the period {window}")


def _filter_check(name: str, label: str, verdict: FilterVerdict) -> Check:
    f = verdict.filter
    conditions = tuple(zip(f.conditions, verdict.conditions, strict=True))
    if not f.conditions:
        return Check(name, True, f"{label} has no conditions: every event passes it", f.conditional)
    held = sum(verdict.conditions)
    combined = "all" if f.conditional == "and" else "at least one"
    outcome = "passes" if verdict.passed else "does not pass"
    detail = (
        f"{held} of {len(f.conditions)} conditions of {label} hold and {combined} must: "
        f"the event {outcome} it"
    )
    return Check(name, verdict.passed, detail, f.conditional, conditions)
