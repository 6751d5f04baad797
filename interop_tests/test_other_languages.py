"""Clients in other languages against the broker: Go's amqp091-go, Node's amqplib and amqp-client.js.

Each client is a small program under ``interop_tests/clients/`` that connects, declares,
publishes and consumes, gets, publishes with confirms, and closes a channel while the broker
closes it too (a publish to a missing exchange, then channel.close at once).  It prints
"ok NAME" per scenario and "done", or "FAIL NAME: error" and exits 1.  These clients are
stricter than pika about the wire: amqp-client.js lost frame sync on a non-empty reserved
field, and the crossing close killed the connection of all three.

The toolchains come from the system (Debian's golang-go and golang-github-rabbitmq-amqp091-go-dev,
Node with ``npm ci`` in ``clients/node``; ``.ci/run`` installs them).  Where one is missing the
tests fail under CI (``CI=true``) and are skipped elsewhere, naming what to install.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest

CLIENTS = Path(__file__).resolve().parent / "clients"
NODE_DIR = CLIENTS / "node"
GO_DIR = CLIENTS / "go" / "amqp091"
GOPATH = Path("/usr/share/gocode")  # where Debian's Go library packages put their sources
AMQP091_SOURCE = GOPATH / "src" / "github.com" / "rabbitmq" / "amqp091-go"
RUN_TIMEOUT = 120.0  # one client program, all scenarios; each wait inside it gives up within 10 s
SCENARIOS = ["connect", "publish-consume", "get", "confirms", "crossing-close", "close"]


def missing(what: str, install: str) -> None:
    message = f"{what} is not installed ({install}; .ci/run does this)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


def run_client(command: list[str], cwd: Path, broker: SimpleNamespace) -> str:
    prefix = f"lang-{uuid.uuid4().hex[:10]}"
    try:
        result = subprocess.run(
            [*command, broker.url, prefix], cwd=cwd, capture_output=True, text=True, timeout=RUN_TIMEOUT
        )
    except subprocess.TimeoutExpired as error:
        pytest.fail(f"{command[0]} did not finish in {RUN_TIMEOUT} s; output:\n{error.stdout}\n{error.stderr}")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    return result.stdout


def assert_all_scenarios_passed(stdout: str) -> None:
    lines = stdout.split("\n")
    assert lines[: len(SCENARIOS) + 1] == [f"ok {name}" for name in SCENARIOS] + ["done"], stdout


@pytest.fixture(scope="session")
def go_client(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Go client program, built in GOPATH mode against Debian's amqp091-go (no module download)."""
    if shutil.which("go") is None or not AMQP091_SOURCE.is_dir():
        missing("Go with amqp091-go", "apt-get install golang-go golang-github-rabbitmq-amqp091-go-dev")
    binary = tmp_path_factory.mktemp("go-client") / "amqp091"
    env = {**os.environ, "GO111MODULE": "off", "GOPATH": str(GOPATH), "GOFLAGS": ""}
    if "HOME" not in env and "GOCACHE" not in env:
        env["GOCACHE"] = str(tmp_path_factory.mktemp("go-cache"))
    try:
        build = subprocess.run(
            ["go", "build", "-o", str(binary), "."], cwd=GO_DIR, env=env, capture_output=True, text=True, timeout=300
        )
    except subprocess.TimeoutExpired as error:
        pytest.fail(f"go build did not finish in 300 s:\n{error.stderr}")
    assert build.returncode == 0, build.stdout + build.stderr
    return binary


@pytest.fixture(scope="session")
def node() -> str:
    path = shutil.which("node")
    if (
        path is None
        or not (NODE_DIR / "node_modules" / "amqplib").is_dir()
        or not (NODE_DIR / "node_modules" / "@cloudamqp" / "amqp-client").is_dir()
    ):
        missing(
            "Node.js with amqplib and @cloudamqp/amqp-client", f"apt-get install nodejs npm, then npm ci in {NODE_DIR}"
        )
    return path


def test_go_amqp091(broker: SimpleNamespace, go_client: Path) -> None:
    assert_all_scenarios_passed(run_client([str(go_client)], GO_DIR, broker))


def test_node_amqplib(broker: SimpleNamespace, node: str) -> None:
    assert_all_scenarios_passed(run_client([node, "amqplib.js"], NODE_DIR, broker))


def test_node_amqp_client_js(broker: SimpleNamespace, node: str) -> None:
    assert_all_scenarios_passed(run_client([node, "amqp_client_js.js"], NODE_DIR, broker))
