"""Wire the management HTTP API (``amqp_server.http``) to a running broker: its operations, data dir,
listeners and definitions, then bind it on ``config.host:config.management_port``."""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from ..core.broker import Broker
from ..core.operations import BrokerOperations
from ..http import app as http_app
from ..ops import access as ops_access
from ..ops import definitions
from ..ops.config import Config
from ..ops.errors import DefinitionsError


@dataclass
class ManagementSite:
    runner: web.AppRunner
    port: int

    async def stop(self) -> None:
        await self.runner.cleanup()


async def start(config: Config, broker: Broker, amqp_listeners: list[tuple[str, int, str]]) -> ManagementSite:
    """Serve the API; ``amqp_listeners`` are the bound (host, port, protocol) the overview lists."""
    node = f"rabbit@{socket.gethostname().split('.')[0] or 'localhost'}"
    context = http_app.Context(
        operations=BrokerOperations(broker, node),
        data_dir=config.data_dir,
        access_home=ops_access.access_home(config.data_dir, broker.store),
        loopback_users=config.loopback_users,
        export_definitions=lambda vhost: _export(broker, vhost),
        import_definitions=lambda data, vhost: _import(config, broker, data, vhost),
    )
    try:
        runner, port = await http_app.start(http_app.create_app(context), config.host, config.management_port)
    except OSError as error:  # the port is taken: say which listener could not start
        raise OSError(
            error.errno, f"management API on {config.host}:{config.management_port}: {error.strerror}"
        ) from None
    context.listeners = [
        _listener(node, protocol, host, bound)
        for host, bound, protocol in [*amqp_listeners, (config.host, port, "http")]
    ]
    return ManagementSite(runner, port)


def _listener(node: str, protocol: str, host: str, port: int) -> dict[str, Any]:
    return {"node": node, "protocol": protocol, "ip_address": host, "port": port, "socket_opts": {}}


VHOST_SECTIONS = ("queues", "exchanges", "bindings", "policies", "parameters")


def _export(broker: Broker, vhost: str | None) -> dict[str, Any]:
    """The CLI's export; for one vhost, its objects without their ``vhost`` field (RabbitMQ's per-vhost form),
    except policies and parameters (operator policies), which keep theirs there too."""
    exported = definitions.export_from(broker)
    if vhost is None:
        return exported
    answer: dict[str, Any] = {key: exported[key] for key in ("rabbit_version", "rabbitmq_version")}
    for section in VHOST_SECTIONS:
        answer[section] = [
            {key: value for key, value in item.items() if key != "vhost" or section in ("policies", "parameters")}
            for item in exported[section]
            if item.get("vhost") == vhost
        ]
    return answer


def _import(config: Config, broker: Broker, data: Any, vhost: str | None) -> None:
    """Import as the CLI does, into the running broker; users, vhosts and permissions are saved to access.json."""
    if vhost is not None:
        if not isinstance(data, dict):
            raise DefinitionsError("definitions must be a JSON object")
        data = {
            section: [{**item, "vhost": vhost} if isinstance(item, dict) else item for item in data.get(section, [])]
            for section in VHOST_SECTIONS
            if section in data
        }
    definitions.import_into(broker, data)
    definitions.save_broker_access(ops_access.access_home(config.data_dir, broker.store), broker)
