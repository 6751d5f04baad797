"""Where durable state lives: the store interface (``api``) and its implementations.

The broker core talks to a store only through ``storage.api.Store``; the
in-memory store (``memory``) is the executable contract and the default until
the durable store lands.
"""

from .api import BindingRecord, ExchangeRecord, MessageRecord, QueueRecord, Recovered, Store, StoredMessage, binding_key
from .memory import MemoryStore
from .fileio import DataDirLocked
from .segment_store import SegmentStore

__all__ = ["BindingRecord", "DataDirLocked", "SegmentStore", "ExchangeRecord", "MemoryStore", "MessageRecord", "QueueRecord", "Recovered", "Store", "StoredMessage", "binding_key"]
