"""`Deadline.of_context` (server/deadline.py) on real gRPC calls: what a handler that starts late sees.

A busy server can start a handler after its call has already ended (the deadline passed, or the client
left, while the call waited for the GIL or a worker). grpc then never runs the context's callbacks, and an
enforced deadline sets no statement timeout, so before the fix such a call ran its statements to the end
for nobody (found by tests/hostile/test_bounded_work.py in CI: five abandoned rankings still running in
PostgreSQL a second after their deadline). Here the handler waits until the client has its answer
before it builds the deadline; the real waits below are the code under test's, not performance limits.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc
import pytest

from server.deadline import Deadline
from server.errors import Cancelled, DeadlineExceeded

METHOD = "/test.Late/Call"


class LateHandler:
    """Builds a Deadline from its context once `go` is set (and, when `late`, once the server has
    ended the call: the client's own deadline can pass before the server's), and reports what
    starting work did."""

    def __init__(self) -> None:
        self.go = threading.Event()
        self.late = True
        self.seen: queue.Queue[tuple[bool, str]] = queue.Queue()

    def __call__(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        self.go.wait(30)
        ends = time.monotonic() + 30
        while self.late and context.is_active() and time.monotonic() < ends:
            time.sleep(0.01)
        deadline = Deadline.of_context(context, cap_s=60.0)
        stops: list[str] = []
        try:
            with deadline.cancelling(lambda: stops.append("stopped")):
                outcome = "started"
        except (Cancelled, DeadlineExceeded) as exc:
            outcome = type(exc).__name__
        self.seen.put((deadline.cancelled, outcome))
        return b""


Late = tuple[LateHandler, grpc.Channel]


@pytest.fixture
def late() -> Iterator[Late]:
    handler = LateHandler()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    methods = {"Call": grpc.unary_unary_rpc_method_handler(handler)}
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("test.Late", methods)])
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield handler, channel
    finally:
        channel.close()
        server.stop(None)


def call(channel: grpc.Channel, **kwargs: Any) -> Any:
    return channel.unary_unary(METHOD).future(b"", **kwargs)


def test_a_handler_that_starts_after_the_deadline_starts_no_work(late: Late) -> None:
    handler, channel = late
    future = call(channel, timeout=0.3)
    assert future.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    handler.go.set()
    assert handler.seen.get(timeout=30) in ((True, "DeadlineExceeded"), (True, "Cancelled"))


def test_a_handler_that_starts_after_its_client_left_starts_no_work(late: Late) -> None:
    handler, channel = late
    future = call(channel, timeout=60)
    with contextlib.suppress(grpc.FutureTimeoutError):
        future.result(timeout=0.3)  # the call reached the server and waits there
    future.cancel()
    assert future.cancelled()
    handler.go.set()
    assert handler.seen.get(timeout=30) == (True, "Cancelled")


def test_a_handler_in_time_starts_its_work(late: Late) -> None:
    handler, channel = late
    handler.late = False
    handler.go.set()
    assert call(channel, timeout=30).result(timeout=30) == b""
    assert handler.seen.get(timeout=30) == (False, "started")
