"""The Dockerfile and docker-compose.yml, checked without a Docker engine.

What can go wrong without Docker is checked here: the compose file parses and
publishes both ports on 127.0.0.1 with the data volume and a health check; every
path the Dockerfile copies exists; every ``AMQP_SERVER_*`` variable either file
sets is one the broker reads; the image's command is an installed console
script; and the health check command really tells a serving broker (exit 0)
from a closed port or a refused login (exit 1).
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import re
import shlex
import socket
import subprocess
import sys
import tomllib
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
DATA_VOLUME_PATH = "/var/lib/amqp-server"


def clean_env(**overrides: str) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("AMQP_SERVER_")}
    return {**env, **overrides}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def dockerfile_instructions() -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` pairs, comments dropped and continuation lines joined."""
    instructions, pending = [], ""
    for line in (REPO / "Dockerfile").read_text().splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, arguments = (pending + line).strip().partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
        pending = ""
    assert not pending, "the Dockerfile ends inside a continued line"
    return instructions


def instruction(name: str) -> list[str]:
    return [arguments for keyword, arguments in dockerfile_instructions() if keyword == name]


def exec_form(arguments: str) -> list[str]:
    """The JSON array of an exec-form CMD (``["a", "b"]``)."""
    command = json.loads(arguments)
    assert isinstance(command, list) and all(isinstance(part, str) for part in command), arguments
    return command


def healthcheck_command() -> list[str]:
    (arguments,) = instruction("HEALTHCHECK")
    options, _, command = arguments.partition("CMD ")
    assert all(option.startswith("--") for option in options.split()), options
    return exec_form(command)


def dockerfile_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for arguments in instruction("ENV"):
        for pair in shlex.split(arguments):
            name, _, value = pair.partition("=")
            env[name] = value
    return env


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


@pytest.fixture(scope="module")
def service(compose: dict) -> dict:
    """The broker's service (the others are the seed example's producer and consumer)."""
    return compose["services"]["amqp"]


@pytest.fixture(scope="module")
def broker_help() -> str:
    result = subprocess.run(
        [sys.executable, "-m", "amqp_server", "--help"], capture_output=True, text=True, cwd=REPO, timeout=30
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def run_healthcheck(port: int, **env: str) -> subprocess.CompletedProcess[str]:
    """The image's HEALTHCHECK command, with this interpreter and ``port`` for the container's 5672."""
    command = healthcheck_command()
    assert command[0] == "python"
    arguments = [str(port) if part == "5672" else part for part in command[1:]]
    return subprocess.run(
        [sys.executable, *arguments], capture_output=True, text=True, cwd=REPO, timeout=30, env=clean_env(**env)
    )


# ------------------------------------------------------------------ Dockerfile


def test_dockerfile_copies_only_paths_that_exist() -> None:
    copies = instruction("COPY")
    assert copies
    for arguments in copies:
        *sources, _destination = [part for part in arguments.split() if not part.startswith("--")]
        for source in sources:
            assert (REPO / source).exists(), f"COPY {source}: no such path in the repository"


def test_dockerfile_installs_what_pyproject_packages() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    copied = {part.rstrip("/") for arguments in instruction("COPY") for part in arguments.split()[:-1]}
    for pattern in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]:
        assert pattern.rstrip("*") in copied, f"package {pattern} is not copied into the image"
    assert {"pyproject.toml", "README.md"} <= copied  # the build reads both (readme = "README.md")
    assert any(re.search(r"\bpip install\b.* \"?\.(\[[\w,]+\])?\"?$", arguments) for arguments in instruction("RUN"))


def test_base_image_python_satisfies_requires_python() -> None:
    (image,) = instruction("FROM")
    match = re.fullmatch(r"python:(\d+)\.(\d+)[\w.-]*", image)
    assert match, image
    requires = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"]
    minimum = tuple(int(part) for part in re.fullmatch(r">=(\d+)\.(\d+)", requires).groups())
    assert (int(match.group(1)), int(match.group(2))) >= minimum


def test_image_runs_as_a_non_root_user_it_creates() -> None:
    (user,) = instruction("USER")
    assert user not in ("root", "0")
    assert any(
        re.search(rf"\buseradd\b.*\b{user}$", arguments.split("&&")[0].strip()) for arguments in instruction("RUN")
    )


def test_image_exposes_amqp_amqps_management_and_prometheus_and_keeps_data_in_a_volume() -> None:
    exposed = {port for arguments in instruction("EXPOSE") for port in arguments.split()}
    assert exposed == {"5672", "5671", "15672", "15692"}
    assert instruction("VOLUME") == [DATA_VOLUME_PATH]
    env = dockerfile_env()
    assert env["AMQP_SERVER_DATA_DIR"] == DATA_VOLUME_PATH
    assert (env["AMQP_SERVER_PORT"], env["AMQP_SERVER_TLS_PORT"]) == ("5672", "5671")
    assert env["AMQP_SERVER_MANAGEMENT_PORT"] == "15672"
    assert env["AMQP_SERVER_PROMETHEUS_PORT"] == "15692"
    assert env["AMQP_SERVER_HOST"] == "0.0.0.0"


def test_image_command_is_the_installed_console_script() -> None:
    (cmd,) = instruction("CMD")
    command = exec_form(cmd)
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert command[0] in scripts
    module_name, _, function = scripts[command[0]].partition(":")
    assert callable(getattr(importlib.import_module(module_name), function))


def test_healthcheck_is_a_module_of_the_package() -> None:
    command = healthcheck_command()
    assert command[:2] == ["python", "-m"]
    assert importlib.util.find_spec(command[2]) is not None, command[2]
    assert command[2].startswith("amqp_server.")


# ------------------------------------------------------------------ docker-compose.yml


def test_compose_builds_this_directory_and_publishes_its_ports_on_loopback(service: dict) -> None:
    assert service["build"] == "."
    assert sorted(service["ports"]) == [
        "127.0.0.1:15672:15672",
        "127.0.0.1:15692:15692",
        "127.0.0.1:5671:5671",
        "127.0.0.1:5672:5672",
    ]


def test_compose_keeps_data_in_a_named_volume_at_the_image_volume_path(compose: dict, service: dict) -> None:
    mounts = [volume.split(":") for volume in service["volumes"]]
    named = [source for source, target, *_ in mounts if target == DATA_VOLUME_PATH]
    assert len(named) == 1 and named[0] in compose["volumes"], mounts


def test_compose_healthcheck_is_the_image_healthcheck(service: dict) -> None:
    check = service["healthcheck"]
    assert check["test"] == ["CMD", *healthcheck_command()]
    for duration in ("interval", "timeout", "start_period"):
        assert re.fullmatch(r"\d+(ms|s|m)", check[duration]), check[duration]


@pytest.mark.parametrize("name, script", [("producer", "send.py"), ("consumer", "receive.py")])
def test_example_services_run_the_seed_code_once_the_broker_is_healthy(compose: dict, name: str, script: str) -> None:
    example = compose["services"][name]
    assert example["depends_on"] == {"amqp": {"condition": "service_healthy"}}
    assert example["network_mode"] == "service:amqp"  # so the seed's 'localhost' is the broker
    source, target = example["volumes"][0].split(":")[:2]
    assert (REPO / source / script).is_file()
    assert f"python {target}/{script}" in example["command"][-1]


def test_example_send_is_the_seed_verbatim() -> None:
    seed = REPO.parent / "shared" / "seed" / "send.py"
    if seed.is_file():  # the seed lives beside the repo in the workspace and in CI
        assert (REPO / "examples" / "send.py").read_bytes() == seed.read_bytes()
    assert "pika.ConnectionParameters('localhost')" in (REPO / "examples" / "send.py").read_text()


def test_every_variable_the_files_set_is_one_the_broker_reads(service: dict, broker_help: str) -> None:
    variables = set(dockerfile_env()) | set(service.get("environment", {}))
    assert variables
    for name in sorted(variables):
        assert f"[{name}]" in broker_help, f"{name} is not a setting of amqp-server (see --help)"


def test_failover_profile_runs_two_restarted_brokers_on_its_postgres(compose: dict, broker_help: str) -> None:
    """README's Standby and failover: ``docker compose --profile failover up``."""
    services = compose["services"]
    brokers = [services[name] for name in ("amqp-a", "amqp-b")]
    assert all(services[name]["profiles"] == ["failover"] for name in ("postgres", "amqp-a", "amqp-b"))
    assert "profiles" not in services["amqp"]  # the plain broker still starts by default
    (store,) = {broker["environment"]["AMQP_SERVER_STORE"] for broker in brokers}  # one database for both
    assert store.startswith("postgresql://") and "@postgres:" in store
    for broker in brokers:
        assert broker["build"] == "." and broker["restart"] == "unless-stopped"  # a broker that lost the lease exits
        assert broker["depends_on"] == {"postgres": {"condition": "service_healthy"}}
        assert all(port.startswith("127.0.0.1:") for port in broker["ports"])
        for name in broker["environment"]:
            assert f"[{name}]" in broker_help, f"{name} is not a setting of amqp-server (see --help)"
    data = [volume.split(":")[0] for broker in brokers for volume in broker["volumes"]]
    assert len(set(data)) == 2 and set(data) <= set(compose["volumes"])  # a data dir each


# ------------------------------------------------------------------ the health check itself


def test_healthcheck_passes_against_a_serving_broker(broker: SimpleNamespace) -> None:
    result = run_healthcheck(broker.port)
    assert result.returncode == 0, result.stderr


def test_healthcheck_fails_against_a_closed_port() -> None:
    result = run_healthcheck(free_port())
    assert result.returncode == 1
    assert "unhealthy" in result.stderr


def test_healthcheck_fails_when_the_login_is_refused(broker: SimpleNamespace) -> None:
    result = run_healthcheck(broker.port, AMQP_SERVER_HEALTHCHECK_PASSWORD="not-the-password")
    assert result.returncode == 1
    assert "403" in result.stderr


def test_healthcheck_fails_when_the_vhost_cannot_be_opened(broker: SimpleNamespace) -> None:
    command = healthcheck_command()
    result = subprocess.run(
        [sys.executable, *command[1:3], "--port", str(broker.port), "--vhost", "no-such-vhost"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=30,
        env=clean_env(),
    )
    assert result.returncode == 1
    assert "530" in result.stderr
