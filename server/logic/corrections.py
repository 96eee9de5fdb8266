"""Corrections: the rules of voiding events and of reading an event's history.

A correction must name its caller (the token's caller claim, auth.py) and a reason that is not
only spaces; it is stamped with the service's clock. Storage does the rest in one transaction
(storage/corrections.py): which ids were voided now, which earlier, which do not exist.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from server.deadline import Deadline
from server.domain import Correction, EventVersion, VoidOutcome
from server.errors import InvalidArgument, NotFound, Unauthenticated
from server.storage.interface import CorrectionStorage


class Corrections:
    def __init__(
        self,
        storage: CorrectionStorage,
        caller_claim: str,
        clock_us: Callable[[], int] = lambda: time.time_ns() // 1000,
    ) -> None:
        self._storage = storage
        self._caller_claim = caller_claim
        self._clock_us = clock_us

    def void(
        self, org: str, caller: str, event_ids: Sequence[str], reason: str, deadline: Deadline | None = None
    ) -> list[VoidOutcome]:
        """Void the events (distinct ids); one outcome per id, in order."""
        if not caller:
            raise Unauthenticated(
                f"the bearer token has no '{self._caller_claim}' claim: a correction records who made it",
                reason=Unauthenticated.NO_CALLER,
            )
        if not reason.strip():
            raise InvalidArgument.field("reason", "must say why, in more than spaces")
        return self._storage.void(org, event_ids, Correction(self._clock_us(), caller, reason), deadline)

    def history(self, org: str, event_id: str, deadline: Deadline | None = None) -> list[EventVersion]:
        """The event's versions, oldest first; NotFound when the organization has no such event."""
        versions = self._storage.history(org, event_id, deadline)
        if not versions:
            raise NotFound("Usage event not found", resource="usage_event")
        return versions
