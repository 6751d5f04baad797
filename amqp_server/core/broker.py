"""The broker: virtual hosts, users, the store, the clock, and the limits connections negotiate.

One ``Broker`` is shared by every connection of a server.  It is plain data plus
lookups; behaviour lives in the connection, channel, vhost and queue objects.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from storage.api import Store
from storage.memory import MemoryStore

from .access import AccessControl
from .clock import VirtualClock
from .confirms import SyncBarrier
from .consumer_timeout import ConsumerTimeouts
from .counters import Counters
from .flow import MEMORY, Alarms, DiskMonitor, MemoryFlow
from .reply_to import ReplyToRegistry
from .scheduler import Scheduler
from .stats_sampler import Sampler
from .vhost import VirtualHost


@dataclass(frozen=True)
class Limits:
    """What the broker proposes in ``connection.tune`` and enforces (RabbitMQ's defaults)."""

    channel_max: int = 2047
    frame_max: int = 131072
    heartbeat: int = 60
    handshake_timeout: float = 10.0
    max_message_size: int = 128 * 1024 * 1024
    consumer_timeout: int = 1_800_000  # ms a delivery may stay unacknowledged (core/consumer_timeout.py); 0: off


@dataclass
class Broker:
    """What every connection of a server shares: the vhosts, the store, access control, the limits, the clocks
    and scheduler, the sync barrier, the reply-to registry and the resource alarms."""

    store: Store = field(default_factory=MemoryStore)
    access: AccessControl = field(default_factory=AccessControl.default)
    limits: Limits = field(default_factory=Limits)
    clock: Callable[[], float] = time.monotonic
    vhosts: dict[str, VirtualHost] = field(default_factory=dict)
    sync_barrier: SyncBarrier = field(default_factory=SyncBarrier)
    wall_clock: Callable[[], float] = time.time
    scheduler: Scheduler = field(init=False)
    reply_to: ReplyToRegistry = field(default_factory=ReplyToRegistry)
    flow: MemoryFlow = field(default_factory=MemoryFlow)
    alarms: Alarms = field(default_factory=Alarms)  # public read: which resource alarms are in effect
    disk: DiskMonitor = field(init=False)  # free space and limit of the data dir's disk (started by the server)
    # every live core.Connection (each adds itself, and leaves when it finishes): what the management API lists.
    # Typed Any: naming Connection here would make broker and connection import each other.
    connections: set[Any] = field(default_factory=set)
    counters: Counters = field(default_factory=Counters)  # churn and closed channels' counts (Prometheus)
    stats: Sampler = field(init=False)  # message rates and lengths, sampled every 5 s (started by the server)
    # a test's clock (see core.clock): the scheduler and wall_clock read it; ``clock`` (connection deadlines) does not
    virtual_clock: VirtualClock | None = None
    consumer_timeouts: ConsumerTimeouts = field(init=False)  # woken at each channel.open

    def __post_init__(self) -> None:
        if self.virtual_clock is not None:
            self.wall_clock = self.virtual_clock.wall_now
        self.scheduler = Scheduler(self.clock if self.virtual_clock is None else self.virtual_clock.now)
        self.disk = DiskMonitor(self.alarms, self.scheduler)
        self.stats = Sampler(self)
        self.consumer_timeouts = ConsumerTimeouts(self.scheduler, self.limits.consumer_timeout, self._open_channels)
        self.flow.on_change = lambda blocked: self.alarms.set(MEMORY, blocked)
        self.add_vhost("/")
        recovered = self.store.recover()
        for vhost_name in (
            *(record.vhost for record in recovered.exchanges),
            *(record.vhost for record in recovered.queues),
            *(record.vhost for record in recovered.bindings),
            *(record.vhost for record in recovered.policies),
        ):
            self.add_vhost(vhost_name)  # durable state of every vhost comes back, not only "/"
        for vhost in self.vhosts.values():
            vhost.restore(recovered)

    def _open_channels(self) -> Iterator[Any]:
        for connection in self.connections:
            yield from connection.channels.values()

    def add_vhost(self, name: str) -> VirtualHost:
        """Create (or return) a virtual host; it shares the broker's store, clock and scheduler."""
        vhost = self.vhosts.get(name)
        if vhost is None:
            vhost = self.vhosts[name] = VirtualHost(
                name, self.store, self.sync_barrier, self.scheduler, self.wall_clock, self.flow, self.counters
            )
        return vhost
