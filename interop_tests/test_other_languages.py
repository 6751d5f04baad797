"""Clients in other languages against the broker: Go's amqp091-go, Node's amqplib and amqp-client.js,
and RabbitMQ's Java client.

Each client is a small program under ``interop_tests/clients/`` (see ``other_languages.py`` for how they are
built and run). On the session broker they connect, publish and consume, get, publish with confirms, close a
channel while the broker closes it too (a publish to a missing exchange, then channel.close at once), use
transactions, get a mandatory publish returned (312 NO_ROUTE), see basic.cancel when their queue is deleted,
respect prefetch, get a nacked message redelivered, dead-letter (headers of every field type surviving), route
through exchange-to-exchange and headers bindings, send a 1 MiB body over many frames, get RabbitMQ's
channel.close codes and texts, do an RPC over direct reply-to, see a TTL-expired message dead-lettered, get a
publish beyond x-max-length nacked (reject-publish), get messages by priority, have an alternate exchange take
what is unroutable, keep an idle connection with a 1 s heartbeat alive for 4 s, update the connection's secret
and work on (all but Java, whose 5.0 client has no API for it), and see a delivery left unacked past an
``x-consumer-timeout`` (the queue's and the consumer's; Go and Java a basic.get too) close its channel with
RabbitMQ's 406 and come again, redelivered, on another channel. On a broker of their own they connect over TLS
and see connection.blocked and connection.unblocked around a real disk alarm. These clients are stricter than
pika about the wire: amqp-client.js lost frame sync on a non-empty reserved field, the crossing close killed
the connection of the Go and Node ones, and amqp091-go took a publish nacked by a reject-publish queue as
acked when the broker's next multiple ack covered it.

The four programs on the session broker are started together by the ``started`` fixture (they mostly
wait: the heartbeat and consumer-timeout scenarios), and each test collects its own program's output;
the flagged ones share a disk alarm, so they run one after another.

The toolchains come from the system (Debian's golang-go and golang-github-rabbitmq-amqp091-go-dev,
a JDK and librabbitmq-client-java, Node with ``npm ci`` in ``clients/node``; ``.ci/run`` installs
them).  Where one is missing the tests fail under CI (``CI=true``) and are skipped elsewhere.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from .other_languages import (
    AMQP091_SOURCE,
    CLIENTS,
    GO_DIR,
    GOPATH,
    JAVA_DIR,
    NODE_DIR,
    RUN_TIMEOUT,
    StartedClient,
    assert_scenarios_passed,
    build_go_program,
    flagged_broker,
    go_client,
    java_client,
    missing,
    node,
    run_client,
)

# re-exported: test modules for other features import the fixtures and helpers from here
__all__ = [
    "AMQP091_SOURCE",
    "CLIENTS",
    "GOPATH",
    "JAVA_DIR",
    "NODE_DIR",
    "RUN_TIMEOUT",
    "StartedClient",
    "assert_scenarios_passed",
    "build_go_program",
    "flagged_broker",
    "go_client",
    "java_client",
    "missing",
    "node",
    "run_client",
]

BASICS = ["connect", "publish-consume", "get", "confirms", "crossing-close"]
FEATURES = [
    "transactions",
    "return",
    "consumer-cancel",
    "qos",
    "nack-requeue",
    "dead-letter",
    "exchange-binding",
    "headers-exchange",
    "large-message",
    "channel-errors",
    "direct-reply-to",
    "ttl-expired",
    "reject-publish",
    "priority",
    "alternate-exchange",
    "heartbeat",
    "update-secret",
    "consumer-timeout",
]
SCENARIOS = [*BASICS, *FEATURES, "close"]
# amqplib has no API for the tx class (tx.select/commit/rollback), so its program leaves that out
AMQPLIB_SCENARIOS = [name for name in SCENARIOS if name != "transactions"]
# RabbitMQ's Java client 5.0 has no connection.update-secret (no method class, no Connection.updateSecret)
JAVA_SCENARIOS = [name for name in SCENARIOS if name != "update-secret"]
FLAGGED = ["tls", "blocked"]


def run_flagged(command: list[str], cwd: Path, broker: SimpleNamespace) -> None:
    try:
        assert_scenarios_passed(run_client(command, cwd, broker.url, "flagged", env=broker.env), FLAGGED)
    finally:
        broker.filler.unlink(missing_ok=True)  # a failed client may leave the disk alarm raised


# The programs the session-broker tests run: test name -> (the fixture giving its toolchain, its command, its dir)
PROGRAMS: dict[str, tuple[str, Callable[[Any], list[str]], Path]] = {
    "test_go_amqp091": ("go_client", lambda binary: [str(binary)], GO_DIR),
    "test_node_amqplib": ("node", lambda node: [node, "amqplib.js"], NODE_DIR),
    "test_node_amqp_client_js": ("node", lambda node: [node, "amqp_client_js.js"], NODE_DIR),
    "test_java_rabbitmq_client": ("java_client", lambda command: command, JAVA_DIR),
}


@pytest.fixture(scope="module")
def started(request: pytest.FixtureRequest, broker: SimpleNamespace) -> Iterator[dict[str, StartedClient]]:
    """The programs of the selected tests of ``PROGRAMS``, all started at once on the session broker:
    each spends most of its ~4 s waiting (the heartbeat and consumer-timeout scenarios), so together
    they take about as long as one. A toolchain that is missing is left to the test to report."""
    selected = {
        getattr(item, "originalname", item.name)
        for item in request.session.items
        if getattr(item, "module", None) is request.module
    }
    programs: dict[str, StartedClient] = {}
    try:
        for test, (fixture, command, cwd) in PROGRAMS.items():
            if test in selected:
                try:
                    tool = request.getfixturevalue(fixture)
                except (pytest.skip.Exception, pytest.fail.Exception):
                    continue  # the test requests the fixture too, and skips or fails with its message
                programs[test] = StartedClient(command(tool), cwd, broker)
        yield programs
    finally:
        for program in programs.values():
            program.stop()


def test_go_amqp091(started: dict[str, StartedClient], go_client: Path) -> None:
    assert_scenarios_passed(started["test_go_amqp091"].output(), SCENARIOS)


def test_go_amqp091_tls_and_blocked(flagged_broker: SimpleNamespace, go_client: Path) -> None:
    run_flagged([str(go_client)], GO_DIR, flagged_broker)


def test_node_amqplib(started: dict[str, StartedClient], node: str) -> None:
    assert_scenarios_passed(started["test_node_amqplib"].output(), AMQPLIB_SCENARIOS)


def test_node_amqplib_tls_and_blocked(flagged_broker: SimpleNamespace, node: str) -> None:
    run_flagged([node, "amqplib.js"], NODE_DIR, flagged_broker)


def test_node_amqp_client_js(started: dict[str, StartedClient], node: str) -> None:
    assert_scenarios_passed(started["test_node_amqp_client_js"].output(), SCENARIOS)


def test_node_amqp_client_js_tls_and_blocked(flagged_broker: SimpleNamespace, node: str) -> None:
    run_flagged([node, "amqp_client_js.js"], NODE_DIR, flagged_broker)


def test_java_rabbitmq_client(started: dict[str, StartedClient], java_client: list[str]) -> None:
    assert_scenarios_passed(started["test_java_rabbitmq_client"].output(), JAVA_SCENARIOS)


def test_java_rabbitmq_client_tls_and_blocked(flagged_broker: SimpleNamespace, java_client: list[str]) -> None:
    run_flagged(java_client, JAVA_DIR, flagged_broker)
