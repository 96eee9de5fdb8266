"""The real `usage-service` process refused by its environment: a busy port, an unusable data dir, a
database that does not answer, a token without the server's secret, a variable that does not parse.
Each ends with exit code 2 and one line on stderr that names the problem and the flag or variable
that fixes it, never a traceback (server/startup_errors.py). Also `--version`."""

from __future__ import annotations

import importlib.metadata
import os
import pathlib
import socket
import subprocess
from collections.abc import Iterator

import cli_process
import pytest

pytestmark = pytest.mark.e2e


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port something listens on."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield int(listener.getsockname()[1])


@pytest.fixture
def closed_port() -> int:
    """A port nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def refused(result: subprocess.CompletedProcess[str], *expected: str) -> str:
    """The one stderr line of a command refused with exit code 2; it must contain `expected`."""
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    line = result.stderr.strip()
    assert "\n" not in line and "Traceback" not in line, result.stderr
    assert line.startswith("usage-service: "), line
    for text in expected:
        assert text in line, (text, line)
    return line


def test_version() -> None:
    result = cli_process.run("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"usage-service {importlib.metadata.version('usage-service')}"


@pytest.mark.parametrize(
    ("args", "fix"),
    [
        (["serve", "--port", "{port}"], "choose another port with --port or USAGE_PORT"),
        (["serve", "--workers", "2", "--port", "{port}"], "choose another port with --port or USAGE_PORT"),
        (["serve", "--port", "0", "--http-port", "{port}"], "with --http-port or USAGE_HTTP_PORT"),
        (["serve", "--port", "0", "--metrics-port", "{port}"], "with --metrics-port or USAGE_METRICS_PORT"),
        (["gateway", "--port", "{port}"], "choose another port with --port or USAGE_HTTP_PORT"),
    ],
    ids=["grpc", "grpc-workers", "http", "metrics", "gateway"],
)
def test_a_busy_port_is_one_line_naming_the_flag(
    busy_port: int, tmp_path: pathlib.Path, args: list[str], fix: str
) -> None:
    argv = [a.format(port=busy_port) for a in args]
    if argv[0] == "serve":
        argv += ["--data-dir", str(tmp_path / "data")]
    line = refused(cli_process.run(*argv), f"cannot listen on 127.0.0.1:{busy_port}", fix)
    assert "address already in use" in line


@pytest.mark.parametrize("command", [["serve", "--port", "0"], ["migrate"]], ids=["serve", "migrate"])
def test_a_data_dir_that_is_not_a_directory(tmp_path: pathlib.Path, command: list[str]) -> None:
    not_a_dir = tmp_path / "usage-data"
    not_a_dir.write_text("a file")
    refused(
        cli_process.run(*command, "--data-dir", str(not_a_dir)),
        f"cannot use the data dir {not_a_dir} (not a directory)",
        "--data-dir or USAGE_DATA_DIR",
    )


@pytest.mark.parametrize(
    "command",
    [["serve", "--port", "0"], ["migrate"], ["rollups", "list"]],
    ids=["serve", "migrate", "rollups"],
)
def test_a_database_that_does_not_answer(
    tmp_path: pathlib.Path, closed_port: int, command: list[str]
) -> None:
    url = f"postgresql+psycopg://usage:hunter2@127.0.0.1:{closed_port}/usage"
    line = refused(
        cli_process.run(*command, "--database-url", url, "--data-dir", str(tmp_path / "data")),
        f"cannot connect to the database postgresql+psycopg://usage:***@127.0.0.1:{closed_port}/usage",
        "check --database-url or USAGE_DATABASE_URL",
    )
    assert "hunter2" not in line


def test_a_database_url_of_another_kind(tmp_path: pathlib.Path) -> None:
    refused(
        cli_process.run("migrate", "--database-url", "mysql://u:pw@db/usage", "--data-dir", str(tmp_path)),
        "unusable database URL mysql://u:***@db/usage",
        "--database-url or USAGE_DATABASE_URL",
    )


def test_token_refuses_to_invent_a_secret(tmp_path: pathlib.Path) -> None:
    # Run where no server keeps its data (say, from another directory), it used to create a secret
    # that no server shares, and so a token every server refused.
    result = subprocess.run(
        [*cli_process.command(), "token", "--org", "org_x"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=cli_process.clean_env(),
        timeout=60,
    )
    refused(
        result,
        f"no JWT secret in {tmp_path.resolve() / 'usage-data'}",
        "--data-dir or USAGE_DATA_DIR",
        "USAGE_JWT_SECRET",
    )
    assert result.stdout == "" and list(tmp_path.iterdir()) == [], "nothing written"


def test_token_signs_with_the_secret_a_server_created(tmp_path: pathlib.Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "jwt-secret").write_text("s" * 48)
    result = cli_process.run("token", "--org", "org_x", "--data-dir", str(data_dir))
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.count(".") == 2  # just the token
    assert sorted(p.name for p in data_dir.iterdir()) == ["jwt-secret"]  # no cursor secret either


def test_a_setting_that_does_not_parse(tmp_path: pathlib.Path) -> None:
    env = cli_process.clean_env() | {"USAGE_PORT": "fifty"}
    result = subprocess.run(
        [*cli_process.command(), "serve", "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    refused(result, "USAGE_PORT", "'fifty'")
    assert os.listdir(tmp_path) == []
