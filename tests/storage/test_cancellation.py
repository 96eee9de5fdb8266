"""A call cancelled between registering its stop and its statement reaching the database still stops.

PostgreSQL ignores a cancel request that arrives while the backend waits for a command, so a statement
sent just after its call was cancelled (a thread slow to send it on a busy server) would run on for
nobody; server/deadline.py runs the stops of a call that is still inside `cancelling` again shortly
after. Here the cancel comes first, deterministically, and the slow statement must still be stopped
(without the repeat it runs to its end and answers). SQLite checks the deadline as it runs.
"""

from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa

from server.deadline import Deadline
from server.errors import Cancelled, DeadlineExceeded
from server.storage.engine import Database, make_engine

# Statements that run for about a minute unless stopped.
SLOW = {
    "postgres": "SELECT pg_sleep(60)",
    "sqlite": "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 3000000000) "
    "SELECT count(*) FROM c",
}


def test_a_statement_sent_after_its_call_was_cancelled_is_stopped(db_url: str, backend: str) -> None:
    db = Database(make_engine(db_url))
    try:
        deadline = Deadline(120.0, enforced=True)  # as a gRPC call's: no statement timeout of its own
        # The engine has no statement timeout: only the call's stop can end the statement early.
        with pytest.raises(Cancelled), db.read(deadline) as conn:
            deadline.cancel()  # the client left; nothing runs yet, so the first stop finds nothing
            conn.execute(sa.text(SLOW[backend]))
        # Nothing of the call is left running, and the connection serves the next call.
        for repeater in [t for t in threading.enumerate() if t.name == "deadline-stop"]:
            repeater.join(10)  # it ends at its next wake, finding the call's stop gone
            assert not repeater.is_alive()
        with db.read(Deadline(30.0, enforced=True)) as conn:
            assert conn.execute(sa.text("SELECT 1")).scalar_one() == 1
    finally:
        db.engine.dispose()


def test_no_statement_starts_once_the_call_is_over(db_url: str) -> None:
    db = Database(make_engine(db_url))
    try:
        cancelled = Deadline(120.0, enforced=True)
        cancelled.cancel()
        with pytest.raises(Cancelled), db.read(cancelled):
            raise AssertionError("a read began for a cancelled call")
        expired = Deadline(0.0, enforced=True)
        with pytest.raises(DeadlineExceeded), db.read(expired):
            raise AssertionError("a read began for an expired call")
        with pytest.raises(DeadlineExceeded):
            db.fetch_sql("SELECT 1", {}, expired)
    finally:
        db.engine.dispose()
