"""Every setting has an env var and a flag (docs/operations.md): the flags are generated from the `Settings`
fields, so each field is parsed here as `serve --field-name VALUE` and as `USAGE_FIELD_NAME`, and the
flag must win over the variable."""

from __future__ import annotations

import dataclasses
import os
import pathlib
from typing import Any

import pytest

from server import cli
from server.config import ENV_PREFIX, Settings

FIELDS = dataclasses.fields(Settings)


def flag(field: dataclasses.Field[Any]) -> str:
    return "--" + field.name.replace("_", "-")


def other_value(field: dataclasses.Field[Any], step: int) -> Any:
    """A valid value of the field, other than its default (and other for each step)."""
    if choices := field.metadata.get("choices"):
        return [c for c in choices if c != field.default][step - 1]
    if isinstance(field.default, int):
        return field.default + step  # workers: 2 or 3, within 1..64
    if isinstance(field.default, float):
        return field.default + step / 2
    return f"{field.name}-{step}"


def parse_settings(argv: list[str], tmp_path: pathlib.Path) -> Settings:
    """`usage-service serve ARGV` as the CLI builds its settings (the data dir private to the test)."""
    if "--data-dir" not in argv and ENV_PREFIX + "DATA_DIR" not in os.environ:
        argv = [*argv, "--data-dir", str(tmp_path / "data")]
    return cli._settings(cli.build_parser().parse_args(["serve", *argv]))


@pytest.fixture(autouse=True)
def no_usage_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in {ENV_PREFIX + f.name.upper() for f in FIELDS}:
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize("field", FIELDS, ids=lambda f: f.name)
def test_every_setting_has_a_serve_flag_that_beats_its_env_var(
    field: dataclasses.Field[Any], tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if field.name == "log_format":  # two choices only: the env var takes the default, the flag the other
        from_env, from_flag = field.default, other_value(field, 1)
    else:
        from_env, from_flag = other_value(field, 1), other_value(field, 2)
    if field.name == "data_dir":
        from_env, from_flag = str(tmp_path / "env"), str(tmp_path / "flag")
    assert from_flag != field.default

    assert getattr(parse_settings([flag(field), str(from_flag)], tmp_path), field.name) == from_flag
    monkeypatch.setenv(ENV_PREFIX + field.name.upper(), str(from_env))
    assert getattr(parse_settings([], tmp_path), field.name) == from_env
    assert getattr(parse_settings([flag(field), str(from_flag)], tmp_path), field.name) == from_flag


@pytest.mark.parametrize("field", FIELDS, ids=lambda f: f.name)
def test_each_flag_help_names_its_env_var_and_default(field: dataclasses.Field[Any]) -> None:
    help_text = cli._flag_help(field)
    assert field.metadata["help"] in help_text
    assert help_text.endswith(f"(env {ENV_PREFIX}{field.name.upper()}, default {_shown(field.default)})")
    assert ("`ps`" in help_text) == (field.name in ("jwt_secret", "cursor_secret"))


def _shown(default: Any) -> str:
    return "unset" if default == "" else f"{default:g}" if isinstance(default, float) else str(default)


def test_flags_keep_their_validation() -> None:
    parser = cli.build_parser()
    for argv in (["--workers", "0"], ["--workers", "65"], ["--log-format", "xml"], ["--port", "x"]):
        with pytest.raises(SystemExit):
            parser.parse_args(["serve", *argv])


def test_other_subcommands_take_the_settings_they_use(tmp_path: pathlib.Path) -> None:
    parser = cli.build_parser()
    gateway = parser.parse_args(
        [
            "gateway",
            "--port",
            "9000",
            "--grpc-target",
            "h:1",
            "--gateway-timeout-s",
            "2",
            "--grace-period-s",
            "3",
        ]
    )
    # `gateway --port` is the gateway's HTTP port, not the gRPC one.
    assert cli._flag_overrides(gateway) == {
        "http_port": 9000,
        "grpc_target": "h:1",
        "gateway_timeout_s": 2.0,
        "grace_period_s": 3.0,
    }
    token = parser.parse_args(
        ["token", "--org", "o", "--jwt-private-key-file", "k.pem", "--jwt-issuer", "me", "--data-dir", "d"]
    )
    assert cli._flag_overrides(token) == {
        "jwt_private_key_file": "k.pem",
        "jwt_issuer": "me",
        "data_dir": "d",
    }
    for argv in (["migrate"], ["rollups", "list"], ["rollups", "add-dimension", "region"]):
        args = parser.parse_args(
            [*argv, "--database-url", "sqlite:///x", "--data-dir", "d", "--jwt-secret", "s"]
        )
        assert cli._flag_overrides(args) == {
            "database_url": "sqlite:///x",
            "data_dir": "d",
            "jwt_secret": "s",
        }
