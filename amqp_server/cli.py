"""Command line: ``amqp-server`` / ``python -m amqp_server``.

Each flag has an environment variable (flag wins): ``AMQP_SERVER_HOST``,
``AMQP_SERVER_PORT``, ``AMQP_SERVER_DATA_DIR``, ``AMQP_SERVER_LOG_LEVEL``.
The flag names are a stable interface: outside tooling starts the broker with them.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path

from . import __version__
from .config import DEFAULT_MEMORY_HIGH_WATERMARK, Config, default_data_dir, memory_limit

LOG_LEVELS = ("debug", "info", "warning", "error")


def _env(name: str, default: str) -> str:
    return os.environ.get(f"AMQP_SERVER_{name}", default)


def parse_args(argv: list[str] | None = None) -> Config:
    parser = argparse.ArgumentParser(prog="amqp-server", description="A RabbitMQ-compatible AMQP 0-9-1 broker.")
    parser.add_argument("--host", default=_env("HOST", "127.0.0.1"),
                        help="address to listen on (default 127.0.0.1; 0.0.0.0 for all interfaces) [AMQP_SERVER_HOST]")
    parser.add_argument("--port", type=int, default=int(_env("PORT", "5672")),
                        help="TCP port (default 5672; 0 picks a free port and logs it) [AMQP_SERVER_PORT]")
    parser.add_argument("--data-dir", type=Path, default=Path(_env("DATA_DIR", str(default_data_dir()))),
                        help="where durable data lives (default ~/.local/share/amqp-server) [AMQP_SERVER_DATA_DIR]")
    parser.add_argument("--log-level", default=_env("LOG_LEVEL", "info").lower(), choices=LOG_LEVELS,
                        help="log verbosity (default info) [AMQP_SERVER_LOG_LEVEL]")
    parser.add_argument("--memory-high-watermark", type=float,
                        default=float(_env("MEMORY_HIGH_WATERMARK", str(DEFAULT_MEMORY_HIGH_WATERMARK))),
                        help="block publishers when queued messages use more than this: a fraction of physical "
                             "memory (default 0.4, as RabbitMQ) or a number of bytes [AMQP_SERVER_MEMORY_HIGH_WATERMARK]")
    parser.add_argument("--version", action="version", version=f"amqp-server {__version__}")
    args = parser.parse_args(argv)
    if not 0 <= args.port <= 65535:
        parser.error(f"--port must be between 0 and 65535, not {args.port}")
    if args.memory_high_watermark <= 0:
        parser.error("--memory-high-watermark must be positive")
    return Config(host=args.host, port=args.port, data_dir=args.data_dir, log_level=args.log_level,
                  memory_high_watermark=memory_limit(args.memory_high_watermark))


def main(argv: list[str] | None = None) -> int:
    config = parse_args(argv)
    logging.basicConfig(level=config.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from storage.segment_store import DataDirLocked

    from .server.server import serve

    try:
        asyncio.run(serve(config))
    except KeyboardInterrupt:
        pass
    except (DataDirLocked, OSError) as error:  # data dir in use, address already in use …
        print(f"amqp-server: {error}", file=sys.stderr)
        return 1
    return 0
