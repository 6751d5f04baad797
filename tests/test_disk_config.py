"""``disk_free_limit``: RabbitMQ's units (50MB, 1GB, 500MiB...), ``mem_relative:RATIO``, rabbitmq.conf's
``disk_free_limit.absolute`` / ``.relative`` as TOML dotted keys, and one-line errors that exit with 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from amqp_server.ops import cli
from amqp_server.ops.config import Config, load_config, physical_memory
from amqp_server.ops.errors import ConfigError

NO_ENV: dict[str, str] = {}


def limit_of(text: str) -> int:
    return load_config({"disk_free_limit": text}, environ=NO_ENV).disk_free_limit


def test_the_default_is_rabbitmqs_50mb() -> None:
    assert Config().disk_free_limit == load_config(environ=NO_ENV).disk_free_limit == 50_000_000


@pytest.mark.parametrize(
    "text, expected",
    [
        ("52428800", 52428800),
        ("0", 0),
        ("50MB", 50_000_000),
        ("50mb", 50_000_000),
        ("50kB", 50_000),
        ("2GB", 2_000_000_000),
        ("1Gb", 10**9),
        ("500MiB", 500 * 2**20),
        ("1GiB", 2**30),
        ("8kiB", 8192),
        ("3KIB", 3072),
        ("1k", 1024),
        ("1M", 2**20),
        ("2g", 2 * 2**30),
        (" 50MB ", 50_000_000),
    ],
)
def test_absolute_sizes_with_rabbitmq_units(text: str, expected: int) -> None:
    assert limit_of(text) == expected


def test_relative_to_physical_memory() -> None:
    assert limit_of("mem_relative:1.5") == round(1.5 * physical_memory())
    assert limit_of("mem_relative:0") == 0


def test_environment_variable() -> None:
    assert load_config(environ={"AMQP_SERVER_DISK_FREE_LIMIT": "1GB"}).disk_free_limit == 10**9


@pytest.mark.parametrize(
    "toml, expected",
    [
        ('disk_free_limit = "1GB"', 10**9),
        ("disk_free_limit = 1000", 1000),
        ('disk_free_limit = "mem_relative:2"', 2 * physical_memory()),
        ('disk_free_limit.absolute = "500MiB"', 500 * 2**20),  # rabbitmq.conf's keys, as TOML dotted keys
        ("disk_free_limit.absolute = 123", 123),
        ("disk_free_limit.relative = 1.0", physical_memory()),
        ("disk_free_limit = {relative = 2}", 2 * physical_memory()),
    ],
)
def test_the_file_takes_a_size_or_rabbitmq_conf_keys(tmp_path: Path, toml: str, expected: int) -> None:
    path = tmp_path / "amqp-server.toml"
    path.write_text(toml + "\n")
    assert load_config(config_file=path, environ=NO_ENV).disk_free_limit == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "x",
        "-1",
        "1.5GB",
        "1TB",
        "50 MB",
        "mem_relative:",
        "mem_relative:-1",
        "mem_relative:nan",
        "mem_relative:inf",
        "relative:1.5",
    ],
)
def test_bad_flags_are_one_line_errors(text: str) -> None:
    with pytest.raises(ConfigError) as caught:
        limit_of(text)
    assert str(caught.value) == (
        f"--disk-free-limit must be a size (50MB, 1GB, 500MiB, a number of bytes) or mem_relative:RATIO, got {text!r}"
    )


@pytest.mark.parametrize(
    "toml, problem",
    [
        (
            "disk_free_limit = -5",
            "must be a size (50MB, 1GB, 500MiB, a number of bytes) or mem_relative:RATIO, got integer -5",
        ),
        (
            "disk_free_limit = true",
            "must be a size (50MB, 1GB, 500MiB, a number of bytes) or mem_relative:RATIO, got boolean True",
        ),
        (
            'disk_free_limit.relative = "x"',
            "must be a table with one key, absolute (a size) or relative (a number), got {'relative': 'x'}",
        ),
        (
            "disk_free_limit.relative = -1",
            "must be a table with one key, absolute (a size) or relative (a number), got {'relative': -1}",
        ),
        (
            'disk_free_limit = {absolute = "1GB", relative = 1}',
            "must be a table with one key, absolute (a size) or "
            "relative (a number), got {'absolute': '1GB', "
            "'relative': 1}",
        ),
    ],
)
def test_bad_file_values_name_the_key_and_file(tmp_path: Path, toml: str, problem: str) -> None:
    path = tmp_path / "amqp-server.toml"
    path.write_text(toml + "\n")
    with pytest.raises(ConfigError) as caught:
        load_config(config_file=path, environ=NO_ENV)
    assert str(caught.value) == f"disk_free_limit: {problem} (from {path})"


def test_main_exits_2_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--disk-free-limit", "lots"]) == 2
    assert capsys.readouterr().err == (
        "amqp-server: invalid configuration: --disk-free-limit must be a size "
        "(50MB, 1GB, 500MiB, a number of bytes) or mem_relative:RATIO, got 'lots'\n"
    )
