"""`as_of`: which moment a query answers as of, and whether a moment a caller asks for can be.

An answer read now is as of the organization's last commit clock (at least the floor): the
storage reads that clock in the answer's own statement, and nothing can commit at or before it any
more (storage/clock.py says why). A caller may ask for a past moment instead:

- in the future (not before now): INVALID_ARGUMENT, since what will commit up to it is not known;
- before the floor (when the service started recording commit clocks: migration 0009):
  INVALID_ARGUMENT, since older changes were not timed by the commit clock;
- older than the horizon (settings.as_of_horizon_days): INVALID_ARGUMENT, unless the organization's
  events have not changed since that moment (the answer as of it is then the answer now);
- between the organization's last commit clock and now: the writers that may still commit at or
  before it are waited for (`settle`), so the answer never changes later.

Answers as of a past moment are read from the events as they were (storage/clock.py `events_at`),
never from the rollups.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable
from typing import TypeVar

from server.deadline import Deadline
from server.errors import InvalidArgument
from server.storage.interface import Storage

DAY_US = 86_400_000_000
A = TypeVar("A")


@dataclasses.dataclass(frozen=True)
class Moment:
    """A past moment an answer can be read as of: no writer can commit at or before it any more."""

    us: int
    unchanged: bool  # the organization's events had not changed since it when it was settled


def _when(us: int) -> str:
    at = dt.datetime.fromtimestamp(us / 1_000_000, dt.UTC)
    return at.isoformat(timespec="microseconds").replace("+00:00", "Z")


class AsOf:
    """Resolves the `as_of` of queries against one storage's commit clocks."""

    def __init__(self, storage: Storage, horizon_days: int) -> None:
        self._clocks = storage.clocks
        self._horizon_us = horizon_days * DAY_US

    def issued(self, clock_us: int) -> int:
        """The `as_of` of an answer read now with the organization's commit clock `clock_us`."""
        return self._clocks.issued(clock_us)

    def past(self, org: str, as_of_us: int | None, field: str, deadline: Deadline | None) -> int | None:
        """`as_of_us` once an answer as of it can be read and can never change (None: unset, the
        answer is read now), or InvalidArgument on `field`."""
        moment = self.resolve(org, as_of_us, field, deadline)
        return None if moment is None else moment.us

    def answer(self, moment: Moment | None, read: Callable[[int | None], tuple[A, int]]) -> tuple[A, int]:
        """An answer and its as_of: `read(None)` reads it now (returning it and the commit clock it
        was read with), `read(t)` as of `t`. When nothing had changed since the moment asked for,
        the answer is first read now (the rollups serve it), and kept if its clock is still at or
        before the moment: no writer can commit at or before it any more (it is settled), so it is
        the answer as of it. Else it is read as of the moment."""
        if moment is None:
            answer, clock_us = read(None)
            return answer, self.issued(clock_us)
        if moment.unchanged:
            answer, clock_us = read(None)
            if clock_us <= moment.us:
                return answer, moment.us
        return read(moment.us)[0], moment.us

    def resolve(self, org: str, as_of_us: int | None, field: str, deadline: Deadline | None) -> Moment | None:
        """The moment `as_of_us` once settled (None: unset), or InvalidArgument on `field`."""
        if as_of_us is None:
            return None
        state = self._clocks.state(org, deadline)
        if as_of_us >= state.now_us:
            raise InvalidArgument.field(
                field, f"must be before now ({_when(state.now_us)}): what commits later is not known yet"
            )
        if as_of_us < state.issued_us:
            if as_of_us < state.floor_us:
                raise InvalidArgument.field(
                    field,
                    f"must be at or after {_when(state.floor_us)}, when this service began recording "
                    "when each change committed",
                )
            if as_of_us < state.now_us - self._horizon_us:
                raise InvalidArgument.field(
                    field,
                    f"must be within {self._horizon_us // DAY_US} days of now (the server's as_of "
                    "horizon): the organization's events have changed since",
                )
            return Moment(as_of_us, unchanged=False)
        if as_of_us > state.issued_us and not self._clocks.settle(org, as_of_us, deadline):
            # Not before now by the database's clock, though it was by the one read above.
            raise InvalidArgument.field(field, "must be before now: what commits later is not known yet")
        return Moment(as_of_us, unchanged=True)
