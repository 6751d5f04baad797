"""TLS (amqps): the second listener, real clients over TLS, and client-certificate verification.

Certificates are made per test session with ``trustme``: a CA, a server
certificate for ``localhost``/``127.0.0.1``, a client certificate signed by the
same CA, and one signed by an unrelated CA.  Two brokers run: one with a
server certificate only, one that also requires a client certificate
(``tls_verify_peer``, configured through a TOML file).
"""

from __future__ import annotations

import asyncio
import re
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import aio_pika
import pika
import pytest
import trustme

from amqp_server.ops.config import Config
from amqp_server.server.tls import server_context

from .broker_process import BrokerProcess
from .raw_client import PROTOCOL_HEADER, RawClient

AMQPS = re.compile(r"^amqp-server listening on ([0-9.]+):(\d+) \(amqps\)$")
TIMEOUT = 10.0


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    directory = tmp_path_factory.mktemp("pki")
    ca = trustme.CA()
    server = ca.issue_cert("localhost", "127.0.0.1")
    files = SimpleNamespace(ca=directory / "ca.pem", cert=directory / "server.pem", key=directory / "server.key")
    ca.cert_pem.write_to_path(files.ca)
    server.private_key_pem.write_to_path(files.key)
    files.cert.write_bytes(b"".join(blob.bytes() for blob in server.cert_chain_pems))
    return SimpleNamespace(
        ca=ca,
        files=files,
        client=ca.issue_cert("client@example.com"),
        stranger=trustme.CA().issue_cert("stranger@example.com"),
    )


def start_tls_broker(data_dir: Path, *args: str) -> tuple[BrokerProcess, int]:
    process = BrokerProcess(data_dir, "--tls-port", "0", *args).start()
    try:
        return process, amqps_port(process)
    except BaseException:
        process.stop()
        raise


def amqps_port(process: BrokerProcess) -> int:
    """The port of the ``listening on HOST:PORT (amqps)`` line, which follows the plain one."""
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        for line in list(process.log):
            match = AMQPS.match(line.rstrip("\n"))
            if match:
                return int(match.group(2))
        time.sleep(0.02)
    raise AssertionError("no amqps listening line:\n" + "".join(process.log))


@pytest.fixture(scope="module")
def tls_broker(pki: SimpleNamespace, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimpleNamespace]:
    process, port = start_tls_broker(
        tmp_path_factory.mktemp("tls-data"), "--tls-cert", str(pki.files.cert), "--tls-key", str(pki.files.key)
    )
    try:
        yield SimpleNamespace(process=process, port=process.port, tls_port=port)
    finally:
        process.stop()


@pytest.fixture(scope="module")
def mtls_broker(pki: SimpleNamespace, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimpleNamespace]:
    config = tmp_path_factory.mktemp("mtls-config") / "amqp-server.toml"
    config.write_text(
        f'tls_cert = "{pki.files.cert}"\ntls_key = "{pki.files.key}"\ntls_ca = "{pki.files.ca}"\n'
        "tls_verify_peer = true\n"
    )
    process, port = start_tls_broker(tmp_path_factory.mktemp("mtls-data"), "--config", str(config))
    try:
        yield SimpleNamespace(process=process, port=process.port, tls_port=port)
    finally:
        process.stop()


def client_context(pki: SimpleNamespace, certificate: trustme.LeafCert | None = None) -> ssl.SSLContext:
    """Trusts the test CA; presents ``certificate`` if given."""
    context = ssl.create_default_context()
    pki.ca.configure_trust(context)
    if certificate is not None:
        certificate.configure_cert(context)
    return context


def pika_tls_connect(port: int, context: ssl.SSLContext) -> pika.BlockingConnection:
    return pika.BlockingConnection(
        pika.ConnectionParameters(
            host="127.0.0.1",
            port=port,
            ssl_options=pika.SSLOptions(context, server_hostname="localhost"),
            socket_timeout=5,
            stack_timeout=TIMEOUT,
            blocked_connection_timeout=5,
            connection_attempts=1,
        )
    )


def pika_round_trip(connection: pika.BlockingConnection, body: bytes) -> bytes:
    try:
        channel = connection.channel()
        queue = channel.queue_declare("", exclusive=True).method.queue
        channel.basic_publish("", queue, body)
        method, _, received = channel.basic_get(queue, auto_ack=True)
        assert method is not None, "the message did not arrive"
        return received
    finally:
        connection.close()


async def aio_pika_round_trip(port: int, context: ssl.SSLContext, body: bytes) -> bytes:
    connection = await asyncio.wait_for(
        aio_pika.connect(f"amqps://guest:guest@127.0.0.1:{port}/", ssl_context=context), TIMEOUT
    )
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue("", exclusive=True)
        await channel.default_exchange.publish(aio_pika.Message(body), routing_key=queue.name)
        message = await asyncio.wait_for(queue.get(timeout=5), TIMEOUT)
        await message.ack()
        return message.body


def tls_exchange_header(port: int, context: ssl.SSLContext) -> bytes:
    """Handshake TLS, send the AMQP header, return what the broker answers before it hangs up (b"" if nothing)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            with context.wrap_socket(raw, server_hostname="localhost") as sock:  # TLS 1.2 fails here, 1.3 later
                sock.sendall(PROTOCOL_HEADER)
                return sock.recv(4096)
    except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
        return b""


# ------------------------------------------------------------------ server certificate only


def test_amqps_listener_is_announced_after_the_plain_one(tls_broker: SimpleNamespace) -> None:
    lines = [line.rstrip("\n") for line in tls_broker.process.log if "listening on" in line]
    assert lines[0].startswith(f"amqp-server listening on 127.0.0.1:{tls_broker.port}, data dir ")
    assert lines[1] == f"amqp-server listening on 127.0.0.1:{tls_broker.tls_port} (amqps)"
    assert tls_broker.tls_port not in (0, tls_broker.port)


def test_pika_round_trip_over_tls(tls_broker: SimpleNamespace, pki: SimpleNamespace) -> None:
    connection = pika_tls_connect(tls_broker.tls_port, client_context(pki))
    assert pika_round_trip(connection, b"over tls") == b"over tls"


async def test_aio_pika_round_trip_over_amqps_url(tls_broker: SimpleNamespace, pki: SimpleNamespace) -> None:
    assert await aio_pika_round_trip(tls_broker.tls_port, client_context(pki), b"amqps") == b"amqps"


def test_tls_session_uses_tls_1_2_or_newer(tls_broker: SimpleNamespace, pki: SimpleNamespace) -> None:
    with socket.create_connection(("127.0.0.1", tls_broker.tls_port), timeout=5) as raw:
        with client_context(pki).wrap_socket(raw, server_hostname="localhost") as sock:
            assert sock.version() in ("TLSv1.2", "TLSv1.3")
            sock.sendall(PROTOCOL_HEADER)
            assert sock.recv(1)[:1] == b"\x01"  # a method frame: connection.start


def test_server_context_refuses_protocols_older_than_tls_1_2(pki: SimpleNamespace, tmp_path: Path) -> None:
    context = server_context(Config(data_dir=tmp_path, tls_cert=pki.files.cert, tls_key=pki.files.key))
    assert context.minimum_version is ssl.TLSVersion.TLSv1_2
    assert context.verify_mode is ssl.CERT_NONE


def test_plain_amqp_on_the_tls_port_gets_no_connection_start(tls_broker: SimpleNamespace) -> None:
    with RawClient("127.0.0.1", tls_broker.tls_port, timeout=5) as client:
        client.send(PROTOCOL_HEADER)
        received = client.read_raw_until_closed(timeout=TIMEOUT)
    assert not received.startswith(b"\x01"), received  # whatever TLS alert, never an AMQP frame


def test_pika_without_tls_on_the_tls_port_fails(tls_broker: SimpleNamespace) -> None:
    with pytest.raises(pika.exceptions.AMQPConnectionError):
        pika.BlockingConnection(
            pika.ConnectionParameters(
                host="127.0.0.1",
                port=tls_broker.tls_port,
                socket_timeout=5,
                stack_timeout=TIMEOUT,
                connection_attempts=1,
            )
        )


def test_plain_port_keeps_serving_plain_amqp(tls_broker: SimpleNamespace) -> None:
    connection = pika.BlockingConnection(
        pika.ConnectionParameters(host="127.0.0.1", port=tls_broker.port, socket_timeout=5, connection_attempts=1)
    )
    assert pika_round_trip(connection, b"plain") == b"plain"


# ------------------------------------------------------------------ client certificates required


def test_client_without_certificate_is_refused(mtls_broker: SimpleNamespace, pki: SimpleNamespace) -> None:
    assert tls_exchange_header(mtls_broker.tls_port, client_context(pki)) == b""
    with pytest.raises(pika.exceptions.AMQPConnectionError):
        pika_tls_connect(mtls_broker.tls_port, client_context(pki))


def test_client_with_certificate_from_another_ca_is_refused(mtls_broker: SimpleNamespace, pki: SimpleNamespace) -> None:
    assert tls_exchange_header(mtls_broker.tls_port, client_context(pki, pki.stranger)) == b""


def test_client_with_ca_signed_certificate_works_with_pika(mtls_broker: SimpleNamespace, pki: SimpleNamespace) -> None:
    connection = pika_tls_connect(mtls_broker.tls_port, client_context(pki, pki.client))
    assert pika_round_trip(connection, b"mutual") == b"mutual"


async def test_client_with_ca_signed_certificate_works_with_aio_pika(
    mtls_broker: SimpleNamespace, pki: SimpleNamespace
) -> None:
    context = client_context(pki, pki.client)
    assert await aio_pika_round_trip(mtls_broker.tls_port, context, b"mutual aio") == b"mutual aio"
