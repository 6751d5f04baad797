"""The broker's configuration: one frozen ``Config`` built from flags and environment variables."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


def default_data_dir() -> Path:
    """``$XDG_DATA_HOME/amqp-server`` (``~/.local/share/amqp-server``): the same place whatever the cwd."""
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "amqp-server"


@dataclass(frozen=True)
class Config:
    host: str = "127.0.0.1"
    port: int = 5672
    data_dir: Path = default_data_dir()
    log_level: str = "info"
    heartbeat: int = 60
    frame_max: int = 131072
    channel_max: int = 2047
