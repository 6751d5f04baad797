"""The CLI against a running broker process, through its management HTTP API (``amqp-server list|declare|…``),
with what it does checked over AMQP by pika, and the reverse.

The admin commands (users, vhosts, permissions) find the broker running on their
``--data-dir`` and go through its API, so a change takes effect at once: no test here
waits or polls for it.  With the broker stopped they edit the data dir's files.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pika
import pika.exceptions
import pytest

from .broker_process import BrokerProcess
from .pika_helpers import connect, wait_until

REPO = Path(__file__).resolve().parent.parent


def run(*args: str, env: dict[str, str] | None = None, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "amqp_server", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        env={**os.environ, **(env or {})},
        input=stdin,
    )


def ok(*args: str, **kwargs: Any) -> str:
    result = run(*args, **kwargs)
    assert result.returncode == 0, result.stderr
    return result.stdout


def failed(*args: str) -> str:
    """The one line a refused command prints (exit code 1, no traceback)."""
    result = run(*args)
    assert result.returncode == 1, result.stdout
    assert result.stdout == "" and result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    return result.stderr


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    process = BrokerProcess(tmp_path_factory.mktemp("cli-data")).start()
    try:
        yield process
    finally:
        process.stop()


def api(broker: BrokerProcess, *args: str, **kwargs: Any) -> str:
    """An API command with ``--url`` of the broker (credentials in the URL, as curl takes them)."""
    return ok(*args, "--url", broker.http_url, **kwargs)


def listed(broker: BrokerProcess, kind: str, *args: str) -> list[dict[str, Any]]:
    return json.loads(api(broker, "list", kind, "--format", "json", *args))


# ------------------------------------------------------------------ what AMQP did, the CLI lists


def test_list_queues_shows_what_pika_declared_with_message_counts(broker: BrokerProcess) -> None:
    connection = connect(broker)
    channel = connection.channel()
    channel.confirm_delivery()
    channel.queue_declare("cli-full", durable=True, arguments={"x-max-length": 100})
    channel.queue_declare("cli-empty")
    for body in (b"a", b"b", b"c"):
        channel.basic_publish("", "cli-full", body)
    try:
        queues = listed(broker, "queues", "--columns", "name,messages,durable,arguments.x-max-length")
        assert {"name": "cli-full", "messages": 3, "durable": True, "arguments": {"x-max-length": 100}} in queues
        assert {"name": "cli-empty", "messages": 0, "durable": False} in queues
        table = api(broker, "list", "queues", "--vhost", "/")  # rabbitmqadmin's default columns
        assert table.splitlines()[1].split() == ["|", "name", "|", "messages", "|"]
        assert any(line.split() == ["|", "cli-full", "|", "3", "|"] for line in table.splitlines())
        tsv = api(broker, "list", "queues", "--format", "tsv", "--columns", "vhost,name,messages")
        assert tsv.splitlines()[0] == "vhost\tname\tmessages"
        assert "/\tcli-full\t3" in tsv.splitlines()
    finally:
        channel.queue_delete("cli-full")
        channel.queue_delete("cli-empty")
        connection.close()


def test_list_connections_channels_and_consumers(broker: BrokerProcess) -> None:
    connection = connect(broker, name="cli-lister")
    channel = connection.channel()
    channel.queue_declare("cli-consumed", exclusive=True)
    channel.basic_consume("cli-consumed", lambda *args: None, consumer_tag="cli-tag")
    try:
        connections = listed(broker, "connections", "--columns", "name,user,client_properties.connection_name")
        mine = [c for c in connections if c.get("client_properties", {}).get("connection_name") == "cli-lister"]
        assert len(mine) == 1 and mine[0]["user"] == "guest"
        channels = listed(broker, "channels", "--columns", "name,connection_details.name")
        assert any(c["connection_details"]["name"] == mine[0]["name"] for c in channels)
        consumers = listed(broker, "consumers", "--vhost", "/", "--columns", "queue.name,consumer_tag")
        assert {"queue": {"name": "cli-consumed"}, "consumer_tag": "cli-tag"} in consumers
    finally:
        connection.close()


# ------------------------------------------------------------------ what the CLI does, AMQP sees


def test_declare_publish_get_purge_delete_are_visible_over_amqp(broker: BrokerProcess) -> None:
    api(broker, "declare", "queue", "cli-work", "--arguments", '{"x-max-length": 5}')
    connection = connect(broker)
    channel = connection.channel()
    try:
        declared = channel.queue_declare("cli-work", passive=True)
        assert declared.method.message_count == 0
        assert api(broker, "publish", "--routing-key", "cli-work", "--payload", "hello").strip() == "Message published"
        assert api(broker, "publish", "--routing-key", "cli-work", stdin="from stdin").strip() == "Message published"
        method, properties, body = channel.basic_get("cli-work", auto_ack=True)
        assert body == b"hello"
        got = json.loads(api(broker, "get", "cli-work", "--ackmode", "ack_requeue_false", "--format", "json"))
        assert [(m["payload"], m["message_count"]) for m in got] == [("from stdin", 0)]
        assert channel.queue_declare("cli-work", passive=True).method.message_count == 0
        for body in (b"1", b"2"):
            channel.basic_publish("", "cli-work", body)
        assert "| 1       |" in api(broker, "get", "cli-work")  # requeued by default: a peek
        wait_until(connection, lambda: channel.queue_declare("cli-work", passive=True).method.message_count == 2, "2")
        api(broker, "purge", "queue", "cli-work")
        assert channel.queue_declare("cli-work", passive=True).method.message_count == 0
        api(broker, "delete", "queue", "cli-work")
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as caught:
            channel.queue_declare("cli-work", passive=True)
        assert caught.value.reply_code == 404
    finally:
        if connection.is_open:
            connection.close()


def test_exchanges_and_bindings_route_as_declared(broker: BrokerProcess) -> None:
    api(broker, "declare", "exchange", "cli-topic", "topic", "--no-durable")
    api(broker, "declare", "queue", "cli-bound", "--no-durable")
    api(broker, "bind", "cli-topic", "cli-bound", "--routing-key", "eu.#")
    try:
        assert {"name": "cli-topic", "type": "topic", "durable": False} in listed(
            broker, "exchanges", "--columns", "name,type,durable"
        )
        assert {"source": "cli-topic", "destination": "cli-bound", "routing_key": "eu.#"} in listed(
            broker, "bindings", "--vhost", "/", "--columns", "source,destination,routing_key"
        )
        published = api(broker, "publish", "--exchange", "cli-topic", "--routing-key", "eu.fr", "--payload", "x")
        assert published.strip() == "Message published"
        connection = connect(broker)
        channel = connection.channel()
        assert channel.basic_get("cli-bound", auto_ack=True)[2] == b"x"
        connection.close()
        api(broker, "unbind", "cli-topic", "cli-bound", "--routing-key", "eu.#")
        published = api(broker, "publish", "--exchange", "cli-topic", "--routing-key", "eu.fr", "--payload", "x")
        assert published.strip() == "Message published but NOT routed"
        assert failed("unbind", "cli-topic", "cli-bound", "--routing-key", "eu.#", "--url", broker.http_url) == (
            "amqp-server: no binding of queue 'cli-bound' to exchange 'cli-topic' with routing key 'eu.#' "
            "and arguments {}\n"
        )
    finally:
        api(broker, "delete", "exchange", "cli-topic")
        api(broker, "delete", "queue", "cli-bound")


def test_close_connection_sends_320_with_the_reason(broker: BrokerProcess) -> None:
    connection = connect(broker, name="cli-doomed")
    connections = listed(broker, "connections", "--columns", "name,client_properties.connection_name")
    (name,) = [c["name"] for c in connections if c["client_properties"].get("connection_name") == "cli-doomed"]
    assert api(broker, "close", "connection", name, "--reason", "maintenance window").strip() == (
        f"closed connection '{name}'"
    )
    with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as caught:
        wait_until(connection, lambda: False, "connection.close")
    assert (caught.value.reply_code, caught.value.reply_text) == (320, "CONNECTION_FORCED - maintenance window")


# ------------------------------------------------------------------ errors: one line, exit code 1


def test_refusals_are_one_line_with_the_apis_reason(broker: BrokerProcess) -> None:
    url = ("--url", broker.http_url)
    assert failed("delete", "queue", "cli-nope", *url) == "amqp-server: not found: DELETE /api/queues/%2F/cli-nope\n"
    api(broker, "declare", "queue", "cli-durable")
    try:
        assert failed("declare", "queue", "cli-durable", "--no-durable", *url) == (
            "amqp-server: inequivalent arg 'durable' for queue 'cli-durable' in vhost '/': "
            "received 'false' but current is 'true'\n"
        )
    finally:
        api(broker, "delete", "queue", "cli-durable")
    assert failed("list", "queues", "--password", "wrong", *url) == (
        "amqp-server: access refused (Login failed): GET /api/queues\n"
    )
    unreachable = failed("list", "queues", "--url", "http://127.0.0.1:1")
    assert unreachable.startswith("amqp-server: cannot reach the management API at http://127.0.0.1:1: ")


def test_bad_json_argument_is_a_usage_error(broker: BrokerProcess) -> None:
    result = run("declare", "queue", "cli-x", "--arguments", "{nope", "--url", broker.http_url)
    assert result.returncode == 2 and result.stderr.startswith("amqp-server: --arguments is not valid JSON")


def test_environment_variables_are_rabbitmqadmins(broker: BrokerProcess) -> None:
    env = {
        "RABBITMQADMIN_TARGET_HOST": broker.host,
        "RABBITMQADMIN_TARGET_PORT": str(broker.management_port),
        "RABBITMQADMIN_USERNAME": "guest",
        "RABBITMQADMIN_PASSWORD": "guest",
        "RABBITMQADMIN_TARGET_VHOST": "/",
    }
    assert json.loads(ok("list", "vhosts", "--format", "json", "--columns", "name", env=env)) == [{"name": "/"}]


def test_the_data_dir_says_where_the_api_of_its_broker_listens(broker: BrokerProcess) -> None:
    """A broker on ``--management-port 0``: no configuration knows the port, the data dir does."""
    names = json.loads(ok("list", "vhosts", "--data-dir", str(broker.data_dir), "--format", "json"))
    assert [vhost["name"] for vhost in names] == ["/"]


# ------------------------------------------------------------------ users, vhosts and permissions while running


def admin(broker: BrokerProcess, *args: str) -> str:
    return ok(*args, "--data-dir", str(broker.data_dir))


def test_a_user_added_while_running_can_log_in_at_once(broker: BrokerProcess) -> None:
    admin(broker, "users", "add", "cli-carol", "carol-pw", "--tags", "management")
    admin(broker, "permissions", "set", "cli-carol", "/", ".*", ".*", ".*")
    connection = connect(broker, "cli-carol", "carol-pw")
    connection.channel().queue_declare("", exclusive=True)
    connection.close()
    assert "cli-carol\t[management]" in admin(broker, "users", "list")  # access.json says so too
    admin(broker, "users", "delete", "cli-carol")
    with pytest.raises(pika.exceptions.ProbableAuthenticationError):
        connect(broker, "cli-carol", "carol-pw")


def test_a_vhost_added_while_running_opens_at_once_and_deleting_it_closes_its_connections(
    broker: BrokerProcess,
) -> None:
    admin(broker, "vhosts", "add", "cli-staging")
    assert not any(p["vhost"] == "cli-staging" for p in listed(broker, "permissions"))  # as rabbitmqctl add_vhost
    admin(broker, "permissions", "set", "guest", "cli-staging", ".*", ".*", ".*")
    connection = connect(broker, vhost="cli-staging")
    connection.channel().queue_declare("in-staging")
    admin(broker, "vhosts", "delete", "cli-staging")
    with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as caught:
        wait_until(connection, lambda: False, "connection.close")
    assert (caught.value.reply_code, caught.value.reply_text) == (
        320,
        "CONNECTION_FORCED - vhost 'cli-staging' is deleted",
    )


@pytest.mark.parametrize(
    "args, message",
    [
        (("users", "add", "guest", "x"), "amqp-server: user 'guest' already exists\n"),
        (("users", "delete", "cli-nobody"), "amqp-server: no user 'cli-nobody'\n"),
        (("vhosts", "add", "/"), "amqp-server: vhost '/' already exists\n"),
        (("vhosts", "delete", "cli-nope"), "amqp-server: no vhost 'cli-nope'\n"),
        (("permissions", "set", "guest", "cli-nope", ".*", ".*", ".*"), "amqp-server: no vhost 'cli-nope'\n"),
        (("permissions", "set", "cli-nobody", "/", ".*", ".*", ".*"), "amqp-server: no user 'cli-nobody'\n"),
        (
            ("permissions", "clear", "guest", "cli-nope"),
            "amqp-server: user 'guest' has no permissions in vhost 'cli-nope'\n",
        ),
    ],
)
def test_refused_changes_while_running_say_what_the_offline_ones_say(
    broker: BrokerProcess, args: tuple[str, ...], message: str
) -> None:
    assert failed(*args, "--data-dir", str(broker.data_dir)) == message


def test_admin_commands_need_the_api_of_a_running_broker(tmp_path: Path) -> None:
    process = BrokerProcess(tmp_path, "--management-port", "-1").start()
    try:
        before = (tmp_path / "access.json").read_bytes()
        message = failed("users", "add", "cli-erin", "pw", "--data-dir", str(tmp_path))
        assert "runs with its management API turned off" in message
        assert (tmp_path / "access.json").read_bytes() == before
        assert "has its management API turned off" in failed("list", "queues", "--data-dir", str(tmp_path))
    finally:
        process.stop()


def test_with_the_broker_stopped_the_files_are_edited(tmp_path: Path) -> None:
    process = BrokerProcess(tmp_path).start()
    process.stop()
    assert failed("list", "queues", "--data-dir", str(tmp_path)) == (
        f"amqp-server: no broker is running on data dir {tmp_path}\n"
    )
    ok("users", "add", "cli-frank", "frank-pw", "--data-dir", str(tmp_path))
    ok("permissions", "set", "cli-frank", "/", ".*", ".*", ".*", "--data-dir", str(tmp_path))
    assert "cli-frank" in json.loads((tmp_path / "access.json").read_text())["users"][1]["name"]
    process = BrokerProcess(tmp_path).start()
    try:
        connect(process, "cli-frank", "frank-pw").close()
    finally:
        process.stop()
