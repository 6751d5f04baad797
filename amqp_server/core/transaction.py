"""``tx.*``: a channel in transactional mode holds its publishes and acknowledgements until commit.

RabbitMQ's semantics: publishes are routed at commit (so ``basic.return`` for
mandatory messages comes then); acks/nacks/rejects are checked when they
arrive (an unknown tag is still 406 at once) but applied at commit; rollback
discards the publishes and puts the acknowledged deliveries back as unacked.
Durability is on commit (RabbitMQ's promise): commit-ok waits for the store's
sync when the commit wrote to the store, and later tx replies queue behind it.

The tx.* handlers live here, as exchange.* and queue.* ones live in
``declarations``: they see the channel as a ``TxChannel``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from pamqp import commands

from ..errors import ChannelError, confirm_to_tx, not_transactional, transaction_write_failed
from ..wire.methods import method_frame
from .delivery import REQUEUE, Unacked, UnackedTable

if TYPE_CHECKING:
    from .confirms import Confirms
    from .exchanges import Exchange
    from .interfaces import ConnectionPort
    from .message import Message


@dataclass
class Transaction:
    publishes: list[tuple[Exchange, Message, bool]] = field(default_factory=list)  # exchange, message, mandatory
    settlements: list[tuple[list[Unacked], str]] = field(default_factory=list)  # (deliveries, outcome)
    replies_waiting: int = 0  # commit-ok / rollback-ok frames held until a store sync

    def clear(self) -> None:
        """Start the next transaction (replies still waiting stay counted)."""
        self.publishes.clear()
        self.settlements.clear()


class TxChannel(Protocol):
    """A channel as the tx.* handlers see it."""

    connection: ConnectionPort
    channel_id: int
    confirms: Confirms | None  # tx.select is refused in confirm mode
    transaction: Transaction | None  # set by tx.select
    unacked: UnackedTable

    def route(self, exchange: Exchange, message: Message, mandatory: bool) -> tuple[bool, bool]: ...

    def settle(self, taken: list[Unacked], outcome: str) -> None: ...

    def send_after_sync(self, frame: bytes, ok: bool, error: Callable[[], ChannelError] = ...) -> None: ...


def _on_select(channel: TxChannel, method: commands.Tx.Select) -> None:
    if channel.confirms is not None:
        raise confirm_to_tx()
    if channel.transaction is None:
        channel.transaction = Transaction()
    channel.connection.writer.send_method(channel.channel_id, commands.Tx.SelectOk())


def _on_commit(channel: TxChannel, method: commands.Tx.Commit) -> None:
    """Route the publishes and apply the settlements; commit-ok once what they wrote is on disk.

    RabbitMQ promises durability on commit: like a publisher confirm, commit-ok for
    persistent messages on durable queues (any message on a quorum queue) waits for the
    store's next sync, and so does one that acked or rejected stored messages (their
    removal must not be undone by a crash).  A commit that wrote nothing replies at once.
    """
    transaction = _require_transaction(channel)
    durable = False
    for exchange, message, mandatory in transaction.publishes:
        stored, _ = channel.route(exchange, message, mandatory)
        durable |= stored
    for taken, outcome in transaction.settlements:
        durable |= outcome is not REQUEUE and any(item.entry.stored and not item.queue.deleted for item in taken)
        channel.settle(taken, outcome)
    transaction.clear()
    _reply(channel, transaction, commands.Tx.CommitOk(), after_sync=durable)


def _on_rollback(channel: TxChannel, method: commands.Tx.Rollback) -> None:
    transaction = _require_transaction(channel)
    unacked = channel.unacked
    for taken, _ in transaction.settlements:
        for item in taken:
            unacked[item.tag] = item
    channel.unacked = UnackedTable(sorted(unacked.items()))
    transaction.clear()
    _reply(channel, transaction, commands.Tx.RollbackOk(), after_sync=False)


def _reply(
    channel: TxChannel,
    transaction: Transaction,
    reply: commands.Tx.CommitOk | commands.Tx.RollbackOk,
    after_sync: bool,
) -> None:
    """Send ``reply`` now, or after the next store sync; behind a reply still waiting, it waits too (order)."""
    if not after_sync and not transaction.replies_waiting:
        channel.connection.writer.send_method(channel.channel_id, reply)
        return
    transaction.replies_waiting += 1
    frame = method_frame(channel.channel_id, reply)

    def synced(ok: bool) -> None:
        transaction.replies_waiting -= 1
        # a reply that only waited for its turn wrote nothing that failed
        channel.send_after_sync(frame, ok or not after_sync, transaction_write_failed)

    channel.connection.vhost.sync_barrier.after_sync(synced)


def _require_transaction(channel: TxChannel) -> Transaction:
    if channel.transaction is None:
        raise not_transactional()
    return channel.transaction


HANDLERS: dict[int, Callable[[TxChannel, Any], None]] = {
    commands.Tx.Select.index: _on_select,
    commands.Tx.Commit.index: _on_commit,
    commands.Tx.Rollback.index: _on_rollback,
}
