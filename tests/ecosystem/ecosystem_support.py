"""Constants and helpers shared by the ecosystem tests (importable as `ecosystem_support`)."""

from __future__ import annotations

import os
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[2]


def env_without_usage() -> dict[str, str]:
    """The environment without USAGE_* settings: what a test passes is the whole configuration."""
    return {k: v for k, v in os.environ.items() if not k.startswith("USAGE_")}
