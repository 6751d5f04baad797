"""Group commit: one ``Store.sync`` for every write made since the last one, then the confirms.

The sync runs in a worker thread so the event loop keeps reading while the
disk works; everything that arrives meanwhile is covered by the next sync.
At most one sync is in flight, and none runs when nothing was written.
"""

from __future__ import annotations

import asyncio
import logging

from storage.api import Store

from ..core.confirms import SyncBarrier

log = logging.getLogger("amqp_server.persister")


class Persister:
    def __init__(self, store: Store, barrier: SyncBarrier) -> None:
        self._store = store
        self._barrier = barrier
        self._loop = asyncio.get_running_loop()
        self._task: asyncio.Task[None] | None = None
        barrier.on_request = self._kick
        if barrier.requested:  # written before we were attached (recovered messages expiring at start)
            self._kick()

    def _kick(self) -> None:
        if self._task is None:
            # call_soon: let the rest of this loop tick's reads join the same sync
            self._task = self._loop.create_task(self._run())

    async def _run(self) -> None:
        try:
            await asyncio.sleep(0)
            while self._barrier.requested:
                snapshot = self._barrier.begin()
                try:
                    await self._loop.run_in_executor(None, self._store.sync)
                    ok = True
                except OSError:
                    log.exception("store sync failed; nacking the publishes it covered")
                    ok = False
                self._barrier.end(snapshot, ok)
        finally:
            self._task = None

    async def drain(self) -> None:
        """Wait for the sync in flight (used at shutdown, before closing the store)."""
        while self._task is not None:
            await asyncio.shield(self._task)
