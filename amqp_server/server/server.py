"""``serve(config)``: open the store, build the broker, listen, shut down cleanly on SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import ssl
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from storage.api import Store
from storage.factory import open_store

from ..core.broker import Broker, Limits
from ..core.clock import VirtualClock
from ..ops import access as ops_access
from ..ops import definitions
from ..ops.config import Config
from ..ops.running import RunningClaim, connect_host
from . import management_site, prometheus_site, standby
from .persister import Persister
from .protocol import AMQPProtocol, Connections
from .timer import SchedulerDriver
from .tls import server_context

log = logging.getLogger("amqp_server.server")


SHUTDOWN_GRACE = 2.0  # seconds clients get to answer connection.close at shutdown; then their sockets are dropped


async def serve(
    config: Config,
    ready: asyncio.Event | None = None,
    stop: asyncio.Event | None = None,
    on_listening: Callable[[str, int, Broker], None] | None = None,
    virtual_clock: VirtualClock | None = None,
) -> None:
    """Run the broker until ``stop`` is set, or SIGTERM/SIGINT when run in the main thread.

    ``on_listening(host, port, broker)`` is called once the sockets are bound (for
    embedding: ``amqp_server.ops.embedding`` uses it to learn the port of ``--port 0``).
    With ``virtual_clock`` its timers wait for ``virtual_clock.advance`` (see core.clock).
    With ``tls_cert`` and ``tls_key`` set, a second listener on ``tls_port`` speaks amqps.
    Bad TLS settings raise ``ValueError`` (or ``OSError`` for unreadable files) before anything starts.
    """
    tls = server_context(config)
    stop = stop or asyncio.Event()
    leadership = await standby.lead(config, stop)  # a database store: on standby until its lease is ours
    if leadership is None:
        log.info("stopped")
        return
    config = leadership.config
    started = time.monotonic()
    store = open_store(config)  # raises DataDirLocked if another broker uses the data dir
    try:
        leadership.fence(store)
        leadership.watch(stop)  # a lost lease sets stop: clients get 320, the listeners close
        claim = RunningClaim(config.data_dir)  # before access.json is read: see ops.running
        try:
            await _serve(config, tls, store, claim, started, ready, stop, on_listening, virtual_clock)
        finally:
            claim.release()
    finally:
        leadership.close(store)  # syncs first: a clean shutdown loses nothing; then frees the lease
        log.info("stopped")


async def _serve(
    config: Config,
    tls: ssl.SSLContext | None,
    store: Store,
    claim: RunningClaim,
    started: float,
    ready: asyncio.Event | None,
    stop: asyncio.Event,
    on_listening: Callable[[str, int, Broker], None] | None,
    virtual_clock: VirtualClock | None,
) -> None:
    loop = asyncio.get_running_loop()
    broker = _open_broker(config, store, loop.time, virtual_clock)
    gc.freeze()  # recovered messages are long-lived: keep them out of later full collections
    recovered = sum(queue.message_count for vhost in broker.vhosts.values() for queue in vhost.queues.values())
    persister = Persister(store, broker.sync_barrier)
    timers = SchedulerDriver(broker.scheduler, virtual=virtual_clock is not None)
    connections = Connections(config.max_connections)
    _watch_resources(config, broker, connections)
    broker.stats.start()  # statistics for the management API: one sample of every object each 5 s
    servers: list[asyncio.Server] = []
    signals: tuple[signal.Signals, ...] = ()
    management: management_site.ManagementSite | None = None
    metrics: management_site.ManagementSite | None = None
    try:
        await _listen(config, tls, broker, connections, servers)
        if threading.current_thread() is threading.main_thread():
            signals = (signal.SIGTERM, signal.SIGINT)
        for signum in signals:  # before the listening line: whoever reads it may stop us at once
            loop.add_signal_handler(signum, stop.set)
        listeners = _listeners(servers)
        if config.management_port >= 0:
            management = await management_site.start(config, broker, listeners)
        if config.prometheus_port >= 0:
            metrics = await prometheus_site.start(config, broker)
        # users, vhosts and permissions change while we run only through the API: the admin CLI finds it here
        claim.publish(None if management is None else f"http://{connect_host(config.host)}:{management.port}")
        host, port = _announce_listening(config, listeners, management, metrics)
        log.info("recovered %d messages in %.2f s", recovered, time.monotonic() - started)
        log.debug("event loop: %s.%s", type(loop).__module__, type(loop).__name__)
        if on_listening is not None:
            on_listening(host, port, broker)
        if ready is not None:
            ready.set()
        await stop.wait()
    finally:
        if management is not None:
            await management.stop()
        if metrics is not None:
            await metrics.stop()
        for signum in signals:
            loop.remove_signal_handler(signum)
        for server in servers:
            server.close()
        timers.stop()
        await _close_connections(connections)
        await persister.drain()


def _open_broker(
    config: Config, store: Store, clock: Callable[[], float], virtual_clock: VirtualClock | None = None
) -> Broker:
    """The broker over the recovered ``store``, with its users, vhosts and any definitions to load."""
    home = ops_access.access_home(config.data_dir, store)  # access.json, or the store's own document
    access, vhost_names = ops_access.startup_access(config, home)
    broker = Broker(
        store=store,
        access=access,
        clock=clock,
        virtual_clock=virtual_clock,
        limits=Limits(
            channel_max=config.channel_max,
            frame_max=config.frame_max,
            heartbeat=config.heartbeat,
            handshake_timeout=config.handshake_timeout,
            max_message_size=config.max_message_size,
            consumer_timeout=config.consumer_timeout,
        ),
    )
    ops_access.apply_to_broker(broker, access, vhost_names)
    if config.load_definitions is not None:
        counts = definitions.import_file(broker, config.load_definitions)
        definitions.save_broker_access(home, broker)
        log.info("imported definitions from %s: %s", config.load_definitions, counts)
    return broker


def _watch_resources(config: Config, broker: Broker, connections: Connections) -> None:
    """Memory and disk alarms: each change of an alarm is applied to every connection's flow."""
    broker.flow.high_watermark = config.memory_high_watermark

    def apply_flow() -> None:
        for protocol in list(connections.protocols):
            protocol.apply_flow()

    broker.alarms.on_change = apply_flow
    broker.disk.start(config.disk_free_limit, lambda: free_disk_space(config.data_dir))


async def _listen(
    config: Config, tls: ssl.SSLContext | None, broker: Broker, connections: Connections, servers: list[asyncio.Server]
) -> None:
    """Open the AMQP listener (and the amqps one), appending each to ``servers`` as it opens: whatever opened
    is closed by the caller even if a later one fails."""
    loop = asyncio.get_running_loop()
    servers.append(
        await loop.create_server(
            lambda: AMQPProtocol(broker, connections), config.host, config.port, reuse_address=True
        )
    )
    if tls is not None:
        servers.append(
            await loop.create_server(
                lambda: AMQPProtocol(broker, connections, tls=True),
                config.host,
                config.tls_port,
                reuse_address=True,
                ssl=tls,
                ssl_handshake_timeout=config.handshake_timeout,
            )
        )


def _listeners(servers: list[asyncio.Server]) -> list[tuple[str, int, str]]:
    """(host, port, protocol) of each AMQP listener: plain first, then amqps if any."""
    listeners = [(*servers[0].sockets[0].getsockname()[:2], "amqp")]
    if len(servers) > 1:
        listeners.append((*servers[1].sockets[0].getsockname()[:2], "amqp/ssl"))
    return listeners


def _announce_listening(
    config: Config,
    listeners: list[tuple[str, int, str]],
    management: management_site.ManagementSite | None,
    metrics: management_site.ManagementSite | None,
) -> tuple[str, int]:
    """Print where the broker listens; returns the plain AMQP host and port.

    Lines that tooling (tests, benchmarks) parses for the ports: printed whatever the log level or
    format, the AMQP one first (readers that take the first "listening on" line get the AMQP port).
    """
    host, port = listeners[0][:2]
    print(f"amqp-server listening on {host}:{port}, data dir {config.data_dir}", file=sys.stderr, flush=True)
    if len(listeners) > 1:
        tls_host, tls_port = listeners[1][:2]
        print(f"amqp-server listening on {tls_host}:{tls_port} (amqps)", file=sys.stderr, flush=True)
    if management is not None:
        print(f"amqp-server management listening on {config.host}:{management.port}", file=sys.stderr, flush=True)
    if metrics is not None:
        print(f"amqp-server prometheus listening on {config.host}:{metrics.port}", file=sys.stderr, flush=True)
    return host, port


def free_disk_space(path: Path) -> int:
    """Bytes an unprivileged process can still write on the filesystem holding ``path`` (df's "Available")."""
    stat = os.statvfs(path)
    return stat.f_bavail * stat.f_frsize


async def _close_connections(connections: Connections) -> None:
    """CONNECTION_FORCED to every client; wait (bounded) for them to go, then drop the stragglers."""
    protocols = list(connections.protocols)
    if not protocols:
        return
    log.info("shutting down: closing %d connections", len(protocols))
    for protocol in protocols:
        protocol.close("broker forced connection closure with reason 'shutdown'")
    await asyncio.wait([protocol.closed for protocol in protocols], timeout=SHUTDOWN_GRACE)
    stragglers = list(connections.protocols)
    if stragglers:
        log.warning("dropping %d connections that did not close within %.0f s", len(stragglers), SHUTDOWN_GRACE)
        for protocol in stragglers:
            protocol.abort()
        await asyncio.sleep(0)  # let connection_lost release what they held
