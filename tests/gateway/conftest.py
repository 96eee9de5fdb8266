"""Fixtures of the gateway tests: the real `usage-service` processes, called over real HTTP.

- `data_dir`: the stack's data dir.
- `stack`: `usage-service serve --port 0 --http-port 0` on a fresh SQLite data dir (module scope).
- `http`: an httpx client on the stack's gateway sending a valid bearer token for `ORG`.
The processes are started by gateway_process.py, which reads their listening lines.
"""

from __future__ import annotations

import pathlib
from collections.abc import Iterator

import httpx
import pytest
from gateway_process import ORG, Stack, start_stack


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """The stack's data dir (its SQLite file is `usage.sqlite3`)."""
    return tmp_path_factory.mktemp("gateway-data")


@pytest.fixture(scope="module")
def stack(data_dir: pathlib.Path) -> Iterator[Stack]:
    with start_stack(["--data-dir", str(data_dir)], data_dir / "serve.log") as running:
        yield running


@pytest.fixture
def http(stack: Stack) -> Iterator[httpx.Client]:
    with stack.client(ORG) as client:
        yield client
