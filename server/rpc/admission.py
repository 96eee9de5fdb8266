"""Admission of API calls: at most `max_concurrent` admitted (running or waiting for a slot), of which
at most `max_running` run at once; a call beyond the bound is RESOURCE_EXHAUSTED at once. The running
calls also share a budget of request bytes (`max_request_bytes`, the sum of their messages' wire
sizes): parsing, validating and storing a request takes several times its size (a batch of 16 MB
took 110 MB; four at once passed the pod's 512 MiB), so a large request waits, within its deadline,
until enough of the budget is free.

Why not grpc's own `maximum_concurrent_rpcs`: it counts every RPC, health checks included, so a
saturated server would answer its health probes RESOURCE_EXHAUSTED and be restarted for being busy.
Here health and reflection are never counted, and the thread pool (app.py) has `RESERVED_THREADS`
more threads than admitted calls can ever hold, so they always find one.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator

from server.errors import DeadlineExceeded, ResourceExhausted

# Threads beyond the admitted calls: health checks, reflection, and answering rejected calls.
RESERVED_THREADS = 8
# Requests up to this fraction of the byte budget do not count against it (64 KiB of the default
# 16 MiB): the admitted calls bound what they hold together (64 of them: a quarter of the budget),
# and a budget taken and given back costs two condition variables per call.
SMALL_REQUEST_SHARE = 256


class ByteBudget:
    """A semaphore counted in bytes; a request larger than the whole budget takes all of it."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._used = 0
        self._changed = threading.Condition()

    def acquire(self, n: int, timeout: float | None) -> int | None:
        """Take `n` bytes (at most the capacity) within `timeout` seconds: what was taken, or None."""
        n = min(n, self.capacity)
        with self._changed:
            if not self._changed.wait_for(lambda: self._used + n <= self.capacity, timeout):
                return None
            self._used += n
        return n

    def release(self, n: int) -> None:
        with self._changed:
            self._used -= n
            self._changed.notify_all()


class Admission:
    def __init__(self, max_concurrent: int, max_running: int, max_request_bytes: int = 0) -> None:
        self.max_concurrent = max_concurrent
        self._admitted = threading.BoundedSemaphore(max_concurrent) if max_concurrent > 0 else None
        self._running = threading.BoundedSemaphore(max_running)
        self._bytes = ByteBudget(max_request_bytes) if max_request_bytes > 0 else None

    @contextlib.contextmanager
    def admit(self, time_remaining: float | None, request_bytes: int = 0) -> Iterator[None]:
        """Hold an admission, a running slot and `request_bytes` of the budget for the body; the slot
        and the bytes are awaited until `time_remaining` seconds (the call's deadline) have passed."""
        if self._admitted is not None and not self._admitted.acquire(blocking=False):
            raise ResourceExhausted(
                f"the server is at its limit of {self.max_concurrent} concurrent calls; retry later"
            )
        try:
            until = None if time_remaining is None else time.monotonic() + time_remaining
            if not self._running.acquire(timeout=time_remaining):
                raise DeadlineExceeded("the deadline passed while waiting for a free worker")
            try:
                with self._request_bytes(request_bytes, until):
                    yield
            finally:
                self._running.release()
        finally:
            if self._admitted is not None:
                self._admitted.release()

    @contextlib.contextmanager
    def _request_bytes(self, n: int, until: float | None) -> Iterator[None]:
        if self._bytes is None or n <= self._bytes.capacity // SMALL_REQUEST_SHARE:
            yield
            return
        left = None if until is None else max(0.0, until - time.monotonic())
        taken = self._bytes.acquire(n, left)
        if taken is None:
            raise DeadlineExceeded("the deadline passed while waiting for memory to parse the request")
        try:
            yield
        finally:
            self._bytes.release(taken)


class StreamBound:
    """Streams open at once: at most `total`, and `per_org` of one organization. A stream holds an
    RPC thread for as long as its reader reads, so without a bound of their own a few slow exports
    would take the threads every other call needs; the per-organization bound keeps one tenant
    from taking them all."""

    def __init__(self, total: int, per_org: int) -> None:
        self.total = total
        self.per_org = per_org
        self._lock = threading.Lock()
        self._open: dict[str, int] = {}

    @contextlib.contextmanager
    def hold(self, org: str) -> Iterator[None]:
        with self._lock:
            mine = self._open.get(org, 0)
            if mine >= self.per_org:
                raise ResourceExhausted(
                    f"this organization has {mine} export streams open, its limit; retry when one ends"
                )
            if sum(self._open.values()) >= self.total:
                raise ResourceExhausted(
                    f"the server has {self.total} export streams open, its limit; retry later"
                )
            self._open[org] = mine + 1
        try:
            yield
        finally:
            with self._lock:
                left = self._open[org] - 1
                if left:
                    self._open[org] = left
                else:
                    del self._open[org]
