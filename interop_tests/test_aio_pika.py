"""aio-pika (asyncio, aiormq underneath) against the real broker process.

Covers: connect and connect_robust, publisher confirms (aio-pika's default),
direct exchanges and bindings, properties and headers round-tripping,
``queue.iterator()`` consumption with ``message.process()`` acks, basic.get,
prefetch, mandatory returns, channel errors that leave the connection usable,
exclusive queues, consumer cancel, and requeue of unacked messages when a
connection closes.  Every await is bounded by ``asyncio.wait_for``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from types import SimpleNamespace

import aio_pika
import aiormq
import pytest
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection

TIMEOUT = 5.0


async def bounded(awaitable, timeout: float = TIMEOUT):
    return await asyncio.wait_for(awaitable, timeout)


@pytest.fixture
async def conn(broker: SimpleNamespace) -> AsyncIterator[AbstractRobustConnection]:
    connection = await bounded(aio_pika.connect(broker.url))
    try:
        yield connection
    finally:
        await bounded(connection.close())


async def test_connect_reports_server_properties(conn) -> None:
    properties = conn.transport.connection.server_properties
    assert properties["capabilities"]["publisher_confirms"] is True
    assert properties["capabilities"]["basic.nack"] is True
    assert not conn.is_closed


async def test_connect_robust_publish_and_get(broker: SimpleNamespace, unique: str) -> None:
    connection = await bounded(aio_pika.connect_robust(broker.url))
    try:
        channel = await bounded(connection.channel())
        queue = await bounded(channel.declare_queue(unique, auto_delete=True))
        await bounded(channel.default_exchange.publish(aio_pika.Message(b"robust"), routing_key=unique))
        message = await bounded(queue.get(timeout=TIMEOUT))
        assert message.body == b"robust"
        await bounded(message.ack())
    finally:
        await bounded(connection.close())


async def test_publisher_confirms_are_awaited_for_each_publish(conn, unique: str) -> None:
    channel = await bounded(conn.channel())
    assert channel.publisher_confirms
    queue = await bounded(channel.declare_queue(unique, auto_delete=True))
    confirmations = await bounded(
        asyncio.gather(
            *(
                channel.default_exchange.publish(aio_pika.Message(str(i).encode()), routing_key=unique)
                for i in range(50)
            )
        )
    )
    assert all(isinstance(c, aiormq.spec.Basic.Ack) for c in confirmations)
    declared = await bounded(channel.declare_queue(unique, passive=True))
    assert declared.declaration_result.message_count == 50
    await bounded(queue.purge())


async def test_direct_exchange_binding_routes_properties_and_headers(conn, unique: str) -> None:
    channel = await bounded(conn.channel())
    exchange = await bounded(channel.declare_exchange(unique, aio_pika.ExchangeType.DIRECT, auto_delete=True))
    queue = await bounded(channel.declare_queue(f"{unique}-q", auto_delete=True))
    await bounded(queue.bind(exchange, routing_key="rk"))
    sent_at = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    await bounded(
        exchange.publish(
            aio_pika.Message(
                b'{"k": 1}',
                content_type="application/json",
                content_encoding="utf-8",
                headers={"x-int": 7, "x-str": "v", "x-bool": True, "x-list": [1, "a"], "x-nested": {"n": 1}},
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                priority=3,
                correlation_id="corr",
                reply_to="replies",
                expiration=60,
                message_id="mid-1",
                timestamp=sent_at,
                type="kind",
                user_id="guest",
                app_id="tests",
            ),
            routing_key="rk",
        )
    )
    await bounded(exchange.publish(aio_pika.Message(b"unbound key"), routing_key="other"))
    message = await bounded(queue.get(timeout=TIMEOUT))
    assert message.body == b'{"k": 1}'
    assert message.exchange == unique
    assert message.routing_key == "rk"
    assert message.redelivered is False
    assert message.content_type == "application/json"
    assert message.content_encoding == "utf-8"
    assert message.headers == {"x-int": 7, "x-str": "v", "x-bool": True, "x-list": [1, "a"], "x-nested": {"n": 1}}
    assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    assert message.priority == 3
    assert message.correlation_id == "corr"
    assert message.reply_to == "replies"
    assert message.expiration == 60
    assert message.message_id == "mid-1"
    assert message.timestamp == sent_at
    assert message.type == "kind"
    assert message.user_id == "guest"
    assert message.app_id == "tests"
    await bounded(message.ack())
    assert await bounded(queue.get(fail=False)) is None  # "other" had no binding


async def test_unbind_stops_routing(conn, unique: str) -> None:
    channel = await bounded(conn.channel())
    exchange = await bounded(channel.declare_exchange(unique, aio_pika.ExchangeType.DIRECT))
    queue = await bounded(channel.declare_queue(f"{unique}-q", auto_delete=True))
    await bounded(queue.bind(exchange, routing_key="rk"))
    await bounded(queue.unbind(exchange, routing_key="rk"))
    await bounded(exchange.publish(aio_pika.Message(b"dropped"), routing_key="rk"))
    assert await bounded(queue.get(fail=False)) is None
    await bounded(exchange.delete())


async def test_auto_delete_exchange_goes_away_with_its_last_binding(conn, unique: str) -> None:
    channel = await bounded(conn.channel())
    exchange = await bounded(channel.declare_exchange(unique, aio_pika.ExchangeType.DIRECT, auto_delete=True))
    queue = await bounded(channel.declare_queue(f"{unique}-q", auto_delete=True))
    await bounded(queue.bind(exchange, routing_key="rk"))
    await bounded(queue.unbind(exchange, routing_key="rk"))
    with pytest.raises(aio_pika.exceptions.ChannelNotFoundEntity) as excinfo:
        await bounded(channel.declare_exchange(unique, passive=True))
    assert excinfo.value.args[0] == f"NOT_FOUND - no exchange '{unique}' in vhost '/'"


async def test_queue_iterator_with_process_acks_every_message(conn, unique: str) -> None:
    channel = await bounded(conn.channel())
    queue = await bounded(channel.declare_queue(unique))
    for i in range(5):
        await bounded(channel.default_exchange.publish(aio_pika.Message(f"m{i}".encode()), routing_key=unique))

    async def consume() -> list[bytes]:
        bodies = []
        async with queue.iterator() as messages:
            async for message in messages:
                async with message.process():
                    bodies.append(message.body)
                if len(bodies) == 5:
                    break
        return bodies

    assert await bounded(consume()) == [b"m0", b"m1", b"m2", b"m3", b"m4"]
    declared = await bounded(channel.declare_queue(unique, passive=True))
    assert declared.declaration_result.message_count == 0
    assert declared.declaration_result.consumer_count == 0  # the iterator cancelled its consumer
    await bounded(queue.delete())


async def test_auto_delete_queue_goes_away_when_its_last_consumer_cancels(conn, unique: str) -> None:
    channel = await bounded(conn.channel())
    queue = await bounded(channel.declare_queue(unique, auto_delete=True))

    async def ignore(message: AbstractIncomingMessage) -> None:
        pass

    tag = await bounded(queue.consume(ignore))
    await bounded(queue.cancel(tag))
    with pytest.raises(aio_pika.exceptions.ChannelNotFoundEntity):
        await bounded(channel.declare_queue(unique, passive=True))


async def test_process_rejects_with_requeue_when_the_block_raises(conn, unique: str) -> None:
    channel = await bounded(conn.channel())
    queue = await bounded(channel.declare_queue(unique, auto_delete=True))
    await bounded(channel.default_exchange.publish(aio_pika.Message(b"again"), routing_key=unique))
    message = await bounded(queue.get(timeout=TIMEOUT))
    with pytest.raises(RuntimeError):
        async with message.process(requeue=True):
            raise RuntimeError("handler failed")
    again = await bounded(queue.get(timeout=TIMEOUT))
    assert again.body == b"again"
    assert again.redelivered is True
    await bounded(again.ack())


async def test_get_on_empty_queue_returns_none_and_reports_count(conn, unique: str) -> None:
    channel = await bounded(conn.channel())
    queue = await bounded(channel.declare_queue(unique, auto_delete=True))
    assert await bounded(queue.get(fail=False)) is None
    for body in (b"a", b"b"):
        await bounded(channel.default_exchange.publish(aio_pika.Message(body), routing_key=unique))
    first = await bounded(queue.get(no_ack=True))
    assert first.body == b"a"
    assert first.message_count == 1  # messages left after this one


async def test_prefetch_limits_unacked_deliveries(conn, unique: str) -> None:
    channel = await bounded(conn.channel())
    await bounded(channel.set_qos(prefetch_count=2))
    queue = await bounded(channel.declare_queue(unique, auto_delete=True))
    for i in range(5):
        await bounded(channel.default_exchange.publish(aio_pika.Message(str(i).encode()), routing_key=unique))
    received: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()
    tag = await bounded(queue.consume(received.put))
    held = [await bounded(received.get()), await bounded(received.get())]
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(received.get(), 0.3)  # a third would exceed the prefetch
    await bounded(held[0].ack())
    third = await bounded(received.get())
    assert [m.body for m in held + [third]] == [b"0", b"1", b"2"]
    await bounded(queue.cancel(tag))


async def test_mandatory_unroutable_publish_raises_when_on_return_raises(conn, unique: str) -> None:
    channel = await bounded(conn.channel(on_return_raises=True))
    with pytest.raises(aio_pika.exceptions.DeliveryError) as excinfo:
        await bounded(
            channel.default_exchange.publish(
                aio_pika.Message(b"nowhere", message_id="m1"), routing_key=unique, mandatory=True
            )
        )
    frame = excinfo.value.frame
    assert isinstance(frame, aiormq.spec.Basic.Return)
    assert frame.reply_code == 312
    assert frame.reply_text == "NO_ROUTE"
    assert frame.routing_key == unique
    # the channel stays usable after a return
    queue = await bounded(channel.declare_queue(f"{unique}-ok", auto_delete=True))
    await bounded(
        channel.default_exchange.publish(
            aio_pika.Message(b"ok", message_id="m2"), routing_key=queue.name, mandatory=True
        )
    )


async def test_mandatory_return_reaches_the_return_callback(conn, unique: str) -> None:
    channel = await bounded(conn.channel())
    returned: asyncio.Future = asyncio.get_running_loop().create_future()
    channel.return_callbacks.add(lambda _channel, message: returned.set_result(message))
    await bounded(
        channel.default_exchange.publish(
            aio_pika.Message(b"bounced", headers={"h": "v"}), routing_key=unique, mandatory=True
        )
    )
    message = await bounded(returned)
    assert message.body == b"bounced"
    assert message.headers == {"h": "v"}


async def test_passive_declare_of_missing_queue_is_404_and_connection_survives(conn, unique: str) -> None:
    channel = await bounded(conn.channel())
    with pytest.raises(aio_pika.exceptions.ChannelNotFoundEntity) as excinfo:
        await bounded(channel.declare_queue(unique, passive=True))
    assert excinfo.value.args[0] == f"NOT_FOUND - no queue '{unique}' in vhost '/'"
    assert channel.is_closed
    assert not conn.is_closed
    fresh = await bounded(conn.channel())
    queue = await bounded(fresh.declare_queue(unique, auto_delete=True))
    await bounded(fresh.default_exchange.publish(aio_pika.Message(b"after"), routing_key=unique))
    assert (await bounded(queue.get(no_ack=True))).body == b"after"


async def test_exclusive_queue_is_locked_for_other_connections(conn, broker: SimpleNamespace, unique: str) -> None:
    owner_channel = await bounded(conn.channel())
    await bounded(owner_channel.declare_queue(unique, exclusive=True))
    other = await bounded(aio_pika.connect(broker.url))
    try:
        channel = await bounded(other.channel())
        with pytest.raises(aiormq.exceptions.ChannelLockedResource) as excinfo:
            await bounded(channel.declare_queue(unique, exclusive=True))
        assert excinfo.value.args[0].startswith(
            f"RESOURCE_LOCKED - cannot obtain exclusive access to locked queue '{unique}' in vhost '/'"
        )
        assert not other.is_closed
    finally:
        await bounded(other.close())


async def test_exclusive_queue_is_deleted_when_its_connection_closes(broker: SimpleNamespace, unique: str) -> None:
    owner = await bounded(aio_pika.connect(broker.url))
    channel = await bounded(owner.channel())
    await bounded(channel.declare_queue(unique, exclusive=True))
    await bounded(owner.close())
    other = await bounded(aio_pika.connect(broker.url))
    try:
        with pytest.raises(aio_pika.exceptions.ChannelNotFoundEntity):
            await bounded((await bounded(other.channel())).declare_queue(unique, passive=True))
    finally:
        await bounded(other.close())


async def test_consumer_cancel_stops_deliveries(conn, unique: str) -> None:
    channel = await bounded(conn.channel())
    queue = await bounded(channel.declare_queue(unique, auto_delete=False))
    received: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()
    tag = await bounded(queue.consume(received.put, no_ack=True))
    await bounded(channel.default_exchange.publish(aio_pika.Message(b"before"), routing_key=unique))
    assert (await bounded(received.get())).body == b"before"
    cancel_ok = await bounded(queue.cancel(tag))
    assert cancel_ok.consumer_tag == tag
    await bounded(channel.default_exchange.publish(aio_pika.Message(b"after"), routing_key=unique))
    left = await bounded(queue.get(no_ack=True))
    assert left.body == b"after"
    assert received.empty()
    await bounded(queue.delete())


async def test_closing_a_connection_requeues_its_unacked_messages(broker: SimpleNamespace, unique: str) -> None:
    first = await bounded(aio_pika.connect(broker.url))
    channel = await bounded(first.channel())
    queue = await bounded(channel.declare_queue(unique))
    for body in (b"one", b"two"):
        await bounded(channel.default_exchange.publish(aio_pika.Message(body), routing_key=unique))
    held = [await bounded(queue.get()), await bounded(queue.get())]
    assert [m.redelivered for m in held] == [False, False]
    await bounded(first.close())

    second = await bounded(aio_pika.connect(broker.url))
    try:
        channel = await bounded(second.channel())
        queue = await bounded(channel.declare_queue(unique, passive=True))
        again = [await bounded(queue.get()), await bounded(queue.get())]
        assert [m.body for m in again] == [b"one", b"two"]
        assert [m.redelivered for m in again] == [True, True]
        for message in again:
            await bounded(message.ack())
        await bounded(queue.delete())
    finally:
        await bounded(second.close())
