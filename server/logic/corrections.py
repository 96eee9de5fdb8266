"""Corrections: the rules of voiding and amending events and of reading an event's history.

A correction must name its caller (the token's caller claim, auth.py) and a reason that is not
only spaces; it is stamped with the service's clock. Storage does the rest in one transaction
(storage/corrections.py): which ids were voided now, which earlier, which do not exist. An amend
changes only the fields its mask names (MUTABLE_EVENT_FIELDS), and the new version passes every
check an ingested event passes (logic/ingest.py); the customer, the metric key and the
idempotency key are the event's identity and never change.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence

from server.deadline import Deadline
from server.domain import AmendResult, Correction, EventVersion, NewEvent, VoidOutcome
from server.errors import (
    Aborted,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    Unauthenticated,
)
from server.logic.ingest import EventDraft, check_event
from server.storage.interface import CorrectionStorage

# What an amend may change; the other fields of an event are its identity.
MUTABLE_EVENT_FIELDS = (
    "quantity",
    "properties",
    "timestamp",
    "product_id",
    "subscription_id",
    "price_key",
    "external_cost_amount",
    "external_cost_currency",
    "wallet_currency",
)
# The draft field of each mask path (the proto's timestamp is the draft's timestamp_us).
_DRAFT_FIELD = {**{f: f for f in MUTABLE_EVENT_FIELDS}, "timestamp": "timestamp_us"}


class Corrections:
    def __init__(
        self,
        storage: CorrectionStorage,
        caller_claim: str,
        max_future_skew_s: int,
        clock_us: Callable[[], int] = lambda: time.time_ns() // 1000,
    ) -> None:
        self._storage = storage
        self._caller_claim = caller_claim
        self._skew = max_future_skew_s
        self._clock_us = clock_us

    def void(
        self, org: str, caller: str, event_ids: Sequence[str], reason: str, deadline: Deadline | None = None
    ) -> list[VoidOutcome]:
        """Void the events (distinct ids); one outcome per id, in order."""
        return self._storage.void(org, event_ids, self._correction(caller, reason), deadline)

    def amend(
        self,
        org: str,
        caller: str,
        event_id: str,
        changes: EventDraft,
        mask: Sequence[str],
        reason: str,
        expected_id: str | None = None,
        deadline: Deadline | None = None,
    ) -> AmendResult:
        """Replace the event's current version by one whose `mask` fields are those of `changes`."""
        correction = self._correction(caller, reason)
        unknown = [p for p in mask if p not in MUTABLE_EVENT_FIELDS]
        if unknown or not mask:
            said = f"cannot change {unknown[0][:64]!r}; " if unknown else "name at least one field; "
            raise InvalidArgument.field(
                "update_mask", said + f"changeable: {', '.join(MUTABLE_EVENT_FIELDS)}"
            )
        fields = {_DRAFT_FIELD[p]: getattr(changes, _DRAFT_FIELD[p]) for p in mask}
        if "properties" in mask:
            fields["properties_wire"] = changes.properties_wire
        now_us = correction.at_us

        def change(current: NewEvent) -> NewEvent:  # runs under the current version's lock
            # The properties JSON is recomputed; a changed Struct comes with the request (`fields`).
            draft = dataclasses.replace(
                current, **{"properties_json": None, "properties_wire": None, **fields}
            )
            event, violations = check_event(draft, now_us, self._skew)
            if event is None:
                raise InvalidArgument.of(
                    [FieldViolation(f"event.{v.field}", v.description) for v in violations]
                )
            return event

        result = self._storage.amend(org, event_id, expected_id, change, correction, deadline)
        if result.status == "NOT_FOUND":
            raise NotFound("Usage event not found", resource="usage_event")
        current = {"current_version_id": result.current_id}
        if result.status == "VOIDED":
            raise FailedPrecondition(f"the event is voided (version {result.current_id}): nothing to amend")
        if result.status == "NOT_CURRENT":
            raise FailedPrecondition(
                f"expected_version_id is not the current version, {result.current_id}: read it and retry",
                metadata=current,
            )
        if result.status == "RACED":
            raise Aborted(
                "another correction of the event committed first: its current version is now "
                + result.current_id,
                metadata=current,
            )
        return result

    def _correction(self, caller: str, reason: str) -> Correction:
        """This call's correction record; refused without a caller or a reason."""
        if not caller:
            raise Unauthenticated(
                f"the bearer token has no '{self._caller_claim}' claim: a correction records who made it",
                reason=Unauthenticated.NO_CALLER,
            )
        if not reason.strip():
            raise InvalidArgument.field("reason", "must say why, in more than spaces")
        return Correction(self._clock_us(), caller, reason)

    def history(self, org: str, event_id: str, deadline: Deadline | None = None) -> list[EventVersion]:
        """The event's versions, oldest first; NotFound when the organization has no such event."""
        versions = self._storage.history(org, event_id, deadline)
        if not versions:
            raise NotFound("Usage event not found", resource="usage_event")
        return versions
