"""``serve(config)``: open the store, build the broker, listen, shut down cleanly on SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import sys
import threading
import time
from typing import Callable

from storage.segment_store import SegmentStore

from ..config import Config
from ..core.broker import Broker, Limits
from .persister import Persister
from .protocol import AMQPProtocol
from .timer import SchedulerDriver

log = logging.getLogger("amqp_server.server")


async def serve(config: Config, ready: asyncio.Event | None = None, stop: asyncio.Event | None = None,
                on_listening: Callable[[str, int, Broker], None] | None = None) -> None:
    """Run the broker until ``stop`` is set, or SIGTERM/SIGINT when run in the main thread.

    ``on_listening(host, port, broker)`` is called once the socket is bound (for
    embedding: ``amqp_server.testing`` uses it to learn the port of ``--port 0``).
    """
    started = time.monotonic()
    store = SegmentStore(config.data_dir)  # raises DataDirLocked if another broker uses it
    try:
        await _serve(config, store, started, ready, stop or asyncio.Event(), on_listening)
    finally:
        store.close()  # syncs first: a clean shutdown loses nothing
        log.info("stopped")


async def _serve(config: Config, store: SegmentStore, started: float, ready: asyncio.Event | None,
                 stop: asyncio.Event, on_listening: Callable[[str, int, Broker], None] | None) -> None:
    loop = asyncio.get_running_loop()
    broker = Broker(store=store, clock=loop.time,
                    limits=Limits(channel_max=config.channel_max, frame_max=config.frame_max,
                                  heartbeat=config.heartbeat))
    gc.freeze()  # recovered messages are long-lived: keep them out of later full collections
    recovered = sum(queue.message_count for vhost in broker.vhosts.values() for queue in vhost.queues.values())
    persister = Persister(store, broker.sync_barrier)
    timers = SchedulerDriver(broker.scheduler)
    connections: set[AMQPProtocol] = set()
    broker.flow.high_watermark = config.memory_high_watermark
    broker.flow.on_change = lambda blocked: [protocol.apply_flow(blocked) for protocol in list(connections)]
    server = await loop.create_server(lambda: AMQPProtocol(broker, connections), config.host, config.port,
                                      reuse_address=True)
    host, port = server.sockets[0].getsockname()[:2]
    # One line that tooling (tests, benchmarks) parses for the port: printed whatever the log level.
    print(f"amqp-server listening on {host}:{port}, data dir {config.data_dir}", file=sys.stderr, flush=True)
    log.info("recovered %d messages in %.2f s", recovered, time.monotonic() - started)
    if on_listening is not None:
        on_listening(host, port, broker)
    signals = (signal.SIGTERM, signal.SIGINT) if threading.current_thread() is threading.main_thread() else ()
    for signum in signals:
        loop.add_signal_handler(signum, stop.set)
    if ready is not None:
        ready.set()
    try:
        await stop.wait()
    finally:
        for signum in signals:
            loop.remove_signal_handler(signum)
        server.close()
        timers.stop()
        for protocol in list(connections):
            protocol.close("broker forced connection closure with reason 'shutdown'")
        await asyncio.sleep(0.05)  # let the close frames go out
        await persister.drain()
