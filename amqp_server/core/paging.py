"""Reading paged-out messages back from the store, and what a queue does while the store cannot give them.

A persistent message on a durable queue beyond ``queue.PAGE_OUT_AFTER`` ready ones lives
only in the store until it reaches the head.  Reading it back can fail for a while: a disk
read error, PostgreSQL briefly unreachable (``StoreUnavailable``): both ``OSError``.  The
message was confirmed, so it must not be lost: the entry stays at the head, the queue hands
out nothing more (``basic.get`` answers get-empty, as for a queue with nothing ready now),
and a timer tries again ``RETRY_AFTER`` seconds later, as the persister retries a failed
sync.  One error is logged per outage, one line when reads work again; other queues carry on.
A record that can never be read (damaged: ``RecordError``, or missing) is dropped with an
error, as before: waiting for it would stop the queue for ever.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Protocol

from .message import Entry, Message

if TYPE_CHECKING:
    from storage.api import Store

    from .flow import MemoryFlow
    from .scheduler import Scheduler, Timer

log = logging.getLogger("amqp_server.queue")

RETRY_AFTER = 1.0  # seconds from a failed read of a paged-out message to the next attempt


class PagingHost(Protocol):
    """The queue's vhost as the pager sees it."""

    @property
    def name(self) -> str: ...
    @property
    def store(self) -> Store: ...
    @property
    def scheduler(self) -> Scheduler: ...
    @property
    def flow(self) -> MemoryFlow: ...


class PagedQueue(Protocol):
    """The queue as its pager sees it (a protocol: ``queue`` imports this module)."""

    name: str
    deleted: bool

    @property
    def vhost(self) -> PagingHost: ...

    def resume(self, now: float) -> None:
        """Try the head again: the store may be readable now."""


class Pager:
    """One queue's reads of paged-out messages, and its pause while the store cannot serve them."""

    __slots__ = ("_queue", "_retry", "_failing")

    def __init__(self, queue: PagedQueue) -> None:
        self._queue = queue
        self._retry: Timer | None = None  # set while the queue waits to try the store again
        self._failing = False  # the last read failed: further failures of this outage are not logged

    @property
    def stalled(self) -> bool:
        """Whether the queue waits for the store: its head is paged out and could not be read."""
        return self._retry is not None

    def page_in(self, entry: Entry) -> bool:
        """Read ``entry``'s message back in place; False if it stays on disk: then either ``stalled`` (try again
        later, the entry must stay) or the record is unreadable for good (logged; the caller drops it)."""
        if self._retry is not None:
            return False
        queue = self._queue
        vhost = queue.vhost
        try:
            message = Message.from_record(vhost.store.read_message(vhost.name, queue.name, entry.message_id))
        except OSError as error:
            if not self._failing:
                log.error(
                    "queue '%s' in vhost '%s': message %d could not be read back from the store (%s); "
                    "deliveries from this queue wait, retrying every %.0f s",
                    queue.name,
                    vhost.name,
                    entry.message_id,
                    error,
                    RETRY_AFTER,
                )
            self._failing = True
            self._retry = vhost.scheduler.call_at(vhost.scheduler.clock() + RETRY_AFTER, self._on_retry)
            return False
        except Exception:
            log.exception(
                "queue '%s' in vhost '%s': message %d cannot be read back from the store; dropping it",
                queue.name,
                vhost.name,
                entry.message_id,
            )
            return False
        if self._failing:
            self._failing = False
            log.info("queue '%s' in vhost '%s': the store can be read again; deliveries resume", queue.name, vhost.name)
        entry.message = message
        entry.paged_out = False
        vhost.flow.add(entry.size)  # now in memory: taken off again when the queue lets it go
        return True

    def _on_retry(self, now: float) -> None:
        self._retry = None
        if not self._queue.deleted:
            self._queue.resume(now)

    def cancel(self) -> None:
        """The queue is gone: no more retries."""
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
