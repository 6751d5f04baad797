"""Group commit: one ``Store.sync`` for every write made since the last one, then the confirms.

The sync runs in a worker thread so the event loop keeps reading while the
disk works; everything that arrives meanwhile is covered by the next sync.
At most one sync is in flight, and none runs when nothing was written.

A failed sync (ENOSPC, EIO) nacks what it covered; the store keeps the data and
writes it with a later sync.  That later sync is the next write's, or, if none
comes, a retry ``retry_after`` seconds later: space freed by anyone (a purge,
an operator deleting files) lets the store catch up without waiting for traffic.
"""

from __future__ import annotations

import asyncio
import logging

from storage.api import Store

from ..core.confirms import SyncBarrier

log = logging.getLogger("amqp_server.persister")

RETRY_AFTER = 1.0  # seconds from a failed sync to the next attempt when nothing else asks for one


class Persister:
    def __init__(self, store: Store, barrier: SyncBarrier, retry_after: float = RETRY_AFTER) -> None:
        self._store = store
        self._barrier = barrier
        self._retry_after = retry_after
        self._loop = asyncio.get_running_loop()
        self._task: asyncio.Task[None] | None = None
        self._retry: asyncio.TimerHandle | None = None
        self._failing = False  # the last sync failed: log repeats quietly until one succeeds
        self._stopped = False
        barrier.on_request = self._kick
        if barrier.requested:  # written before we were attached (recovered messages expiring at start)
            self._kick()

    def _kick(self) -> None:
        if self._task is None and not self._stopped:
            # call_soon: let the rest of this loop tick's reads join the same sync
            self._task = self._loop.create_task(self._run())

    async def _run(self) -> None:
        try:
            await asyncio.sleep(0)
            while self._barrier.requested:
                snapshot = self._barrier.begin()
                ok = await self._sync()
                self._barrier.end(snapshot, ok)
        finally:
            self._task = None

    async def _sync(self) -> bool:
        try:
            await self._loop.run_in_executor(None, self._store.sync)
        except OSError as error:
            (log.debug if self._failing else log.error)(
                "store sync failed (%s); nacking the publishes it covered, retrying in %.0f s", error, self._retry_after
            )
            self._failing = True
            if self._retry is None and not self._stopped:
                self._retry = self._loop.call_later(self._retry_after, self._retry_now)
            return False
        if self._failing:
            log.info("store sync works again")
            self._failing = False
        return True

    def _retry_now(self) -> None:
        self._retry = None
        self._barrier.request()

    async def drain(self) -> None:
        """Wait for the syncs in flight, then sync no more (at shutdown: the store's close does the last one)."""
        while self._task is not None:
            await asyncio.shield(self._task)
        self._stopped = True
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
