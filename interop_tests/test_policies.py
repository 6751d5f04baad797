"""Policies against a broker process with pika: set through a definitions file at start, through the admin CLI
on the running broker (its management API) and on the stopped broker's data dir, they change how live queues
and exchanges behave, and survive a restart.  (``test_management_policies`` drives ``/api/policies`` itself.)
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pika

from .broker_process import BrokerProcess
from .pika_helpers import connect, get_all, message_count, publish, wait_for_message_count

REPO = Path(__file__).resolve().parent.parent
DEFINITIONS = {
    "policies": [
        {
            "vhost": "/",
            "name": "cap",
            "pattern": "^capped$",
            "apply-to": "queues",
            "definition": {"max-length": 2, "dead-letter-exchange": "", "dead-letter-routing-key": "overflow"},
            "priority": 1,
        },
        {
            "vhost": "/",
            "name": "ttl",
            "pattern": r"^short\.",
            "apply-to": "queues",
            "definition": {"message-ttl": 100, "dead-letter-exchange": "", "dead-letter-routing-key": "expired"},
            "priority": 0,
        },
        {
            "vhost": "/",
            "name": "ae",
            "pattern": "^orders$",
            "apply-to": "exchanges",
            "definition": {"alternate-exchange": "unrouted"},
            "priority": 0,
        },
    ]
}


def admin(data_dir: Path, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "amqp_server", *args, "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def declare_all(channel: pika.adapters.blocking_connection.BlockingChannel) -> None:
    for queue in ("capped", "overflow", "expired", "unrouted-q"):
        channel.queue_declare(queue, durable=True)
    channel.exchange_declare("orders", "direct", durable=True)
    channel.exchange_declare("unrouted", "fanout", durable=True)
    channel.queue_bind("unrouted-q", "unrouted")


def test_policies_change_live_queues_and_survive_a_restart(tmp_path: Path) -> None:
    definitions = tmp_path / "definitions.json"
    definitions.write_text(json.dumps(DEFINITIONS))
    data_dir = tmp_path / "data"
    broker = BrokerProcess(data_dir, "--load-definitions", str(definitions)).start()
    try:
        connection = connect(broker)
        channel = connection.channel()
        declare_all(channel)
        publish(channel, "capped", *(b"m%d" % n for n in range(5)))
        assert message_count(channel, "capped") == 2
        assert [body for body, _ in get_all(channel, "overflow")] == [b"m0", b"m1", b"m2"]
        channel.queue_declare("short.1")
        publish(channel, "short.1", b"soon gone")
        wait_for_message_count(channel, "expired", 1)
        assert message_count(channel, "short.1") == 0
        channel.basic_publish("orders", "no-such-key", b"unroutable")
        wait_for_message_count(channel, "unrouted-q", 1)
        # the CLI on the running broker goes through its API: the cap is raised at once
        admin(data_dir, "policies", "set", "cap", "^capped$", '{"max-length": 4}', "--priority", "2")
        publish(channel, "capped", *(b"m%d" % n for n in range(5, 10)))
        assert message_count(channel, "capped") == 4
        connection.close()
    finally:
        broker.stop()

    # on the stopped broker: the TTL policy goes (in the store); the changes stick across the restart
    admin(data_dir, "policies", "clear", "ttl")
    assert admin(data_dir, "policies", "list").splitlines() == [
        '/\tae\t^orders$\texchanges\t{"alternate-exchange": "unrouted"}\t0',
        '/\tcap\t^capped$\tall\t{"max-length": 4}\t2',
    ]
    broker = BrokerProcess(data_dir).start()
    try:
        connection = connect(broker)
        channel = connection.channel()
        channel.queue_purge("capped")
        publish(channel, "capped", *(b"n%d" % n for n in range(6)))
        assert message_count(channel, "capped") == 4
        channel.queue_declare("short.2")
        publish(channel, "short.2", b"kept")
        channel.basic_publish("orders", "no-such-key", b"still caught")
        wait_for_message_count(channel, "unrouted-q", 1)  # the first one was transient: gone with the restart
        assert message_count(channel, "short.2") == 1  # published after the TTL policy went: no expiry
        connection.close()
    finally:
        broker.stop()


def test_rabbitmqadmins_declare_policy_through_the_api_changes_a_live_queue(tmp_path: Path) -> None:
    """``amqp-server declare|list|delete policy`` (the API commands, rabbitmqadmin's verbs) against our API."""
    broker = BrokerProcess(tmp_path / "data").start()
    url = ["--url", broker.http_url]

    def cli(*args: str) -> str:
        result = subprocess.run(
            [sys.executable, "-m", "amqp_server", *args, *url], capture_output=True, text=True, timeout=30, cwd=REPO
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    try:
        connection = connect(broker)
        channel = connection.channel()
        channel.queue_declare("cli-capped")
        publish(channel, "cli-capped", *(b"%d" % n for n in range(5)))
        cli("declare", "operator_policy", "ops", "^cli-", '{"max-length": 3}', "--apply-to", "queues")
        assert message_count(channel, "cli-capped") == 3
        cli("declare", "policy", "cap", "^cli-capped$", '{"max-length": 1}', "--priority", "5")
        assert message_count(channel, "cli-capped") == 1
        listed = json.loads(cli("list", "policies", "--format", "json", "--columns", "name,priority,definition"))
        assert listed == [{"name": "cap", "priority": 5, "definition": {"max-length": 1}}]
        cli("delete", "policy", "cap")
        cli("delete", "operator_policy", "ops")
        publish(channel, "cli-capped", *(b"%d" % n for n in range(5)))
        assert message_count(channel, "cli-capped") == 6
        connection.close()
    finally:
        broker.stop()
