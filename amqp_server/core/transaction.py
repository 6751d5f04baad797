"""``tx.*``: a channel in transactional mode holds its publishes and acknowledgements until commit.

RabbitMQ's semantics: publishes are routed at commit (so ``basic.return`` for
mandatory messages comes then); acks/nacks/rejects are checked when they
arrive (an unknown tag is still 406 at once) but applied at commit; rollback
discards the publishes and puts the acknowledged deliveries back as unacked.
Durability is on commit (RabbitMQ's promise): commit-ok waits for the store's
sync when the commit wrote to the store, and later tx replies queue behind it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .exchanges import Exchange
    from .message import Message


@dataclass
class Transaction:
    publishes: list[tuple[Exchange, Message, bool]] = field(default_factory=list)  # exchange, message, mandatory
    settlements: list[tuple[list[Any], str]] = field(default_factory=list)  # (Unacked deliveries, outcome)
    replies_waiting: int = 0  # commit-ok / rollback-ok frames held until a store sync

    def clear(self) -> None:
        """Start the next transaction (replies still waiting stay counted)."""
        self.publishes.clear()
        self.settlements.clear()
