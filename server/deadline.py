"""What bounds the work of one call: the time it has left, and its cancellation by the client.

The RPC adapters build a `Deadline` from the gRPC context (`Deadline.of_context`); the logic passes
it to storage, which sets each statement's timeout from `timeout_s()` and, while a statement runs,
registers how to stop it (`cancelling`). So a call whose client hung up or whose deadline passed
stops in the database too, instead of running on for nobody (grpc calls the context's callbacks
when a call ends for any reason: a cancelled or expired call ends at once, on another thread).

`Deadline.none()` is the bound of work without a client (CLI, demo loading, tests): no timeout
beyond the database's default, never cancelled.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from server.errors import Cancelled, DeadlineExceeded

# The least time a statement is given: a timeout of 0 means "none" to both databases.
_MIN_TIMEOUT_S = 0.001
# A stop that finds its statement not yet arrived in the database is lost: PostgreSQL ignores a
# cancel request while the backend waits for a command, SQLite an interrupt between statements. A
# thread that registered its stop can take that long to send the statement on a busy server (the
# GIL, SQLAlchemy's compiling), and the statement would then run on for nobody (CI saw it once).
# So stops still registered after each of these delays run again; a stop is registered only while
# its connection is in this call's hands, so a repeat never reaches another call's statement.
_STOP_AGAIN_AFTER_S = (0.05, 0.2, 1.0, 3.0)


class Deadline:
    """The remaining time of one call (None: unbounded) and whether its client cancelled it."""

    __slots__ = ("_expires", "_cancelled", "_lock", "_stops", "enforced")

    def __init__(self, timeout_s: float | None = None, *, enforced: bool = False) -> None:
        self._expires = None if timeout_s is None else time.monotonic() + timeout_s
        self._cancelled = False
        # True when storage need not give the database a statement timeout of its own: gRPC ends
        # the call (and calls `cancel()`) at its deadline, or the limit is the server's cap, which
        # every database connection applies to each statement already (default_query_timeout_s).
        self.enforced = enforced
        self._lock = threading.Lock()
        self._stops: list[Callable[[], None]] = []

    @classmethod
    def none(cls) -> Deadline:
        return cls(None)

    @classmethod
    def of_context(cls, context: Any, cap_s: float) -> Deadline:
        """The call's remaining deadline, at most `cap_s` (the database's own statement timeout),
        cancelled when the call ends early. Without a context (a servicer called directly, as in
        tests) just the cap, enforced by the database."""
        if context is None:
            return cls(cap_s)
        left = context.time_remaining()
        deadline = cls(cap_s if left is None else min(left, cap_s), enforced=True)
        return deadline._ended_with(context)

    @classmethod
    def of_stream(cls, context: Any) -> Deadline:
        """A streaming call's remaining deadline, uncapped (a stream may outlive any one statement,
        and each statement stays bounded by the database's default timeout), cancelled when the
        call ends early."""
        left = context.time_remaining()
        deadline = cls(left, enforced=left is not None)
        return deadline._ended_with(context)

    def _ended_with(self, context: Any) -> Deadline:
        """Cancelled when the call ends. The callback also runs when the call ends normally: by
        then nothing is registered, so it stops nothing."""
        if not context.add_callback(self.cancel):
            # The call had already ended (its deadline passed, or its client left, before the
            # handler began: a busy server). Nothing will call back, and no statement timeout is
            # set for an `enforced` deadline: cancelled now, so no statement starts for nobody.
            self.cancel()
        return self

    def timeout_s(self) -> float | None:
        """Seconds left (at least a millisecond), or None when unbounded."""
        if self._expires is None:
            return None
        return max(_MIN_TIMEOUT_S, self._expires - time.monotonic())

    @property
    def expired(self) -> bool:
        return self._expires is not None and time.monotonic() >= self._expires

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    def check(self) -> None:
        """Raise when the call was cancelled or ran out of time (between units of work)."""
        if self.expired:
            raise DeadlineExceeded("the call did not finish before its deadline")
        if self._cancelled:
            raise Cancelled("the call was cancelled by its client")

    def stopped_error(self) -> DeadlineExceeded | Cancelled:
        """The error of a statement the database stopped: its timeout, or a cancellation."""
        if self._cancelled and not self.expired:
            return Cancelled("the call was cancelled by its client")
        return DeadlineExceeded("the query did not finish before the deadline")

    def cancel(self) -> None:
        """The client is gone: stop whatever runs for this call now, and again shortly after while
        it still runs (see _STOP_AGAIN_AFTER_S)."""
        # Under the lock: `cancelling` cannot return (and its connection go back to the pool for
        # another call) while a stop is running.
        with self._lock:
            self._cancelled = True
            for stop in self._stops:
                stop()
            running = bool(self._stops)
        if running:
            threading.Thread(target=self._stop_again, name="deadline-stop", daemon=True).start()

    def _stop_again(self) -> None:
        for delay in _STOP_AGAIN_AFTER_S:
            time.sleep(delay)
            with self._lock:
                if not self._stops:
                    return
                for stop in self._stops:
                    stop()

    @contextlib.contextmanager
    def cancelling(self, stop: Callable[[], None]) -> Iterator[None]:
        """While inside, a cancellation of the call runs `stop` (and again while still inside)."""
        with self._lock:
            # Nothing starts once the call is over: neither a cancellation nor an expiry can stop a
            # statement that is sent after it (an enforced deadline sets no statement timeout).
            self.check()
            self._stops.append(stop)
        try:
            yield
        finally:
            with self._lock:
                # Removed under the lock: once this returns, `stop` can no longer run.
                if stop in self._stops:
                    self._stops.remove(stop)
