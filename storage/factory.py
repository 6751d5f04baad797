"""``open_store``: the store the configuration selects — the one place that names a store class.

The server, the admin CLI and definitions open their store here.  The ``store`` setting (``--store``,
``AMQP_SERVER_STORE``, the TOML key ``store``) is ``segment`` (the default: ``SegmentStore`` on the
data dir, the embedded durable store), ``memory`` (``MemoryStore``, nothing kept across a restart: for
embedding and tests) or a ``postgresql://`` / ``postgres://`` URL (``PostgresStore`` on that database;
psycopg comes with the ``postgresql`` extra, so it is imported only when such a URL is given).
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
POSTGRES_SCHEMES = ("postgresql://", "postgres://")


class StoreSettings(Protocol):
    """What the factory reads from the broker's configuration."""

    @property
    def data_dir(self) -> Path: ...


def is_postgres(kind: str) -> bool:
    """Whether a ``store`` setting names a PostgreSQL database (which also keeps users, vhosts, permissions)."""
    return kind.startswith(POSTGRES_SCHEMES)


def store_problem(kind: str) -> str | None:
    """What is wrong with a ``store`` setting, if anything (for the configuration's checks)."""
    if kind in OPENERS or is_postgres(kind):
        return None
    return f"must be one of {', '.join(OPENERS)} or a postgresql:// URL, got {kind!r}"


def open_store(settings: StoreSettings | str | os.PathLike[str]) -> Store:
    """Open the store ``settings`` (the broker's ``Config``, or just a data dir) selects, on its data dir."""
    if isinstance(settings, (str, os.PathLike)):
        data_dir, kind = Path(settings), DEFAULT_STORE
    else:
        data_dir, kind = Path(settings.data_dir), getattr(settings, "store", DEFAULT_STORE)
    if is_postgres(kind):
        from .postgres_store import PostgresStore  # needs the optional psycopg

        return PostgresStore(kind)
    opener = OPENERS.get(kind)
    if opener is None:
        raise ValueError(f"unknown store {kind!r}: one of {', '.join(OPENERS)} or a postgresql:// URL")
    return opener(data_dir)
