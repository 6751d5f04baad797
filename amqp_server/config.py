"""The broker's configuration: one frozen ``Config`` built from flags and environment variables."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
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
    memory_high_watermark: int = field(default_factory=lambda: memory_limit(DEFAULT_MEMORY_HIGH_WATERMARK))
    # limits (RabbitMQ's defaults)
    max_connections: int = 0  # 0: unlimited
    max_message_size: int = 128 * 1024 * 1024
    handshake_timeout: float = 10.0
    # TLS (amqps): a second listener when tls_cert and tls_key are set
    tls_port: int = 5671
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_ca: Path | None = None
    tls_verify_peer: bool = False  # require and verify a client certificate signed by tls_ca
    # security
    loopback_users: tuple[str, ...] = ("guest",)  # users that may only connect from loopback
    # logging
    log_format: str = "text"  # or "json"
    # definitions (RabbitMQ's JSON format) to import at start
    load_definitions: Path | None = None


DEFAULT_MEMORY_HIGH_WATERMARK = 0.4  # of physical memory, as RabbitMQ's vm_memory_high_watermark


def memory_limit(value: float) -> int:
    """A fraction (<= 1) of physical memory, or an absolute number of bytes."""
    if value <= 1:
        return int(value * os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    return int(value)
