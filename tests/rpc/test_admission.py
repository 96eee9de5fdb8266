"""Admission (server/rpc/admission.py): the budget of request bytes the running calls share.

Real threads and real time; the bounds below are waits of the code under test, not performance limits.
"""

from __future__ import annotations

import threading
import time

import pytest

from server.errors import DeadlineExceeded
from server.rpc.admission import Admission, ByteBudget


def test_a_request_waits_for_room_in_the_byte_budget() -> None:
    admission = Admission(max_concurrent=8, max_running=8, max_request_bytes=100)
    entered = threading.Event()
    release = threading.Event()
    order: list[str] = []

    def large(name: str, size: int) -> None:
        with admission.admit(10.0, size):
            order.append(name)
            entered.set()
            release.wait(10)

    first = threading.Thread(target=large, args=("first", 80))
    first.start()
    assert entered.wait(10)
    second = threading.Thread(target=large, args=("second", 30))  # 80 + 30 > 100: waits
    second.start()
    time.sleep(0.2)
    assert order == ["first"]
    with admission.admit(1.0, 20):  # 80 + 20 fits beside the first
        order.append("small")
    release.set()
    first.join(10)
    second.join(10)
    assert order == ["first", "small", "second"]


def test_a_request_that_finds_no_room_before_its_deadline_is_deadline_exceeded() -> None:
    admission = Admission(max_concurrent=8, max_running=8, max_request_bytes=100)
    with admission.admit(10.0, 100):
        started = time.monotonic()
        with pytest.raises(DeadlineExceeded, match="memory to parse the request"), admission.admit(0.2, 1):
            pass
        assert time.monotonic() - started >= 0.2
    with admission.admit(1.0, 1):  # the budget was given back, the failed wait took nothing
        pass


def test_a_request_larger_than_the_budget_takes_all_of_it() -> None:
    budget = ByteBudget(100)
    assert budget.acquire(500, 1.0) == 100
    assert budget.acquire(1, 0.05) is None
    budget.release(100)
    assert budget.acquire(1, 0.05) == 1
