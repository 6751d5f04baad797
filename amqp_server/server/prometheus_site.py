"""Wire the Prometheus endpoints (``amqp_server.http.prometheus``) to a running broker and bind them on
``config.host:config.prometheus_port``: a second aiohttp site in the broker's loop, beside the management one."""

from __future__ import annotations

import socket
import time

from ..core.broker import Broker
from ..core.operations import BrokerOperations
from ..http import app as http_app
from ..http import prometheus
from ..ops.config import Config
from .management_site import ManagementSite


async def start(config: Config, broker: Broker) -> ManagementSite:
    """Serve /metrics, /metrics/per-object and /metrics/detailed; the returned site knows its bound port."""
    node = f"rabbit@{socket.gethostname().split('.')[0] or 'localhost'}"  # as the management API names the node
    facts = prometheus.NodeFacts(
        node=node,
        cluster="amqp-server",  # the management API's default cluster name
        cluster_id=prometheus.cluster_id(node, str(config.data_dir)),
        started=time.time(),
    )
    app = prometheus.create_app(BrokerOperations(broker, node), facts)
    runner, port = await http_app.start(app, config.host, config.prometheus_port)
    return ManagementSite(runner, port)
