"""Publisher confirms: which publishes may be acknowledged, and when.

A publish is confirmable once it is routed — unless it was written to the
store (a persistent message on a durable queue): then it waits for the next
``Store.sync``.  Confirms go out in order, one ``Basic.Ack(multiple=True)``
covering everything confirmable, so a transient publish that follows an
unsynced persistent one waits for that sync too.  A publish a queue refused is
nacked at once, after the acks due before it, and no multiple ack covers it
later (amqp091-go takes one that does as acking it; RabbitMQ never sends one).

``SyncBarrier`` is the broker-wide side of group commit: channels with
publishes awaiting a sync register here; the server's persister takes a
snapshot (``begin``), syncs the store once for all of them, and hands the
snapshot back (``end``) so each channel confirms what that sync covered.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

log = logging.getLogger("amqp_server.confirms")


class Confirms:
    """Per-channel confirm sequence numbers (only used after ``confirm.select``)."""

    __slots__ = ("published", "acked", "confirmable", "unsynced", "nacks")

    def __init__(self) -> None:
        self.published = 0  # last sequence number given to a publish
        self.acked = 0  # last sequence number acked or nacked to the client
        self.confirmable = 0  # everything up to here may be acked now
        self.unsynced = 0  # highest publish waiting for a store sync (0: none)
        self.nacks: list[int] = []  # publishes nacked on their own above ``acked``, ascending

    def next_sequence(self) -> int:
        self.published += 1
        return self.published

    def routed(self, sequence: int, stored: bool) -> None:
        if stored or self.unsynced > self.confirmable:
            self.unsynced = sequence
        else:
            self.confirmable = sequence

    def nacked(self, sequence: int) -> None:
        """``sequence`` was nacked on its own: settled, and a gap for the acks that follow to go around."""
        if self.acked == self.confirmable == sequence - 1 and self.unsynced <= self.confirmable:
            self.acked = self.confirmable = sequence
        else:  # earlier publishes wait for a sync: confirmable moves past this one with them
            self.nacks.append(sequence)
            self.routed(sequence, stored=False)

    def synced(self, sequence: int) -> bool:
        """A sync covered publishes up to ``sequence``; True if later ones still wait for another."""
        self.confirmable = max(self.confirmable, sequence)
        return self.unsynced > self.confirmable

    def take(self) -> list[tuple[int, bool]]:
        """``(delivery_tag, multiple)`` of each ack frame due: one for everything confirmable, or one per
        run of publishes between nacked ones."""
        confirmable = self.confirmable
        if confirmable <= self.acked:
            return []
        frames = []
        nacks = self.nacks
        while nacks and nacks[0] <= confirmable:
            before = nacks.pop(0) - 1
            if before > self.acked:
                frames.append((before, before - self.acked > 1))
            self.acked = before + 1
        if confirmable > self.acked:
            frames.append((confirmable, confirmable - self.acked > 1))
        self.acked = confirmable
        return frames

    def take_unsynced(self) -> tuple[int, bool] | None:
        """Everything not yet acked, for a nack when the store failed to sync."""
        if self.published <= self.acked:
            return None
        multiple = self.published - self.acked > 1
        self.acked = self.confirmable = self.unsynced = self.published
        self.nacks.clear()
        return self.published, multiple


class SyncWaiter(Protocol):
    """What waits in a ``SyncBarrier``: a channel in confirm mode."""

    channel_id: int

    def synced(self, sequence: int, ok: bool) -> None:
        """The sync covering publishes up to ``sequence`` finished (``ok``) or failed."""


class SyncBarrier:
    """Whether the store needs a sync, and the channels waiting for it with the sequence each needs.

    ``on_request`` (set by the I/O layer) is called when a sync becomes needed
    and none was requested yet, so the persister runs once per batch, not per write.
    """

    def __init__(self) -> None:
        self._waiting: dict[SyncWaiter, Confirms] = {}  # each waiting channel and its confirm sequence
        self._callbacks: list[Callable[[bool], None]] = []
        self.requested = False
        self.on_request: Callable[[], None] | None = None

    def request(self) -> None:
        """The store has writes that should become durable soon."""
        if not self.requested:
            self.requested = True
            if self.on_request is not None:
                self.on_request()

    def wait(self, channel: SyncWaiter, confirms: Confirms) -> None:
        """``channel`` has publishes (counted in its ``confirms``) that may be confirmed only after the next sync."""
        self._waiting[channel] = confirms
        self.request()

    def after_sync(self, callback: Callable[[bool], None]) -> None:
        """Call ``callback(ok)`` once the next sync has finished (replies to durable declarations)."""
        self._callbacks.append(callback)
        self.request()

    def begin(self) -> tuple[list[tuple[SyncWaiter, int]], list[Callable[[bool], None]]]:
        """Snapshot what the sync about to start will cover."""
        snapshot = [(channel, confirms.unsynced) for channel, confirms in self._waiting.items()], self._callbacks
        self._waiting.clear()
        self._callbacks = []
        self.requested = False
        return snapshot

    def end(self, snapshot: tuple[list[tuple[SyncWaiter, int]], list[Callable[[bool], None]]], ok: bool) -> None:
        """The sync finished: release (or, if it failed, nack) what it covered.

        An error boundary (the persister's task calls it, for every connection at once): a
        callback or channel that raises is logged with its traceback and the others still run.
        """
        confirms, callbacks = snapshot
        for callback in callbacks:
            try:
                callback(ok)
            except Exception:
                log.exception("a reply held for a store sync failed")
        for channel, sequence in confirms:
            try:
                channel.synced(sequence, ok)
            except Exception:
                log.exception(
                    "releasing the publisher confirms of channel %d after a store sync failed", channel.channel_id
                )
