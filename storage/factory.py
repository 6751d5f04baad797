"""``open_store``: the store the configuration selects — the one place that names a store class.

The server, the admin CLI and definitions import open their store here, so another store plugs in
at one point: one more entry in ``OPENERS``.  Today the kind is always ``segment`` (``SegmentStore``
on the data dir, the broker's durable store); ``memory`` (``MemoryStore``, nothing kept across a
restart) is there for embedding and tests.  A ``store`` setting on the configuration (the coming
``--store`` flag) selects the kind where ``open_store`` reads it; nothing else changes.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from .api import Store
from .memory import MemoryStore
from .segment_store import SegmentStore

DEFAULT_STORE = "segment"
OPENERS: dict[str, Callable[[Path], Store]] = {
    "segment": SegmentStore,  # raises DataDirLocked when another broker uses the data dir
    "memory": lambda data_dir: MemoryStore(),
}


class StoreSettings(Protocol):
    """What the factory reads from the broker's configuration."""

    @property
    def data_dir(self) -> Path: ...


def open_store(settings: StoreSettings | str | os.PathLike[str]) -> Store:
    """Open the store ``settings`` (the broker's ``Config``, or just a data dir) selects, on its data dir."""
    if isinstance(settings, (str, os.PathLike)):
        data_dir, kind = Path(settings), DEFAULT_STORE
    else:
        data_dir, kind = Path(settings.data_dir), getattr(settings, "store", DEFAULT_STORE)
    opener = OPENERS.get(kind)
    if opener is None:
        raise ValueError(f"unknown store {kind!r}: one of {', '.join(OPENERS)}")
    return opener(data_dir)
