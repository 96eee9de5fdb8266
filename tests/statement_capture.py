"""A pytest plugin that records every statement sent to PostgreSQL, with the code that sent it.

    USAGE_STATEMENT_LOG=/tmp/statements.jsonl python -m pytest -p statement_capture -m postgres ...

Every connection any engine's pool opens gets a psycopg cursor class of ours (`cursor_factory`, a
psycopg setting) that notes each `execute`, `executemany` and `copy` before psycopg sends it. That is
below SQLAlchemy, so it also sees what bypasses SQLAlchemy's own events: the COPY of ingestion, the
`SET` / `RESET statement_timeout` of reads, and SQLAlchemy's statements alike. Nothing is replaced:
the statement then runs as it would have. server/ opens connections only through the engines of
storage/dialects, so every connection it uses passes through a pool and gets the cursor.

Each statement is written once per distinct (SQL, sending code), as one JSON line: `sql`; `params`,
whether values were bound (psycopg reads placeholders only then); `frames`, the `module:qualname` of
every frame of server/ on the stack, innermost first (empty when a test or fixture sent it itself);
`count`. tests/storage/test_citus_ready.py reads the file.
"""

from __future__ import annotations

import json
import os
import pathlib
import sys
import threading
from collections import Counter
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from psycopg import sql as pgsql

ENV = "USAGE_STATEMENT_LOG"
_SERVER = pathlib.Path(__file__).resolve().parent.parent / "server"
_SERVER_PREFIX = str(_SERVER) + os.sep

_lock = threading.Lock()
_seen: Counter[tuple[str, bool, tuple[str, ...]]] = Counter()


def _server_frames() -> tuple[str, ...]:
    """`module:qualname` of each frame in server/ on the caller's stack, innermost first."""
    frames = []
    frame = sys._getframe(2)
    while frame is not None:
        path = frame.f_code.co_filename
        if path.startswith(_SERVER_PREFIX):
            module = "server." + path[len(_SERVER_PREFIX) : -len(".py")].replace(os.sep, ".")
            frames.append(f"{module}:{frame.f_code.co_qualname}")
        frame = frame.f_back
    return tuple(frames)


def _record(cursor: psycopg.Cursor[Any], query: Any, bound: bool) -> None:
    text = query.as_string(cursor) if isinstance(query, pgsql.Composable) else query
    if isinstance(text, bytes):
        text = text.decode()
    key = (text, bound, _server_frames())
    with _lock:
        _seen[key] += 1


class RecordingCursor(psycopg.Cursor[Any]):
    """psycopg's cursor, noting each statement first (what it then does is unchanged)."""

    def execute(self, query: Any, params: Any = None, **kw: Any) -> Any:  # type: ignore[override]
        _record(self, query, params is not None)
        return super().execute(query, params, **kw)

    def executemany(self, query: Any, params_seq: Any, **kw: Any) -> None:  # type: ignore[override]
        _record(self, query, True)
        return super().executemany(query, params_seq, **kw)

    def copy(self, statement: Any, params: Any = None, **kw: Any) -> Any:  # type: ignore[override]
        _record(self, statement, params is not None)
        return super().copy(statement, params, **kw)


def _use_recording_cursor(dbapi_connection: Any, _connection_record: Any) -> None:
    if isinstance(dbapi_connection, psycopg.Connection):
        dbapi_connection.cursor_factory = RecordingCursor


def pytest_configure(config: pytest.Config) -> None:
    if not os.environ.get(ENV):
        raise pytest.UsageError(f"-p statement_capture needs {ENV}: the file to write statements to")
    # On the Pool class: every pool of every engine the run makes, from its first connection on.
    sa.event.listen(sa.pool.Pool, "connect", _use_recording_cursor)


def pytest_unconfigure(config: pytest.Config) -> None:
    sa.event.remove(sa.pool.Pool, "connect", _use_recording_cursor)
    with _lock, open(os.environ[ENV], "w", encoding="utf-8") as out:
        for (sql, bound, frames), count in _seen.items():
            out.write(json.dumps({"sql": sql, "params": bound, "frames": frames, "count": count}) + "\n")
