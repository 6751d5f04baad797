"""Stream queues from Go (amqp091-go), Node (amqplib) and Java (RabbitMQ's Java client 5.0): declare, publish
with confirms, consume with basic.qos and manual acks from ``first`` and from an offset, checking every
``x-stream-offset`` header.

The programs are ``clients/go/streams/main.go``, ``clients/node/streams.js`` and ``clients/java/Streams.java``
(``AmqpClient URL PREFIX streams``); they print "ok NAME" per step and "done".  Toolchains, skipping and
running come from ``test_other_languages``.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from .test_other_languages import (
    CLIENTS,
    JAVA_DIR,
    NODE_DIR,
    build_go_program,
    java_client,
    node,
    run_client,
)

__all__ = ["java_client", "node"]  # the fixtures, imported for the Node and Java tests

GO_STREAMS_DIR = CLIENTS / "go" / "streams"
STEPS = ["connect", "declare-publish", "consume-first", "consume-offset", "delete", "close"]


def assert_all_steps_passed(stdout: str) -> None:
    lines = stdout.split("\n")
    assert lines[: len(STEPS) + 1] == [f"ok {name}" for name in STEPS] + ["done"], stdout


@pytest.fixture(scope="session")
def go_streams_client(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``clients/go/streams`` built as ``test_other_languages`` builds its Go client (GOPATH mode)."""
    return build_go_program(GO_STREAMS_DIR, tmp_path_factory)


def test_go_amqp091_streams(broker: SimpleNamespace, go_streams_client: Path) -> None:
    assert_all_steps_passed(run_client([str(go_streams_client)], GO_STREAMS_DIR, broker))


def test_node_amqplib_streams(broker: SimpleNamespace, node: str) -> None:
    assert_all_steps_passed(run_client([node, "streams.js"], NODE_DIR, broker))


def test_java_rabbitmq_client_streams(broker: SimpleNamespace, java_client: list[str]) -> None:
    assert_all_steps_passed(run_client(java_client, JAVA_DIR, broker, "streams"))
