"""``connection.update-secret`` through pika and raw frames, as RabbitMQ 3.10 answers it for internal users.

Probed against RabbitMQ 3.10.8: every new secret (right, wrong, empty) gets ``update-secret-ok`` and the
connection works on; the method before ``connection.open`` or on a channel other than 0 closes the
connection as any misplaced connection method does. Passes against RabbitMQ too (``AMQP_URL=…``).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from types import SimpleNamespace

import pika
import pytest
from pamqp import commands

from .raw_client import RawClient


def assert_works(connection: pika.BlockingConnection) -> None:
    channel = connection.channel()
    queue = channel.queue_declare(f"update-secret-{uuid.uuid4().hex}", exclusive=True).method.queue
    channel.basic_publish("", queue, b"after update-secret")
    _, _, body = channel.basic_get(queue, auto_ack=True)
    assert body == b"after update-secret"
    channel.close()


@pytest.mark.parametrize("new_secret", ["guest", "not-the-password", ""], ids=["right", "wrong", "empty"])
def test_pika_update_secret_is_accepted_and_the_connection_works_on(
    connection: pika.BlockingConnection, new_secret: str
) -> None:
    channel = connection.channel()  # a channel open across the update keeps working too
    connection.update_secret(new_secret, "token refresh")
    connection.update_secret(new_secret, "token refresh again")
    assert connection.is_open
    queue = channel.queue_declare("", exclusive=True).method.queue
    assert channel.queue_declare(queue, passive=True).method.message_count == 0
    assert_works(connection)


@pytest.fixture
def raw(broker: SimpleNamespace) -> Iterator[RawClient]:
    with RawClient(broker.host, broker.port, timeout=5.0) as client:
        yield client


def update_secret() -> commands.Connection.UpdateSecret:
    return commands.Connection.UpdateSecret(new_secret="guest", reason="probe")


def test_update_secret_during_tuning_drops_the_socket_without_a_frame(raw: RawClient) -> None:
    raw.start()
    raw.start_ok()
    raw.expect(commands.Connection.Tune)
    raw.send_method(0, update_secret())
    assert raw.wait_closed(timeout=10) == []  # RabbitMQ waits 3 s first


def test_update_secret_before_connection_open_gets_504(raw: RawClient) -> None:
    raw.start()
    raw.start_ok()
    raw.expect(commands.Connection.Tune)
    raw.send_method(0, commands.Connection.TuneOk(channel_max=2047, frame_max=131072, heartbeat=0))
    raw.send_method(0, update_secret())
    close = raw.expect_connection_close(timeout=10)
    assert (close.reply_code, close.reply_text, close.class_id, close.method_id) == (
        504,
        "CHANNEL_ERROR - unexpected method in connection state opening",
        10,
        70,
    )


@pytest.mark.parametrize(
    ("channel", "code", "text"),
    [(1, 503, "COMMAND_INVALID - unimplemented method"), (3, 504, "CHANNEL_ERROR - expected 'channel.open'")],
    ids=["open-channel", "unopened-channel"],
)
def test_update_secret_on_a_channel_closes_the_connection(raw: RawClient, channel: int, code: int, text: str) -> None:
    raw.handshake()
    raw.open_channel(1)
    raw.send_method(channel, update_secret())
    close = raw.expect_connection_close(timeout=10)
    assert (close.reply_code, close.reply_text, close.class_id, close.method_id) == (code, text, 10, 70)
    assert raw.wait_closed(timeout=10) == []
