"""Delivery acknowledgement timeouts (core/consumer_timeout.py) on the sans-IO core with a fake clock.

A delivery not acknowledged within the timeout closes its channel with 406 and RabbitMQ's text; the
channel's unacked messages go back to the queue, redelivered.  The checks sample delivery tags on a
timer, so a delivery times out between ``timeout`` and ``timeout + 2 * interval`` after it was sent.
"""

from __future__ import annotations

import pytest
from pamqp import commands

from amqp_server.core.broker import Broker, Limits
from amqp_server.core.policies import Policy
from amqp_server.errors import delivery_ack_timeout
from amqp_server.ops.config import load_config
from amqp_server.ops.errors import ConfigError
from tests.frames import FakeClock, Peer, method, open_peer, publish

TEXT = (
    "PRECONDITION_FAILED - delivery acknowledgement on channel 1 timed out. Timeout value used: 2000 ms. "
    "This timeout value can be configured, see consumers doc guide to learn more"
)


def broker_with(timeout_ms: int) -> tuple[Broker, FakeClock]:
    clock = FakeClock()
    return Broker(clock=clock, limits=Limits(consumer_timeout=timeout_ms)), clock


def run_for(broker: Broker, clock: FakeClock, seconds: float, step: float = 0.05) -> None:
    """Advance the fake clock in steps, running the timers due at each."""
    end = clock.now + seconds
    while clock.now < end:
        clock.advance(step)
        broker.scheduler.run_due(clock.now)


def closes(peer: Peer) -> list[commands.Channel.Close]:
    return [value for _, value in peer.frames() if isinstance(value, commands.Channel.Close)]


def setup(broker: Broker, arguments: dict | None = None, consume: bool = True) -> Peer:
    peer = open_peer(broker)
    peer.send_method(1, commands.Queue.Declare(queue="q", arguments=arguments or {}))
    peer.send(publish(1, "q", b"m"))
    if consume:
        peer.send_method(1, commands.Basic.Consume(queue="q", consumer_tag="c"))
    else:
        peer.send_method(1, commands.Basic.Get(queue="q"))
    peer.frames()
    return peer


def test_unacked_delivery_closes_the_channel_with_rabbitmqs_frame() -> None:
    broker, clock = broker_with(2000)
    peer = setup(broker)
    run_for(broker, clock, 1.9)
    assert closes(peer) == []  # not before the deadline
    run_for(broker, clock, 0.6)
    data = peer.connection.data_to_send()
    assert data == method(1, commands.Channel.Close(406, TEXT, 0, 0))
    assert delivery_ack_timeout(1, 2000).reply_text == TEXT


def test_basic_get_without_no_ack_times_out_too() -> None:
    broker, clock = broker_with(2000)
    peer = setup(broker, consume=False)
    run_for(broker, clock, 2.5)
    assert [close.reply_code for close in closes(peer)] == [406]


def test_the_message_is_requeued_redelivered() -> None:
    broker, clock = broker_with(2000)
    peer = setup(broker)
    run_for(broker, clock, 2.5)
    peer.send_method(1, commands.Channel.CloseOk())
    other = Peer(broker)
    other.handshake()
    other.open_channel(1)
    other.send_method(1, commands.Basic.Get(queue="q", no_ack=True))
    [get_ok] = [value for _, value in other.frames() if isinstance(value, commands.Basic.GetOk)]
    assert get_ok.redelivered


def test_acks_in_time_keep_the_channel_open() -> None:
    broker, clock = broker_with(2000)
    peer = setup(broker)
    for _ in range(3):
        run_for(broker, clock, 1.5)
        peer.send_method(1, commands.Basic.Ack(delivery_tag=peer.connection.channels[1].next_delivery_tag - 1))
        peer.send(publish(1, "q", b"again"))
        assert closes(peer) == []
    run_for(broker, clock, 1.5)
    assert closes(peer) == []


def test_zero_turns_it_off() -> None:
    broker, clock = broker_with(0)
    peer = setup(broker)
    run_for(broker, clock, 30, step=0.5)
    assert closes(peer) == []


def test_queue_argument_overrides_the_broker_timeout() -> None:
    broker, clock = broker_with(0)
    peer = setup(broker, {"x-consumer-timeout": 1000})
    run_for(broker, clock, 0.9)
    assert closes(peer) == []
    run_for(broker, clock, 2.1)
    [close] = closes(peer)
    assert close.reply_text.endswith("Timeout value used: 1000 ms. " + TEXT.split("ms. ")[1])


def test_policy_overrides_and_the_lower_of_argument_and_policy_wins() -> None:
    broker, clock = broker_with(60_000)
    vhost = broker.vhosts["/"]
    vhost.set_policy(Policy("/", "ct", "^q$", {"consumer-timeout": 3000}, apply_to="queues"))
    peer = setup(broker, {"x-consumer-timeout": 5000})
    run_for(broker, clock, 2.9)
    assert closes(peer) == []
    run_for(broker, clock, 2.1)
    [close] = closes(peer)
    assert "Timeout value used: 3000 ms" in close.reply_text


def consume_with(broker: Broker, arguments: dict, queue_arguments: dict | None = None) -> Peer:
    peer = setup(broker, queue_arguments, consume=False)
    peer.send_method(1, commands.Basic.Recover(requeue=True))  # the basic.get's delivery back: consume it
    peer.send_method(1, commands.Basic.Consume(queue="q", consumer_tag="c", arguments=arguments))
    peer.frames()
    return peer


def test_consumer_argument_beats_the_queue_and_the_broker() -> None:
    broker, clock = broker_with(60_000)
    vhost = broker.vhosts["/"]
    vhost.set_policy(Policy("/", "ct", "^q$", {"consumer-timeout": 1000}, apply_to="queues"))
    peer = consume_with(broker, {"x-consumer-timeout": 4000}, {"x-consumer-timeout": 500})
    run_for(broker, clock, 3.9)
    assert closes(peer) == []  # neither the queue's 500 ms nor the policy's 1000 ms applies to it
    run_for(broker, clock, 2.2)  # checks run every second here (a tenth of 60 s, at most 1 s)
    [close] = closes(peer)
    assert "Timeout value used: 4000 ms" in close.reply_text


def test_consumer_argument_can_be_shorter_than_the_broker_default() -> None:
    broker, clock = broker_with(0)  # off broker-wide, on for this consumer
    peer = consume_with(broker, {"x-consumer-timeout": 1000})
    run_for(broker, clock, 2.2)
    [close] = closes(peer)
    assert close.reply_code == 406 and "Timeout value used: 1000 ms" in close.reply_text


@pytest.mark.parametrize(
    ("value", "reason"), [("soon", '"expected integer, got longstr"'), (-5, "{value_negative,-5}")]
)
def test_invalid_consumer_argument_is_refused(value: object, reason: str) -> None:
    broker, _ = broker_with(2000)
    peer = setup(broker, consume=False)
    peer.send_method(1, commands.Basic.Consume(queue="q", arguments={"x-consumer-timeout": value}))
    [close] = closes(peer)
    assert close.reply_code == 406
    assert (
        close.reply_text
        == f"PRECONDITION_FAILED - invalid arg 'x-consumer-timeout' for queue 'q' in vhost '/': {reason}"
    )


def test_invalid_queue_argument_is_refused() -> None:
    broker, _ = broker_with(2000)
    peer = open_peer(broker)
    peer.send_method(1, commands.Queue.Declare(queue="q", arguments={"x-consumer-timeout": -1}))
    [close] = closes(peer)
    assert close.reply_code == 406 and "x-consumer-timeout" in close.reply_text


def test_the_checks_stop_when_no_delivery_needs_an_ack() -> None:
    broker, clock = broker_with(2000)
    peer = setup(broker, consume=False)
    peer.send_method(1, commands.Basic.Ack(delivery_tag=1))
    assert broker.scheduler.next_deadline() is not None
    run_for(broker, clock, 1.5)
    assert broker.scheduler.next_deadline() is None and closes(peer) == []


def test_configured_by_environment_and_file(tmp_path) -> None:
    assert load_config(environ={}).consumer_timeout == 1_800_000
    assert load_config(environ={"AMQP_SERVER_CONSUMER_TIMEOUT": "0"}).consumer_timeout == 0
    path = tmp_path / "amqp-server.toml"
    path.write_text("consumer_timeout = 5000\n")
    assert load_config(config_file=path, environ={}).consumer_timeout == 5000
    with pytest.raises(ConfigError):
        load_config(environ={"AMQP_SERVER_CONSUMER_TIMEOUT": "-1"})
