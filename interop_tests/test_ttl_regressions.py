"""Message TTL regressions, against broker processes of their own (a frozen broker must not take the session
broker down with it).

* A message without TTL, then one with ``expiration`` behind it on the same queue: the broker kept
  re-running the expiry timer of the second (not at the head, so it could not expire) and froze for
  ever — 100% CPU, no handshake completed, SIGTERM ignored.
* A durable queue with ``x-message-ttl``, a restart (SIGTERM or kill -9), then one new publish: recovered
  messages came back without their expiry (never expired), and the new one landed behind them (the same
  freeze).  As in RabbitMQ, a recovered message now expires at its original deadline, counted from its
  publish with the downtime included.

Every wait is bounded: pika gives up within a few seconds, polls have deadlines, and the broker is killed
at teardown.
"""

from __future__ import annotations

import signal
import struct
import time
from pathlib import Path

import pytest
from pamqp import commands

from .broker_process import BrokerProcess
from .durability_helpers import BODY, AmqpSocket, make_message

TTL = 6.0  # s: long enough to check "still there after the restart" even on a loaded machine
DOWNTIME = 2.0  # s between publish and restart: the margin between the right deadline and a wrong one


def connect(broker: BrokerProcess) -> AmqpSocket:
    """A raw client whose every wait is bounded (pika's close and RPCs would wait for ever on a frozen broker)."""
    return AmqpSocket(broker.port).handshake()


def count(broker: BrokerProcess, queue: str) -> int:
    """The queue's message count, from a new connection (each poll also proves a handshake completes)."""
    with connect(broker) as conn:
        return conn.call(1, commands.Queue.Declare(queue=queue, passive=True), commands.Queue.DeclareOk).message_count


def wait_for_count(broker: BrokerProcess, queue: str, expected: int, deadline: float, what: str) -> None:
    while (found := count(broker, queue)) != expected:
        assert time.monotonic() < deadline, f"{what}: queue {queue!r} holds {found} messages, expected {expected}"
        time.sleep(0.05)


def get(conn: AmqpSocket, queue: str) -> tuple[bytes, int] | None:
    """basic.get with auto-ack: ``(body, message_count)``, or None for get-empty."""
    conn.send_method(1, commands.Basic.Get(queue=queue, no_ack=True))
    _, method = conn.read_method()
    if isinstance(method, commands.Basic.GetEmpty):
        return None
    assert isinstance(method, commands.Basic.GetOk), method
    _, _, header = conn.read_frame()
    body = b""
    while len(body) < struct.unpack_from(">Q", header, 4)[0]:
        frame_type, _, chunk = conn.read_frame()
        assert frame_type == BODY
        body += chunk
    return body, method.message_count


@pytest.mark.parametrize("expiration", ["0", "200"])
def test_an_expiring_message_behind_a_ttl_less_head_does_not_freeze_the_broker(
    tmp_path: Path, start_broker, expiration: str
) -> None:
    broker = start_broker(tmp_path)
    with connect(broker) as conn:
        conn.call(1, commands.Queue.Declare(queue="q"), commands.Queue.DeclareOk)
        conn.publish_confirmed(
            [
                make_message("a", b"no ttl", delivery_mode=1),
                make_message("b", b"expires", delivery_mode=1, expiration=expiration),
            ],
            "q",
        )
    past_deadline = time.monotonic() + int(expiration) / 1000 + 0.3

    while True:  # new connections keep completing their handshake, before and after the deadline
        assert count(broker, "q") == 2  # as in RabbitMQ: only the head expires
        if time.monotonic() > past_deadline:
            break
        time.sleep(0.05)
    with connect(broker) as conn:
        assert get(conn, "q") == (b"no ttl", 0)  # the expired one reached the head: dropped, not delivered
        assert get(conn, "q") is None
        conn.close()
    assert broker.stop() == 0  # the frozen broker ignored SIGTERM


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "kill-9"])
def test_a_recovered_message_expires_at_its_original_deadline_and_a_new_publish_does_not_freeze(
    tmp_path: Path, start_broker, stop_signal: int
) -> None:
    broker = start_broker(tmp_path)
    with connect(broker) as conn:
        conn.call(
            1,
            commands.Queue.Declare(queue="ttl", durable=True, arguments={"x-message-ttl": int(TTL * 1000)}),
            commands.Queue.DeclareOk,
        )
        published = time.monotonic()
        conn.publish_confirmed([make_message("old", b"old")], "ttl")  # persistent: on disk once confirmed
    returncode = broker.stop(stop_signal)
    assert returncode == (0 if stop_signal == signal.SIGTERM else -signal.SIGKILL)

    time.sleep(max(0.0, published + DOWNTIME - time.monotonic()))  # the broker is down: that time counts too
    launched = time.monotonic()
    broker = start_broker(tmp_path)
    assert time.monotonic() < published + TTL - 1, "restart too slow to check the message is still there"
    assert count(broker, "ttl") == 1
    with connect(broker) as conn:  # behind the recovered message: where it used to freeze the broker
        conn.publish_confirmed([make_message("new", b"new", expiration="300")], "ttl")
        conn.close()

    # gone at publish + TTL; counted from the restart it would have lived until at least launched + TTL
    wait_for_count(broker, "ttl", 0, launched + TTL, "the recovered message outlived its original deadline")
    assert time.monotonic() > published + TTL - 0.5  # and it did not vanish early either
    assert broker.stop() == 0
