"""Admission of API calls: at most `max_concurrent` admitted (running or waiting for a slot), of which
at most `max_running` run at once; a call beyond the bound is RESOURCE_EXHAUSTED at once.

Why not grpc's own `maximum_concurrent_rpcs`: it counts every RPC, health checks included, so a
saturated server would answer its health probes RESOURCE_EXHAUSTED and be restarted for being busy.
Here health and reflection are never counted, and the thread pool (app.py) has `RESERVED_THREADS`
more threads than admitted calls can ever hold, so they always find one.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

from server.errors import DeadlineExceeded, ResourceExhausted

# Threads beyond the admitted calls: health checks, reflection, and answering rejected calls.
RESERVED_THREADS = 8


class Admission:
    def __init__(self, max_concurrent: int, max_running: int) -> None:
        self.max_concurrent = max_concurrent
        self._admitted = threading.BoundedSemaphore(max_concurrent) if max_concurrent > 0 else None
        self._running = threading.BoundedSemaphore(max_running)

    @contextlib.contextmanager
    def admit(self, time_remaining: float | None) -> Iterator[None]:
        """Hold an admission and a running slot for the body; the slot is awaited for at most
        `time_remaining` seconds (the call's deadline)."""
        if self._admitted is not None and not self._admitted.acquire(blocking=False):
            raise ResourceExhausted(
                f"the server is at its limit of {self.max_concurrent} concurrent calls; retry later"
            )
        try:
            if not self._running.acquire(timeout=time_remaining):
                raise DeadlineExceeded("the deadline passed while waiting for a free worker")
            try:
                yield
            finally:
                self._running.release()
        finally:
            if self._admitted is not None:
                self._admitted.release()
