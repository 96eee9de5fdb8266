"""A real `usage-service` subcommand run as a process by the tests: stdout read line by line on a
thread (so a test can wait for the "listening" lines), stderr to a file, stopped with SIGTERM.

The environment is stripped of USAGE_* variables: the flags a test gives are the whole configuration.
"""

from __future__ import annotations

import os
import pathlib
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading

START_TIMEOUT_S = 120.0  # a bound on a hang, not a performance threshold (the demo loads 30,000 events)
EXIT_TIMEOUT_S = 30.0


def command() -> list[str]:
    """The installed `usage-service` console script (beside this Python), else `python -m server.cli`."""
    script = pathlib.Path(sys.executable).parent / "usage-service"
    if script.is_file():
        return [str(script)]
    found = shutil.which("usage-service")
    return [found] if found else [sys.executable, "-m", "server.cli"]


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("USAGE_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """`usage-service <args>` to completion, with a clean environment; its output as text."""
    return subprocess.run(
        [*command(), *args], capture_output=True, text=True, env=clean_env(), timeout=timeout
    )


class Process:
    """`usage-service <args>`, its stdout lines collected in `lines` as they are waited for."""

    def __init__(self, args: list[str], stderr_path: pathlib.Path) -> None:
        self._stderr_file = stderr_path.open("w")
        self.stderr_path = stderr_path
        self.proc = subprocess.Popen(
            [*command(), *args], stdout=subprocess.PIPE, stderr=self._stderr_file, text=True, env=clean_env()
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_for(self, pattern: re.Pattern[str]) -> re.Match[str]:
        """Read stdout up to the first line matching `pattern`; fail if the process exits first."""
        while True:
            try:
                line = self._queue.get(timeout=START_TIMEOUT_S)
            except queue.Empty:
                raise AssertionError(f"no line like {pattern.pattern}; stdout: {self.lines}") from None
            if line is None:
                code = self.proc.wait()
                raise AssertionError(f"exited with {code}: {self.lines}\n{self.stderr_path.read_text()}")
            self.lines.append(line)
            if m := pattern.match(line):
                return m

    def rest_of_stdout(self) -> list[str]:
        rest = []
        while (line := self._queue.get(timeout=EXIT_TIMEOUT_S)) is not None:
            rest.append(line)
        return rest

    def terminate(self) -> int:
        """SIGTERM, then the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=EXIT_TIMEOUT_S)
        finally:
            self.close()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._stderr_file.close()
