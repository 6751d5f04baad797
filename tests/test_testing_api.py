"""``amqp_server.running()`` (``amqp_server.ops.embedding``) and the pytest plugin (``amqp_broker``, ``amqp_vhost``).

These start real brokers (in a thread, or as ``python -m amqp_server``) on free
127.0.0.1 ports and talk to them with pika and raw sockets: start and stop, the
URL, data dirs, two brokers at once, vhosts, options, and the plugin's fixtures
run through ``pytester`` against a started or an external broker.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pika
import pika.exceptions
import pytest
from pamqp import commands, frame

from amqp_server.ops.embedding import RunningBroker, running
from storage.segment_store import DataDirLocked

pytest_plugins = ["pytester"]

MODES = [pytest.param(False, id="thread"), pytest.param(True, id="process")]
TIMEOUT_S = 5.0


@contextmanager
def channel(url: str) -> Iterator[pika.adapters.blocking_connection.BlockingChannel]:
    params = pika.URLParameters(url)
    params.socket_timeout = params.blocked_connection_timeout = TIMEOUT_S
    params.stack_timeout = 2 * TIMEOUT_S
    params.connection_attempts = 1
    connection = pika.BlockingConnection(params)
    try:
        yield connection.channel()
    finally:
        if connection.is_open:
            connection.close()


def round_trip(url: str, queue: str, body: bytes) -> bytes:
    with channel(url) as ch:
        ch.queue_declare(queue)
        ch.basic_publish("", queue, body)
        _, _, received = ch.basic_get(queue, auto_ack=True)
        return received


def passive_declare_error(url: str, queue: str) -> pika.exceptions.ChannelClosedByBroker:
    with channel(url) as ch, pytest.raises(pika.exceptions.ChannelClosedByBroker) as error:
        ch.queue_declare(queue, passive=True)
    return error.value


def refuses_connections(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT_S).close()
    except ConnectionRefusedError:
        return True
    return False


def read_method(sock: socket.socket) -> object:
    header = recv_exactly(sock, 7)
    _, _, size = struct.unpack(">BHI", header)
    return frame.unmarshal(header + recv_exactly(sock, size + 1))[2]


def recv_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        assert chunk, "broker closed the connection"
        data += chunk
    return data


def tune_of(broker: RunningBroker) -> commands.Connection.Tune:
    """What the broker proposes in connection.tune (read off the wire after a PLAIN start-ok)."""
    with socket.create_connection((broker.host, broker.port), timeout=TIMEOUT_S) as sock:
        sock.sendall(b"AMQP\x00\x00\x09\x01")
        assert isinstance(read_method(sock), commands.Connection.Start)
        sock.sendall(frame.marshal(commands.Connection.StartOk(mechanism="PLAIN", response="\0guest\0guest"), 0))
        tune = read_method(sock)
        assert isinstance(tune, commands.Connection.Tune)
        return tune


# ------------------------------------------------------------------ running()


@pytest.mark.parametrize("process", MODES)
def test_pika_round_trips_a_message(process: bool) -> None:
    with running(process=process) as broker:
        assert round_trip(broker.url, "greetings", b"hello") == b"hello"


@pytest.mark.parametrize("process", MODES)
def test_url_is_guest_on_the_bound_loopback_port(process: bool) -> None:
    with running(process=process) as broker:
        assert broker.host == "127.0.0.1"
        assert broker.port != 0
        assert broker.url == f"amqp://guest:guest@127.0.0.1:{broker.port}/"


@pytest.mark.parametrize("process", MODES)
def test_leaving_the_block_stops_the_broker(process: bool) -> None:
    with running(process=process) as broker:
        assert not refuses_connections(broker.port)
    assert refuses_connections(broker.port)


@pytest.mark.parametrize("process", MODES)
def test_temporary_data_dir_is_removed_on_exit(process: bool) -> None:
    with running(process=process) as broker:
        round_trip(broker.url, "q", b"x")
        assert broker.data_dir.is_dir()
        assert any(broker.data_dir.iterdir())
    assert not broker.data_dir.exists()


def test_given_data_dir_is_kept_and_recovered_by_the_next_broker(tmp_path: Path) -> None:
    with running(data_dir=tmp_path) as first:
        with channel(first.url) as ch:
            ch.confirm_delivery()
            ch.queue_declare("kept", durable=True)
            ch.basic_publish("", "kept", b"survives", pika.BasicProperties(delivery_mode=2))
    assert tmp_path.is_dir()
    with running(data_dir=tmp_path) as second, channel(second.url) as ch:
        _, _, body = ch.basic_get("kept", auto_ack=True)
    assert body == b"survives"


def test_two_brokers_run_at_once_with_separate_ports_and_state() -> None:
    with running() as one, running(process=True) as other:
        assert one.port != other.port
        assert one.data_dir != other.data_dir
        with channel(one.url) as ch:
            ch.queue_declare("only-on-one")
        assert passive_declare_error(other.url, "only-on-one").reply_code == 404
        assert round_trip(other.url, "q", b"two") == b"two"
        assert round_trip(one.url, "q", b"one") == b"one"


def test_second_thread_broker_on_a_data_dir_in_use_raises_data_dir_locked(tmp_path: Path) -> None:
    with running(data_dir=tmp_path):
        with pytest.raises(DataDirLocked):
            with running(data_dir=tmp_path):
                pass


def test_process_broker_that_cannot_start_raises_with_its_output(tmp_path: Path) -> None:
    with running(data_dir=tmp_path):
        with pytest.raises(RuntimeError, match=r"did not start \(exit code 1\)") as error:
            with running(data_dir=tmp_path, process=True):
                pass
    assert str(tmp_path) in str(error.value)


def test_options_reach_the_broker_config() -> None:
    with running(heartbeat=7, channel_max=9, frame_max=8192) as broker:
        tune = tune_of(broker)
    assert (tune.heartbeat, tune.channel_max, tune.frame_max) == (7, 9, 8192)


def test_unknown_option_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="no_such_option"):
        with running(no_such_option=1):
            pass


def test_process_mode_accepts_only_command_line_options() -> None:
    with pytest.raises(TypeError, match="heartbeat"):
        with running(process=True, heartbeat=7):
            pass


# ------------------------------------------------------------------ vhosts


def test_add_vhost_returns_the_url_of_a_vhost_clients_can_use() -> None:
    with running() as broker:
        url = broker.add_vhost("orders")
        assert url == f"amqp://guest:guest@127.0.0.1:{broker.port}/orders"
        assert round_trip(url, "q", b"in orders") == b"in orders"


def test_vhost_names_are_quoted_in_the_url() -> None:
    with running() as broker:
        url = broker.add_vhost("team a/b")
        assert url.endswith("/team%20a%2Fb")
        assert round_trip(url, "q", b"quoted") == b"quoted"


def test_a_queue_in_one_vhost_is_not_visible_in_another() -> None:
    with running() as broker:
        first, second = broker.add_vhost("first"), broker.add_vhost("second")
        with channel(first) as ch:
            ch.queue_declare("shared-name")
        error = passive_declare_error(second, "shared-name")
        assert (error.reply_code, error.reply_text) == (404, "NOT_FOUND - no queue 'shared-name' in vhost 'second'")
        assert passive_declare_error(broker.url, "shared-name").reply_code == 404


def test_adding_an_existing_vhost_keeps_its_queues() -> None:
    with running() as broker:
        url = broker.add_vhost("again")
        with channel(url) as ch:
            ch.queue_declare("stays")
        assert broker.add_vhost("again") == url
        with channel(url) as ch:
            assert ch.queue_declare("stays", passive=True).method.queue == "stays"


def test_a_vhost_never_added_is_refused() -> None:
    with running() as broker:
        with pytest.raises(
            pika.exceptions.ProbableAccessDeniedError, match=r"\(530\) 'NOT_ALLOWED - vhost missing not found'"
        ):
            with channel(broker.vhost_url("missing")):
                pass


@pytest.mark.parametrize("name", ["", "v" * 256])
def test_add_vhost_rejects_empty_and_overlong_names(name: str) -> None:
    with running() as broker, pytest.raises(ValueError, match="1 to 255 bytes"):
        broker.add_vhost(name)


def test_add_vhost_on_a_process_broker_raises() -> None:
    with running(process=True) as broker, pytest.raises(RuntimeError, match="in-thread broker"):
        broker.add_vhost("nope")


# ------------------------------------------------------------------ pytest plugin

PLUGIN = ("-p", "amqp_server.pytest_plugin", "-p", "no:asyncio", "-p", "no:hypothesispytest")

CLIENT = f"""
from contextlib import contextmanager

import pika
import pika.exceptions
import pytest


@contextmanager
def channel(url):
    params = pika.URLParameters(url)
    params.socket_timeout = params.blocked_connection_timeout = {TIMEOUT_S}
    params.connection_attempts = 1
    connection = pika.BlockingConnection(params)
    try:
        yield connection.channel()
    finally:
        if connection.is_open:
            connection.close()
"""


def test_plugin_gives_each_test_a_fresh_vhost_on_one_session_broker(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AMQP_URL", raising=False)
    ports = pytester.path / "ports"
    pytester.makepyfile(
        CLIENT
        + f"""
SEEN = []


def test_declares_a_queue(amqp_broker, amqp_vhost):
    SEEN.append((amqp_broker.port, amqp_vhost))
    with channel(amqp_vhost) as ch:
        ch.queue_declare("shared-name")


def test_does_not_see_the_other_tests_queue(amqp_broker, amqp_vhost):
    (port, vhost), = SEEN
    assert amqp_broker.port == port and amqp_vhost != vhost
    assert amqp_vhost.startswith(amqp_broker.url)
    with channel(amqp_vhost) as ch, pytest.raises(pika.exceptions.ChannelClosedByBroker) as error:
        ch.queue_declare("shared-name", passive=True)
    assert error.value.reply_code == 404
    open({str(ports)!r}, "w").write(str(port))
"""
    )
    result = pytester.runpytest(*PLUGIN)
    result.assert_outcomes(passed=2)
    assert refuses_connections(int(ports.read_text()))


def external_broker_test(url: str) -> str:
    return (
        CLIENT
        + f"""

def test_uses_the_external_broker(amqp_broker, amqp_vhost):
    assert amqp_broker.url == amqp_vhost == {url!r}
    assert amqp_broker.data_dir is None
    with channel(amqp_vhost) as ch:
        ch.queue_declare("made-by-inner-test")
"""
    )


def test_plugin_uses_the_broker_url_option_instead_of_starting_one(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AMQP_URL", raising=False)
    with running() as broker:
        pytester.makepyfile(external_broker_test(broker.url))
        pytester.runpytest(*PLUGIN, "--amqp-broker-url", broker.url).assert_outcomes(passed=1)
        with channel(broker.url) as ch:
            assert ch.queue_declare("made-by-inner-test", passive=True).method.queue == "made-by-inner-test"


def test_plugin_uses_amqp_url_from_the_environment(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    with running() as broker:
        monkeypatch.setenv("AMQP_URL", broker.url)
        pytester.makepyfile(external_broker_test(broker.url))
        pytester.runpytest(*PLUGIN).assert_outcomes(passed=1)
        with channel(broker.url) as ch:
            assert ch.queue_declare("made-by-inner-test", passive=True).method.queue == "made-by-inner-test"


def test_plugin_broker_url_option_wins_over_amqp_url(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    with running() as broker:
        monkeypatch.setenv("AMQP_URL", "amqp://guest:guest@127.0.0.1:1/")
        pytester.makepyfile(external_broker_test(broker.url))
        pytester.runpytest(*PLUGIN, "--amqp-broker-url", broker.url).assert_outcomes(passed=1)
