"""``storage.factory.open_store``: the store the configuration selects, opened at one point."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from amqp_server.ops.config import Config
from storage.api import ExchangeRecord
from storage.factory import open_store
from storage.fileio import DataDirLocked
from storage.memory import MemoryStore
from storage.segment_store import SegmentStore


def test_a_config_opens_the_segment_store_on_its_data_dir(tmp_path: Path) -> None:
    store = open_store(Config(data_dir=tmp_path / "data"))
    try:
        assert isinstance(store, SegmentStore)
        store.put_exchange(ExchangeRecord("/", "logs", "fanout"))
        store.sync()
    finally:
        store.close()
    reopened = open_store(tmp_path / "data")  # a bare data dir: the default store
    try:
        assert [record.name for record in reopened.recover().exchanges] == ["logs"]
    finally:
        reopened.close()


def test_the_data_dir_stays_locked_while_its_store_is_open(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    try:
        with pytest.raises(DataDirLocked):
            open_store(tmp_path)
    finally:
        store.close()


@dataclass(frozen=True)
class WithStore:
    """A configuration with the coming ``store`` setting."""

    data_dir: Path
    store: str


def test_a_store_setting_selects_the_store(tmp_path: Path) -> None:
    assert isinstance(open_store(WithStore(tmp_path, "memory")), MemoryStore)
    with pytest.raises(ValueError, match="unknown store .postgresq.: one of segment, memory or a postgresql:// URL"):
        open_store(WithStore(tmp_path, "postgresq"))
