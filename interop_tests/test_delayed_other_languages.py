"""Delayed messages from Go (amqp091-go), Node (amqplib) and Java (RabbitMQ's Java client 5.0) clients: each
program declares an x-delayed-message exchange, publishes with x-delay out of delay order and checks the messages
arrive in delay order and none early (see ``clients/go/delayed/main.go``, ``clients/node/delayed.js`` and
``clients/java/Delayed.java``, run as ``AmqpClient URL PREFIX delayed``).  Their "lateness MS" lines are
printed for information, not asserted on (no timed assertions).

Built and run with the helpers of ``test_other_languages`` (the same toolchains, skipped or failed the same
way when missing), against a broker process of this module's own: the session broker may be a RabbitMQ
without the plugin.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from .broker_process import BrokerProcess
from .test_other_languages import (
    CLIENTS,
    JAVA_DIR,
    NODE_DIR,
    build_go_program,
    java_client,
    node,
    run_client,
)

__all__ = ["java_client", "node"]  # the fixtures, imported to be used here

GO_DIR = CLIENTS / "go" / "delayed"
LINES = ["ok declare", "ok publish", "ok order", "ok not-early"]


@pytest.fixture(scope="module")
def delayed_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimpleNamespace]:
    process = BrokerProcess(tmp_path_factory.mktemp("delayed-languages")).start()
    try:
        yield SimpleNamespace(url=process.url)
    finally:
        process.stop()


@pytest.fixture(scope="module")
def go_delayed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Go program, built as ``test_other_languages`` builds its own (GOPATH mode, Debian's sources)."""
    return build_go_program(GO_DIR, tmp_path_factory)


def assert_passed(stdout: str) -> None:
    lines = stdout.strip().split("\n")
    assert lines[: len(LINES)] == LINES and lines[-1] == "done", stdout
    lateness = [line for line in lines if line.startswith("lateness ")]
    assert len(lateness) == 4, stdout
    print(*lateness, sep="\n")  # shown with -s: how late each message came, in ms


def test_go_delayed_messages(delayed_broker: SimpleNamespace, go_delayed: Path) -> None:
    assert_passed(run_client([str(go_delayed)], GO_DIR, delayed_broker))


def test_node_delayed_messages(delayed_broker: SimpleNamespace, node: str) -> None:
    assert_passed(run_client([node, "delayed.js"], NODE_DIR, delayed_broker))


def test_java_delayed_messages(delayed_broker: SimpleNamespace, java_client: list[str]) -> None:
    assert_passed(run_client(java_client, JAVA_DIR, delayed_broker, "delayed"))
