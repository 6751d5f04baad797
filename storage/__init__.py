"""Where durable state lives: the store interface (``api``) and its implementations.

The broker core talks to a store only through ``storage.api.Store``. The server runs on the
durable ``SegmentStore`` (``segment_store``); the in-memory store (``memory``) is the executable
contract both are tested against, and the default of a ``Broker`` built without a store (the
sans-IO tests).
"""

from .api import BindingRecord, ExchangeRecord, MessageRecord, QueueRecord, Recovered, Store, StoredMessage, binding_key
from .fileio import DataDirLocked
from .memory import MemoryStore
from .segment_store import SegmentStore

__all__ = [
    "BindingRecord",
    "DataDirLocked",
    "SegmentStore",
    "ExchangeRecord",
    "MemoryStore",
    "MessageRecord",
    "QueueRecord",
    "Recovered",
    "Store",
    "StoredMessage",
    "binding_key",
]
