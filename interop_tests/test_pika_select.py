"""pika's asynchronous SelectConnection against the broker: the callback-driven flow of an async client.

open → channel → queue.declare → basic.consume → publish 100 messages → receive
all 100 in order (acking each) → basic.cancel → connection.close, all driven by
callbacks on the connection's own ioloop.  A ``call_later`` safety timer stops
the loop and fails the test if the flow does not finish in time.
"""

from __future__ import annotations

import pika
import pika.exceptions

MESSAGES = [f"message {i}".encode() for i in range(100)]
TIMEOUT = 10.0


def test_select_connection_declares_consumes_publishes_cancels_and_closes(params, unique):
    params.socket_timeout = params.stack_timeout = TIMEOUT
    received: list[tuple[int, bytes]] = []
    events: list[str] = []
    state: dict[str, object] = {}

    def on_open(connection):
        events.append("open")
        connection.channel(on_open_callback=on_channel_open)

    def on_channel_open(channel):
        events.append("channel")
        state["channel"] = channel
        channel.queue_declare(unique, exclusive=True, callback=on_declared)

    def on_declared(frame):
        events.append("declared")
        channel = state["channel"]
        state["tag"] = channel.basic_consume(unique, on_message, callback=on_consume_ok)

    def on_consume_ok(frame):
        events.append("consuming")
        for body in MESSAGES:
            state["channel"].basic_publish("", unique, body)

    def on_message(channel, method, properties, body):
        received.append((method.delivery_tag, body))
        channel.basic_ack(method.delivery_tag)
        if len(received) == len(MESSAGES):
            channel.basic_cancel(state["tag"], callback=on_cancel_ok)

    def on_cancel_ok(frame):
        events.append("cancelled")
        state["connection"].close()

    def on_closed(connection, reason):
        events.append("closed")
        state["close_reason"] = reason
        connection.ioloop.stop()

    def on_open_error(connection, error):
        state["open_error"] = error
        connection.ioloop.stop()

    def on_timeout():
        events.append("timeout")
        state["connection"].ioloop.stop()

    connection = pika.SelectConnection(
        params, on_open_callback=on_open, on_open_error_callback=on_open_error, on_close_callback=on_closed
    )
    state["connection"] = connection
    connection.ioloop.call_later(TIMEOUT, on_timeout)
    connection.ioloop.start()

    assert "open_error" not in state
    assert events == ["open", "channel", "declared", "consuming", "cancelled", "closed"]
    assert [body for _, body in received] == MESSAGES
    assert [tag for tag, _ in received] == list(range(1, len(MESSAGES) + 1))
    assert isinstance(state["close_reason"], pika.exceptions.ConnectionClosedByClient)
