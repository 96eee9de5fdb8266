"""Shared fixtures: a real PostgreSQL server for the session, and fresh migrated databases per test.

- `pg_server`: the session's PostgreSQL server (tests/pg_server.py). Missing binaries FAIL the
  tests that need it: CI installs PostgreSQL, so a skip would only hide a broken setup.
- `backend`: "sqlite" or "postgres" (the postgres case is marked `postgres`).
- `db_url`: a fresh, migrated database of that backend, private to the test.
- `storage`: a `SqlStorage` over `db_url` (a test that takes both gets the same database).
"""

from __future__ import annotations

import pathlib
import shutil
import sqlite3
from collections.abc import Iterator

import pytest
from pg_server import PgServer, PgServerError

from server.storage.engine import make_engine
from server.storage.migrate import upgrade
from server.storage.sql_storage import SqlStorage

BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
]

_PG_TEMPLATE = "usage_template"


def _migrate(url: str) -> None:
    engine = make_engine(url)
    try:
        upgrade(engine)
    finally:
        engine.dispose()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    try:
        server = PgServer.start()
    except PgServerError as exc:
        error = str(exc)
    else:
        error = ""
    if error:
        pytest.fail(f"cannot start the test PostgreSQL server: {error}", pytrace=False)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def _pg_template(pg_server: PgServer) -> str:
    """A migrated database that each postgres test copies (CREATE DATABASE .. TEMPLATE)."""
    _migrate(pg_server.create_database(_PG_TEMPLATE))
    pg_server.mark_template(_PG_TEMPLATE)
    return _PG_TEMPLATE


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """A migrated SQLite file that each sqlite test copies."""
    path = tmp_path_factory.mktemp("sqlite-template") / "template.db"
    _migrate(f"sqlite:///{path}")
    with sqlite3.connect(path) as conn:  # fold the WAL into the main file before copying it
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return path


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def db_url(backend: str, request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> Iterator[str]:
    """A fresh migrated database for this test only: its SQLAlchemy URL."""
    if backend == "sqlite":
        template: pathlib.Path = request.getfixturevalue("_sqlite_template")
        path = tmp_path / "usage.db"
        shutil.copyfile(template, path)
        yield f"sqlite:///{path}"
        return
    server: PgServer = request.getfixturevalue("pg_server")
    url = server.create_database(template=request.getfixturevalue("_pg_template"))
    try:
        yield url
    finally:
        server.drop_database(url.rsplit("/", 1)[1])


@pytest.fixture
def pg_url(pg_server: PgServer, _pg_template: str) -> Iterator[str]:
    """A fresh migrated PostgreSQL database for tests that need PostgreSQL whatever `backend` is."""
    url = pg_server.create_database(template=_pg_template)
    try:
        yield url
    finally:
        pg_server.drop_database(url.rsplit("/", 1)[1])


@pytest.fixture
def storage(db_url: str) -> Iterator[SqlStorage]:
    """A `SqlStorage` on this test's fresh database."""
    store = SqlStorage(make_engine(db_url))
    try:
        yield store
    finally:
        store.close()
