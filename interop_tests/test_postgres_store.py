"""A broker process on ``--store postgresql://…``: what a user stored is in the database, not the data dir.

Each test runs ``python -m amqp_server`` against a fresh database of a throwaway PostgreSQL
(``tests/postgres_cluster.py``) and restarts it on a *new, empty* data dir, so whatever comes back
came from PostgreSQL: durable exchanges, queues with arguments, bindings, policies, persistent
messages confirmed to a pika publisher (after kill -9 and after SIGTERM), a stream's records at their
offsets and a delayed exchange's held messages, and users, vhosts and permissions made through the
management API or, while no broker runs, the admin CLI.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pika
import pika.exceptions
import pytest

from storage.postgres_schema import SCHEMA_VERSION

from .broker_process import BrokerProcess
from .management_client import Api

pytest_plugins = ["tests.postgres_cluster"]  # postgres_db: a fresh database of a throwaway PostgreSQL

COUNT = 300
REPO = Path(__file__).resolve().parent.parent


def connect(broker: BrokerProcess, user: str = "guest", password: str = "guest") -> pika.BlockingConnection:
    return pika.BlockingConnection(
        pika.ConnectionParameters(
            host="127.0.0.1",
            port=broker.port,
            credentials=pika.PlainCredentials(user, password),
            socket_timeout=5,
            blocked_connection_timeout=5,
            connection_attempts=1,
            heartbeat=0,
        )
    )


@pytest.fixture
def start(postgres_db: str, tmp_path: Path):
    """Starts brokers on the test's database, each on a data dir of its own; kills what still runs."""
    started: list[BrokerProcess] = []

    def start_broker() -> BrokerProcess:
        process = BrokerProcess(tmp_path / f"data{len(started)}", "--store", postgres_db).start()
        started.append(process)
        return process

    yield start_broker
    for process in started:
        process.stop(signal.SIGKILL)


def drain(broker: BrokerProcess, queue: str, ack: int) -> list[tuple[bytes, bool]]:
    """Every message of ``queue`` (body, redelivered) by basic.get; the first ``ack`` are acked, the rest requeued."""
    with connect(broker) as connection:
        channel = connection.channel()
        got = []
        while True:
            method, _, body = channel.basic_get(queue)
            if method is None:
                break
            got.append((body, method.redelivered))
            if len(got) <= ack:
                channel.basic_ack(method.delivery_tag)
    return got


def test_confirmed_messages_and_definitions_survive_kill_and_restart(start):
    broker = start()
    with connect(broker) as connection:
        channel = connection.channel()
        channel.exchange_declare("ae", "fanout", durable=True)
        channel.exchange_declare("x", "direct", durable=True, arguments={"alternate-exchange": "ae"})
        channel.queue_declare("q", durable=True, arguments={"x-max-length": 10_000})
        channel.queue_declare("unrouted", durable=True)
        channel.queue_declare("transient", durable=False)
        channel.queue_bind("q", "x", "k")
        channel.queue_bind("unrouted", "ae")
        channel.confirm_delivery()
        for n in range(COUNT):  # each publish returns once its confirm (ack) came back
            channel.basic_publish("x", "k", b"m%04d" % n, pika.BasicProperties(delivery_mode=2, message_id=str(n)))
        channel.basic_publish("x", "k", b"transient body")  # not persistent: lost at the restart
    broker.stop(signal.SIGKILL)

    broker = start()
    got = drain(broker, "q", ack=100)
    assert [body for body, _ in got] == [b"m%04d" % n for n in range(COUNT)]
    assert all(redelivered for _, redelivered in got)
    with connect(broker) as connection:
        channel = connection.channel()
        assert channel.queue_declare("q", passive=True).method.message_count == COUNT - 100
        with pytest.raises(pika.exceptions.ChannelClosedByBroker, match="NOT_FOUND"):
            channel.queue_declare("transient", passive=True)
        channel = connection.channel()
        channel.confirm_delivery()
        channel.basic_publish("x", "nowhere", b"to the alternate exchange", pika.BasicProperties(delivery_mode=2))
    broker.stop(signal.SIGTERM)

    broker = start()
    assert [body for body, _ in drain(broker, "unrouted", ack=1)] == [b"to the alternate exchange"]
    assert [body for body, _ in drain(broker, "q", ack=0)] == [b"m%04d" % n for n in range(100, COUNT)]


def test_users_vhosts_permissions_and_policies_live_in_the_database(start):
    broker = start()
    api = Api(f"http://127.0.0.1:{broker.management_port}")
    api.ok("PUT", "/api/vhosts/orders", {"description": "the orders"})
    api.ok("PUT", "/api/users/alice", {"password": "s3cret", "tags": "monitoring"})
    api.ok("PUT", "/api/permissions/orders/alice", {"configure": "a-.*", "write": ".*", "read": ".*"})
    api.ok("PUT", "/api/policies/orders/cap", {"pattern": "^a", "definition": {"max-length": 2}, "apply-to": "queues"})
    with connect(broker) as connection:  # the API answers before the policy's sync: declare-ok waits for one
        connection.channel().queue_declare("after-the-policy", durable=True)
    broker.stop(signal.SIGKILL)

    broker = start()
    api = Api(f"http://127.0.0.1:{broker.management_port}")
    assert api.ok("GET", "/api/vhosts/orders")["description"] == "the orders"
    assert api.ok("GET", "/api/users/alice")["tags"] == ["monitoring"]
    assert api.ok("GET", "/api/policies/orders/cap")["definition"] == {"max-length": 2}
    assert api.ok("GET", "/api/permissions/orders/alice")["configure"] == "a-.*"
    connection = pika.BlockingConnection(
        pika.ConnectionParameters(
            host="127.0.0.1",
            port=broker.port,
            virtual_host="orders",
            credentials=pika.PlainCredentials("alice", "s3cret"),
            connection_attempts=1,
            socket_timeout=5,
        )
    )
    with connection:
        channel = connection.channel()
        channel.queue_declare("a-queue", durable=True)
        with pytest.raises(pika.exceptions.ChannelClosedByBroker, match="ACCESS_REFUSED"):
            channel.queue_declare("b-queue", durable=True)  # configure is a-.* only
    assert not (Path(broker.data_dir) / "access.json").exists()  # the data dir holds none of it


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "amqp_server", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=REPO)


def test_the_admin_cli_edits_the_database_while_no_broker_runs(start, postgres_db, tmp_path):
    store = ("--store", postgres_db, "--data-dir", str(tmp_path / "cli"))
    for command in (
        ("users", "add", "bob", "pw", "--tags", "management"),
        ("vhosts", "add", "tools"),
        ("permissions", "set", "bob", "tools", ".*", ".*", ".*"),
        ("policies", "set", "short", "^s", '{"message-ttl": 5000}', "--vhost", "tools", "--apply-to", "queues"),
    ):
        done = cli(*command, *store)
        assert done.returncode == 0, done.stderr
    assert "bob\t[management]" in cli("users", "list", *store).stdout
    exported = json.loads(cli("definitions", "export", "-", *store).stdout)
    assert [p["name"] for p in exported["policies"]] == ["short"]
    assert not (tmp_path / "cli" / "access.json").exists()

    broker = start()  # on a data dir of its own: all of it came from the database
    parameters = pika.ConnectionParameters(
        host="127.0.0.1",
        port=broker.port,
        virtual_host="tools",
        credentials=pika.PlainCredentials("bob", "pw"),
        connection_attempts=1,
        socket_timeout=5,
    )
    with pika.BlockingConnection(parameters) as connection:
        channel = connection.channel()
        channel.queue_declare("s-queue", durable=True)
    api = Api(f"http://127.0.0.1:{broker.management_port}")
    assert api.ok("GET", "/api/queues/tools/s-queue")["effective_policy_definition"] == {"message-ttl": 5000}


def test_publishes_are_nacked_while_the_database_is_down_and_confirmed_again_after(start, postgres_cluster):
    broker = start()
    with connect(broker) as connection:
        channel = connection.channel()
        channel.queue_declare("q", durable=True)
        channel.confirm_delivery()
        persistent = pika.BasicProperties(delivery_mode=2)
        channel.basic_publish("", "q", b"before", persistent)
        postgres_cluster.stop()
        try:
            with pytest.raises(pika.exceptions.NackError):
                channel.basic_publish("", "q", b"while down", persistent)
        finally:
            postgres_cluster.start()
        channel.basic_publish("", "q", b"after", persistent)  # its sync writes the nacked one too
    broker.stop(signal.SIGKILL)
    assert "Traceback" not in "".join(broker.log), "".join(broker.log)
    broker = start()
    # a nack promises nothing: "while down" may be there (the broker kept it and wrote it later), as with a full disk
    assert [body for body, _ in drain(broker, "q", ack=0) if body != b"while down"] == [b"before", b"after"]


def test_a_database_of_a_newer_broker_stops_the_broker_with_one_line(postgres_cluster, postgres_db, tmp_path):
    postgres_cluster.psql("CREATE TABLE schema_version (version int PRIMARY KEY)", postgres_db.rsplit("/", 1)[1])
    postgres_cluster.psql("INSERT INTO schema_version VALUES (99)", postgres_db.rsplit("/", 1)[1])
    done = cli("--port", "0", "--management-port", "-1", "--data-dir", str(tmp_path), "--store", postgres_db)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert lines[-1] == (
        f"amqp-server: the database's schema is version 99, newer than this broker's {SCHEMA_VERSION}: it was "
        "used by a newer amqp-server; upgrade this one (nothing was changed)"
    )
    assert [line.split(" on ")[0] for line in lines[:-1]] == ["amqp-server standby: waiting for the lease"]


DELAY_MS = 5000  # long enough to be still held at the kill; it fires once the new broker has recovered it


def read_stream(channel, queue: str, offset: object) -> list[tuple[int, bytes]]:
    """``(x-stream-offset, body)`` of what a consumer at ``offset`` gets (qos, each acked) until it goes quiet."""
    channel.basic_qos(prefetch_count=50)
    got = []
    for method, properties, body in channel.consume(queue, arguments={"x-stream-offset": offset}, inactivity_timeout=2):
        if method is None:
            break
        got.append((properties.headers["x-stream-offset"], body))
        channel.basic_ack(method.delivery_tag)
    channel.cancel()
    return got


def test_a_stream_and_held_delayed_messages_survive_kill_9(start):
    broker = start()
    bodies = [b"%04d" % n * 10 for n in range(200)]
    persistent = pika.BasicProperties(delivery_mode=2)
    with connect(broker) as connection:
        channel = connection.channel()
        stream = {"x-queue-type": "stream", "x-stream-max-segment-size-bytes": 2000}
        channel.queue_declare("s", durable=True, arguments=stream)
        channel.exchange_declare("dx", "x-delayed-message", durable=True, arguments={"x-delayed-type": "direct"})
        channel.queue_declare("out", durable=True)
        channel.queue_bind("out", "dx", "k")
        channel.confirm_delivery()
        for body in bodies:
            channel.basic_publish("", "s", body, persistent)
        held = pika.BasicProperties(delivery_mode=2, headers={"x-delay": DELAY_MS})
        channel.basic_publish("dx", "k", b"held", held)
        assert channel.queue_declare("out", passive=True).method.message_count == 0  # held, not routed yet
    broker.stop(signal.SIGKILL)

    broker = start()  # a new, empty data dir: the stream and the held message come from PostgreSQL
    with connect(broker) as connection:
        channel = connection.channel()
        assert read_stream(channel, "s", "first") == list(enumerate(bodies))
        channel.confirm_delivery()
        channel.basic_publish("", "s", b"after", persistent)
        assert read_stream(channel, "s", "last") == [(200, b"after")]  # offsets go on where they were
        got = None
        deadline = time.monotonic() + DELAY_MS / 1000 + 15
        while got is None and time.monotonic() < deadline:
            _, _, got = channel.basic_get("out", auto_ack=True)
            if got is None:
                connection.sleep(0.05)
        assert got == b"held"
        channel.queue_declare("synced", durable=True)  # its declare-ok waits for a sync: the get's removal too
    broker.stop(signal.SIGKILL)

    broker = start()  # fired, acked and gone; the stream is still whole
    with connect(broker) as connection:
        channel = connection.channel()
        assert channel.queue_declare("out", passive=True).method.message_count == 0
        assert [offset for offset, _ in read_stream(channel, "s", 150)] == list(range(150, 201))


def test_the_admin_cli_does_not_edit_a_database_a_broker_serves(start, postgres_db, tmp_path):
    """A broker elsewhere (another data dir, another host) holds the lease: an offline edit would be written
    over by what that broker keeps in memory, so it is refused, as a segment store in use is."""
    broker = start()
    store = ("--store", postgres_db, "--data-dir", str(tmp_path / "elsewhere"))
    for command in (
        ("users", "add", "mallory", "pw"),
        ("policies", "set", "short", "^s", '{"message-ttl": 5000}'),
        ("definitions", "import", str(tmp_path / "missing.json")),
    ):
        done = cli(*command, *store)
        assert done.returncode == 1, done.stdout
        assert "while a broker serves this store (lease held by " in done.stderr, done.stderr
        assert "Traceback" not in done.stderr
    assert broker.stop() == 0  # a clean stop frees the lease
    assert cli("users", "add", "mallory", "pw", *store).returncode == 0
