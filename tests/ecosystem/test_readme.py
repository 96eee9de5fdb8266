"""README.md's grpcurl and curl commands, run as written by bash against `usage-service serve --demo
--http-port` (only the ports differ: README's 50051 and 8080 become the ones the server got).

Each command of the "Calling it" and "HTTP/JSON gateway" blocks must succeed (grpcurl exit 0, HTTP 2xx),
but the one README shows failing on purpose, whose rich error details must print. The blocks' own
variable lines (TOKEN from `usage-service token`, dates from GNU date) run before the commands, in a
directory whose ./usage-data is the server's data dir, as for a reader in the repository.
"""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys

import cli_process
import pytest

README = pathlib.Path(__file__).resolve().parents[2] / "README.md"
GRPC_LISTENING = re.compile(r"^usage-service listening on (\S+):(\d+)$")
HTTP_LISTENING = re.compile(r"^usage-service gateway listening on http://\S+:(\d+)")
COMMAND = re.compile(r"^(grpcurl|curl) ")
MARK = "::readme-exit::"

pytestmark = pytest.mark.e2e


def bash_blocks(section: str) -> list[str]:
    """The ```bash blocks of one `## ` section of README.md."""
    text = README.read_text()
    start = text.index(f"\n## {section}\n")
    end = text.find("\n## ", start + 1)
    return re.findall(r"```bash\n(.*?)```", text[start : end if end > 0 else None], re.S)


def script_of(blocks: list[str], grpc_port: int, http_port: int) -> tuple[str, list[str]]:
    """One bash script running every line of the blocks; each command's stderr joins its stdout, and
    a marker line with its exit code follows it. Returns the script and the commands in order."""
    lines, commands = ["set -u"], []
    for block in blocks:
        for line in block.splitlines():
            line = line.replace("127.0.0.1:50051", f"127.0.0.1:{grpc_port}")
            line = line.replace("127.0.0.1:8080", f"127.0.0.1:{http_port}")
            if not line.strip() or line.startswith("#"):
                continue
            if COMMAND.match(line):
                commands.append(line)
                lines += [
                    f"echo '{MARK}start {len(commands) - 1}'",
                    f"{line} 2>&1",
                    f"rc=$?; echo; echo '{MARK}'$rc",
                ]
            else:
                lines.append(line)  # variables: A, B, H, TOKEN, FROM, TO, NOW
    return "\n".join(lines) + "\n", commands


def outputs(stdout: str, count: int) -> list[tuple[int, str]]:
    """(exit code, output) of each command, from the marker lines."""
    parts = re.split(rf"^{re.escape(MARK)}start \d+$", stdout, flags=re.M)[1:]
    assert len(parts) == count, stdout[-2000:]
    found = []
    for part in parts:
        body, _, code = part.rpartition(MARK)
        found.append((int(code.strip()), body))
    return found


def test_readme_commands_work_as_written(tmp_path: pathlib.Path) -> None:
    server = cli_process.Process(
        ["serve", "--demo", "--port", "0", "--http-port", "0", "--data-dir", str(tmp_path / "usage-data")],
        tmp_path / "serve.log",
    )
    try:
        grpc_port = int(server.wait_for(GRPC_LISTENING).group(2))
        http_port = int(server.wait_for(HTTP_LISTENING).group(1))
        blocks = bash_blocks("Calling it") + bash_blocks("HTTP/JSON gateway")
        script, commands = script_of(blocks, grpc_port, http_port)
        assert sum(c.startswith("grpcurl") for c in commands) >= 20
        assert sum(c.startswith("curl") for c in commands) >= 18
        # README's curl shows bodies; here any HTTP status >= 400 must fail the command too.
        prelude = 'curl() { command curl -sS --fail-with-body "$@"; }\n'
        env = cli_process.clean_env()
        env["PATH"] = f"{pathlib.Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        ran = subprocess.run(
            ["bash", "-c", prelude + script],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        assert server.terminate() == 0
    assert ran.returncode == 0, ran.stderr[-2000:]
    results = outputs(ran.stdout, len(commands))
    failed = [
        (command, code, body[-500:])
        for command, (code, body) in zip(commands, results, strict=True)
        if (code != 0) != ('"take":500' in command)  # the error example must fail, the others not
    ]
    assert not failed, failed
    by_text = dict(zip(commands, results, strict=True))
    error = next(body for command, (_, body) in by_text.items() if '"take":500' in command)
    assert "Code: InvalidArgument" in error and "google.rpc.ErrorInfo" in error
    assert "google.rpc.BadRequest" in error and '"field":"take"' in error and '"field":"skip"' in error
    verbose = next(body for command, (_, body) in by_text.items() if "my-trace-42" in command)
    assert "x-request-id: my-trace-42" in verbose
    headers = next(body for command, (_, body) in by_text.items() if "my-trace-43" in command)
    assert re.search(r"^x-request-id: my-trace-43\r?$", headers, re.M | re.I)
    # Reflection answers with the protos' comments; the gateway serves its API reference page.
    field = next(body for command, (_, body) in by_text.items() if command.endswith("Request.group_by"))
    assert "// How series are split: `none` (default), `metric_key`, or `dim:<key>`" in field
    page = next(body for command, (_, body) in by_text.items() if command.endswith('/docs"'))
    assert '<div id="swagger-ui"></div>' in page
