#!/usr/bin/env bash
# The whole benchmark in one command, from anywhere: bash bench/run.sh --events 1000000 [--data-dir DIR] [--json F]
# Runs `python -m bench` from the repository root with $PYTHON (default: .venv/bin/python if present, else python3).
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
exec "$PYTHON" -m bench "$@"
