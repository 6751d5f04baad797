"""Group commit and disk-full behaviour: confirms for persistent messages come after a successful sync,
and a failed sync (ENOSPC) nacks them instead; publishing resumes when the disk has space again."""

from __future__ import annotations

import asyncio
import errno

from pamqp import commands

from amqp_server.core.broker import Broker
from amqp_server.server.persister import Persister
from storage.memory import MemoryStore
from tests.frames import FakeClock, Peer, publish

PERSISTENT = commands.Basic.Properties(delivery_mode=2)


class FlakyDisk(MemoryStore):
    """A store whose next ``fail`` syncs raise ENOSPC, then work again."""

    def __init__(self, fail: int) -> None:
        super().__init__()
        self.fail = fail
        self.syncs = 0

    def sync(self) -> None:
        self.syncs += 1
        if self.fail:
            self.fail -= 1
            raise OSError(errno.ENOSPC, "No space left on device")


def confirming_publisher(broker: Broker) -> Peer:
    peer = Peer(broker, auto_sync=False)
    peer.handshake()
    peer.open_channel(1)
    peer.send_method(1, commands.Confirm.Select())
    peer.send_method(1, commands.Queue.Declare(queue="q", durable=True))
    return peer


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0.01)


async def test_persistent_confirms_wait_for_one_shared_sync():
    store = FlakyDisk(fail=0)
    broker = Broker(store=store, clock=FakeClock())
    Persister(store, broker.sync_barrier)
    peer = confirming_publisher(broker)
    await settle()
    peer.frames()
    syncs_before = store.syncs
    peer.send(publish(1, "q", b"a", properties=PERSISTENT) * 3)
    assert not [f for _, f in peer.methods() if isinstance(f, commands.Basic.Ack)]  # not before the sync
    await settle()
    acks = [f for _, f in peer.methods() if isinstance(f, commands.Basic.Ack)]
    assert [(a.delivery_tag, a.multiple) for a in acks] == [(3, True)]
    assert store.syncs == syncs_before + 1


async def test_a_failed_sync_nacks_and_the_next_one_confirms():
    store = FlakyDisk(fail=0)
    broker = Broker(store=store, clock=FakeClock())
    Persister(store, broker.sync_barrier)
    peer = confirming_publisher(broker)
    await settle()
    peer.frames()
    store.fail = 1
    peer.send(publish(1, "q", b"lost?", properties=PERSISTENT) * 2)
    await settle()
    nacks = [f for _, f in peer.methods() if isinstance(f, commands.Basic.Nack)]
    assert [(n.delivery_tag, n.multiple) for n in nacks] == [(2, True)]

    peer.send(publish(1, "q", b"after", properties=PERSISTENT))
    await settle()
    acks = [f for _, f in peer.methods() if isinstance(f, commands.Basic.Ack)]
    assert [(a.delivery_tag, a.multiple) for a in acks] == [(3, False)]


async def until(condition, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.005)


async def test_after_a_failed_sync_the_store_is_retried_without_new_writes():
    store = FlakyDisk(fail=0)
    broker = Broker(store=store, clock=FakeClock())
    persister = Persister(store, broker.sync_barrier, retry_after=0.01)
    peer = confirming_publisher(broker)
    await settle()
    syncs_before = store.syncs
    store.fail = 2
    peer.send(publish(1, "q", b"kept in memory", properties=PERSISTENT))
    await until(lambda: store.syncs >= syncs_before + 3)  # the failure, a failed retry, a retry that works
    await asyncio.sleep(0.05)
    assert store.syncs == syncs_before + 3  # and then no more: nothing is left to write
    await persister.drain()


async def test_durable_declares_on_several_channels_share_one_sync():
    store = FlakyDisk(fail=0)
    broker = Broker(store=store, clock=FakeClock())
    Persister(store, broker.sync_barrier)
    peer = Peer(broker, auto_sync=False)
    peer.handshake()
    for channel in (1, 2, 3):
        peer.open_channel(channel)
    await settle()
    peer.frames()
    syncs_before = store.syncs
    for channel in (1, 2, 3):
        peer.send_method(channel, commands.Queue.Declare(queue=f"q{channel}", durable=True))
    await settle()
    replies = [(channel, type(method)) for channel, method in peer.methods()]
    assert sorted(replies) == [(channel, commands.Queue.DeclareOk) for channel in (1, 2, 3)]
    assert store.syncs == syncs_before + 1
