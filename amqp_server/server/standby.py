"""Standby and failover on a database store: wait for the lease, serve under it, stop when it is lost.

With a ``postgresql://`` store several brokers may point at one database; ``storage.postgres_lease``
lets one of them be active.  ``lead`` is where ``serve()`` waits, before opening the store: it
announces ``amqp-server standby: waiting for the lease on …``, answers the management port with
503 "standby" (so a load balancer's health check and an operator's curl see the state), and never
listens on AMQP, so clients' failover lists move on to the active broker.  Once the lease is ours
it starts renewing it and hands back a ``Leadership``: ``fence`` gives the store its epoch before
anything is recovered, ``watch`` stops the broker (``stop`` set: every client gets 320
CONNECTION_FORCED, the listeners close) the moment the lease is lost, and ``close`` closes the store
and releases the lease — then raises ``LeaseLost``, so that the process exits nonzero and its
supervisor starts it again, as a standby.  Exiting, rather than going back to standby in-process,
throws away every queue, consumer and unconfirmed publish of the old term at once; the new term
starts from the database like any broker start.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
import signal
import sys
import threading
from typing import TYPE_CHECKING, Any

from aiohttp import web

from storage.api import Store
from storage.factory import is_postgres

from ..ops.config import Config

if TYPE_CHECKING:
    from storage.postgres_lease import Lease

log = logging.getLogger("amqp_server.standby")

WATCH_INTERVAL = 0.05  # seconds between looks at the lease (a clock read): how late a loss is acted on


class LeaseLost(ConnectionError):
    """The broker stopped serving because another broker holds, or may hold, the store's lease."""


def database_dsn(config: Config) -> str | None:
    """The DSN of a database store that needs a lease, or None (the segment and memory stores need none)."""
    return config.store if is_postgres(config.store) else None


def redacted(dsn: str) -> str:
    """``dsn`` without its password, for logs."""
    return re.sub(r"password=\S+", "password=***", re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", dsn))


class Leadership:
    """The term this broker serves: under ``lease``, or (``lease`` None) under none, for stores without one."""

    def __init__(self, config: Config, lease: Lease | None = None) -> None:
        self.config = config  # with the management port the standby listener bound, so it stays the same
        self.lease = lease
        self._watcher: asyncio.Task[None] | None = None

    def fence(self, store: Store) -> None:
        """Give the store our epoch: its write transactions fail once another broker took over."""
        if self.lease is not None:
            store.set_fencing_epoch(self.lease.epoch)  # type: ignore[attr-defined]

    def watch(self, stop: asyncio.Event) -> None:
        """Set ``stop`` as soon as the lease is lost (the renewal thread says so, or it went stale)."""
        if self.lease is not None:
            self._watcher = asyncio.get_running_loop().create_task(self._watch(self.lease, stop))

    async def _watch(self, lease: Lease, stop: asyncio.Event) -> None:
        while lease.lost is None:
            await asyncio.sleep(WATCH_INTERVAL)
        log.error("lost the lease on %s: %s; closing every connection and exiting", redacted(lease.dsn), lease.lost)
        stop.set()

    def close(self, store: Store) -> None:
        """Close the store, release the lease; ``LeaseLost`` if it was lost (the store's last sync may fail then)."""
        lease = self.lease
        if self._watcher is not None:
            self._watcher.cancel()
        try:
            store.close()
        except Exception as error:
            if lease is None or lease.lost is None:
                raise
            log.warning("closing the store after losing the lease: %s", error)
        finally:
            if lease is not None:
                lease.release()
        if lease is not None and lease.lost is not None:
            raise LeaseLost(f"lost the lease on {redacted(lease.dsn)}: {lease.lost}")


async def lead(config: Config, stop: asyncio.Event) -> Leadership | None:
    """Wait on standby for the lease of ``config``'s database store; None if ``stop`` came first."""
    dsn = database_dsn(config)
    if dsn is None:
        return Leadership(config)
    from storage.postgres_lease import Lease  # psycopg, the postgresql extra: only for such a store

    lease = Lease(dsn, ttl=config.lease_ttl)
    site = await _standby_site(config, f"standby: waiting for the lease on {redacted(dsn)}")
    if site is not None:
        config = dataclasses.replace(config, management_port=site[1])
    # after the standby endpoint is up, so that whoever reads this line can ask it at once
    print(f"amqp-server standby: waiting for the lease on {redacted(dsn)}", file=sys.stderr, flush=True)
    signals = _stop_on_signals(stop)
    try:
        if not await _acquire(lease, stop):
            return None
    finally:
        for signum in signals:
            asyncio.get_running_loop().remove_signal_handler(signum)
        if site is not None:
            await site[0].cleanup()
    lease.start()
    log.info("acquired the lease on %s (epoch %s, holder %s): recovering", redacted(dsn), lease.epoch, lease.holder)
    return Leadership(config, lease)


async def _acquire(lease: Lease, stop: asyncio.Event) -> bool:
    """Acquire in a worker thread while the loop serves the standby endpoint; False if stopped first."""
    from storage.postgres_lease import Cancelled

    cancel = threading.Event()
    acquiring = asyncio.ensure_future(asyncio.to_thread(lease.acquire, cancel))
    stopping = asyncio.ensure_future(stop.wait())
    await asyncio.wait([acquiring, stopping], return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    cancel.set()
    try:
        await acquiring
    except Cancelled:
        return False
    if stop.is_set():  # acquired as we were asked to stop: hand it straight back
        lease.release()
        return False
    return True


def _stop_on_signals(stop: asyncio.Event) -> tuple[signal.Signals, ...]:
    """SIGTERM/SIGINT end the wait (in the main thread only: elsewhere the embedder sets ``stop``)."""
    if threading.current_thread() is not threading.main_thread():
        return ()
    signals = (signal.SIGTERM, signal.SIGINT)
    for signum in signals:
        asyncio.get_running_loop().add_signal_handler(signum, stop.set)
    return signals


async def _standby_site(config: Config, reason: str) -> tuple[web.AppRunner, int] | None:
    """The management port while on standby: 503 with ``reason`` for every request, health checks included.

    Health checks answer as RabbitMQ's failing ones (``{"status":"failed","reason":…}``), the rest of
    the API with its error shape; no credentials are asked, as the answer tells nothing but the state.
    """
    if config.management_port < 0:
        return None

    async def health(request: web.Request) -> web.Response:
        return _unavailable({"status": "failed", "reason": reason})

    async def other(request: web.Request) -> web.Response:
        return _unavailable({"error": "Service Unavailable", "reason": reason})

    app = web.Application()
    app.router.add_get("/api/health/checks/{check:.*}", health)
    app.router.add_get("/api/healthchecks/node{node:.*}", health)
    app.router.add_get("/api/aliveness-test/{vhost:.*}", health)
    app.router.add_route("*", "/{path:.*}", other)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    try:
        await web.TCPSite(runner, config.host, config.management_port, reuse_address=True).start()
    except BaseException:
        await runner.cleanup()
        raise
    port = int(runner.addresses[0][1])
    print(f"amqp-server management listening on {config.host}:{port} (standby)", file=sys.stderr, flush=True)
    return runner, port


def _unavailable(body: dict[str, Any]) -> web.Response:
    return web.json_response(body, status=503, headers={"Server": "amqp-server"})
