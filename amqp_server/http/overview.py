"""The node-wide endpoints: overview, whoami, cluster-name, extensions, nodes, and the health checks.

Field names and idle values as RabbitMQ 3.10's management plugin answers them
(``message_stats`` and ``queue_totals`` are ``{}`` on an idle broker); the versions
say which RabbitMQ API this one follows (``rabbitmq_version``) and what it really
is (``product_name``/``product_version``).
"""

from __future__ import annotations

import asyncio
import os
import platform
import sys
import time
from typing import Any

from aiohttp import web

from .. import __version__
from .context import add, caller, context, json_body, listed, no_content, ranges, reply, vhost_of, visible_vhosts
from .errors import ApiError, bad_request, not_found
from .process_figures import fd_counts, resident_memory

RABBITMQ_API_VERSION = "3.10.8"  # the management plugin whose answers this API reproduces (probed)
CHURN_KEYS = (
    "channel_closed",
    "channel_created",
    "connection_closed",
    "connection_created",
    "queue_created",
    "queue_declared",
    "queue_deleted",
)
NODE_COUNTERS = (
    *CHURN_KEYS,
    "context_switches",
    "gc_bytes_reclaimed",
    "gc_num",
    "io_read_avg_time",
    "io_read_bytes",
    "io_read_count",
    "io_reopen_count",
    "io_seek_avg_time",
    "io_seek_count",
    "io_sync_avg_time",
    "io_sync_count",
    "io_write_avg_time",
    "io_write_bytes",
    "io_write_count",
    "mnesia_disk_tx_count",
    "mnesia_ram_tx_count",
    "msg_store_read_count",
    "msg_store_write_count",
    "queue_index_read_count",
    "queue_index_write_count",
)
GC_QUEUES = (
    "channel_closed",
    "channel_consumer_deleted",
    "connection_closed",
    "consumer_deleted",
    "exchange_deleted",
    "node_node_deleted",
    "queue_deleted",
    "vhost_deleted",
)
# RabbitMQ's default Erlang process limit (+P); monitoring divides proc_used by it (nagios' check_rabbitmq_server
# went CRITICAL on 1 of 1). No such limit here: the figure only keeps the ratio RabbitMQ's.
ERLANG_PROCESS_LIMIT = 1048576


def add_routes(router: web.UrlDispatcher) -> None:
    add(router, "GET", "/api/overview", get_overview)
    add(router, "GET", "/api/whoami", get_whoami)
    add(router, "GET", "/api/cluster-name", get_cluster_name)
    add(router, "PUT", "/api/cluster-name", put_cluster_name)
    add(router, "GET", "/api/extensions", get_extensions)
    add(router, "GET", "/api/nodes", get_nodes)
    add(router, "GET", "/api/nodes/{node}", get_node)
    add(router, "GET", "/api/aliveness-test/{vhost}", get_aliveness)
    add(router, "GET", "/api/healthchecks/node", get_healthcheck_node)
    add(router, "GET", "/api/healthchecks/node/{node}", get_healthcheck_node)
    add(router, "GET", "/api/health/checks/alarms", check_alarms)
    add(router, "GET", "/api/health/checks/local-alarms", check_alarms)
    add(router, "GET", "/api/health/checks/port-listener/{port}", check_port_listener)
    add(router, "GET", "/api/health/checks/protocol-listener/{protocol}", check_protocol_listener)
    add(router, "GET", "/api/health/checks/virtual-hosts", check_ok)
    add(router, "GET", "/api/health/checks/node-is-quorum-critical", check_single_node)
    add(router, "GET", "/api/health/checks/node-is-mirror-sync-critical", check_single_node)
    add(router, "GET", "/api/health/checks/certificate-expiration/{within}/{unit}", check_ok)
    add(router, "GET", "/api/auth", get_auth)
    add(router, "GET", "/api/feature-flags", get_empty_list)
    add(router, "GET", "/api/vhost-limits", get_empty_list)
    add(router, "GET", "/api/vhost-limits/{vhost}", get_empty_list)
    add(router, "GET", "/api/user-limits", get_empty_list)
    add(router, "GET", "/api/user-limits/{user}", get_empty_list)
    add(router, "GET", "/api/parameters", get_empty_list)
    add(router, "GET", "/api/parameters/{component}", get_empty_list)
    add(router, "GET", "/api/parameters/{component}/{vhost}", get_empty_list)
    add(router, "GET", "/api/global-parameters", get_global_parameters)


def details() -> dict[str, Any]:
    """The ``*_details`` of a count: its rate (0.0 until message_stats sampling lands)."""
    return {"rate": 0.0}


async def get_overview(request: web.Request) -> web.Response:
    ctx = context(request)
    operations = ctx.operations
    who = caller(request)
    vhosts = visible_vhosts(request)
    totals = operations.object_totals() if who.is_monitoring else _totals_of(request, vhosts)
    # message_stats, churn_rates, queue_totals: sampled statistics, over the vhosts the caller may see
    stats = operations.overview_stats(None if who.is_monitoring else vhosts, ranges(request))
    answer: dict[str, Any] = {
        "management_version": RABBITMQ_API_VERSION,
        "rates_mode": "basic",
        "sample_retention_policies": {"global": [600, 3600, 28800, 86400], "basic": [600, 3600], "detailed": [600]},
        "exchange_types": operations.exchange_types(),
        "product_version": __version__,
        "product_name": "amqp-server",
        "rabbitmq_version": RABBITMQ_API_VERSION,
        "cluster_name": ctx.cluster_name,
        "erlang_version": platform.python_version(),
        "erlang_full_version": f"Python {sys.version}",
        "release_series_support_status": "supported",
        "disable_stats": False,
        "enable_queue_totals": False,
        "message_stats": stats["message_stats"],
        "churn_rates": stats["churn_rates"],
        "queue_totals": stats["queue_totals"],
        "object_totals": totals,
        "statistics_db_event_queue": 0,
    }
    if who.is_monitoring:  # as RabbitMQ: a management-only user is not told about the node and its listeners
        answer["node"] = operations.node
        answer["listeners"] = ctx.listeners
        answer["contexts"] = []
    return reply(answer)


def _totals_of(request: web.Request, vhosts: list[str]) -> dict[str, int]:
    """object_totals over the caller's vhosts (its own connections and channels): a management-only user."""
    operations = context(request).operations
    name = caller(request).name
    own = [c for c in operations.connections() if c["user"] == name]
    return {  # no consumers count for such a user, as RabbitMQ
        "channels": sum(c["channels"] for c in own),
        "connections": len(own),
        "exchanges": sum(len(operations.exchanges(v)) for v in vhosts),
        "queues": sum(operations.queue_count(v) for v in vhosts),
    }


async def get_whoami(request: web.Request) -> web.Response:
    who = caller(request)
    user = context(request).operations.access.users.get(who.name)
    return reply({"name": who.name, "tags": list(user.tags) if user is not None else sorted(who.tags)})


async def get_cluster_name(request: web.Request) -> web.Response:
    return reply({"name": context(request).cluster_name})


async def put_cluster_name(request: web.Request) -> web.Response:
    caller(request).require_administrator()
    body = await json_body(request)
    name = body.get("name")
    if not isinstance(name, str) or not name:
        raise bad_request("[{key_missing,name}]")
    context(request).cluster_name = name  # not persisted: the AMQP server properties keep "amqp-server"
    return no_content()


async def get_extensions(request: web.Request) -> web.Response:
    return reply([])  # no web UI plugins (RabbitMQ lists its dispatcher.js)


def _node(request: web.Request) -> dict[str, Any]:
    ctx = context(request)
    operations = ctx.operations
    figures = operations.resources()
    fd_used, fd_total = fd_counts()
    sockets = operations.object_totals()["connections"] + len(ctx.listeners)
    node: dict[str, Any] = {
        "name": operations.node,
        "type": "disc",
        "running": True,
        "being_drained": False,
        "os_pid": str(os.getpid()),
        "mem_used": resident_memory(),
        "mem_limit": figures["mem_limit"],
        "mem_alarm": figures["mem_alarm"],
        "mem_calculation_strategy": "rss",
        "disk_free": figures["disk_free"],
        "disk_free_limit": figures["disk_free_limit"],
        "disk_free_alarm": figures["disk_free_alarm"],
        "fd_used": fd_used,
        "fd_total": fd_total,
        "sockets_used": sockets,
        "sockets_total": fd_total,
        "proc_used": len(asyncio.all_tasks()),  # RabbitMQ's Erlang processes: here the loop's tasks
        "proc_total": ERLANG_PROCESS_LIMIT,
        "run_queue": 0,
        "processors": os.cpu_count() or 1,
        "uptime": int((time.monotonic() - ctx.started) * 1000),
        "rates_mode": "basic",
        "net_ticktime": 60,
        "enabled_plugins": ["rabbitmq_management"],
        "exchange_types": operations.exchange_types(),
        "auth_mechanisms": [
            {"name": "PLAIN", "description": "SASL PLAIN authentication mechanism", "enabled": True},
            {"name": "AMQPLAIN", "description": "QPid AMQPLAIN mechanism", "enabled": True},
        ],
        "applications": [{"name": "amqp_server", "description": "amqp-server", "version": __version__}],
        "contexts": [],
        "partitions": [],
        "log_files": [],
        "config_files": [],
        "cluster_links": [],
        "db_dir": str(ctx.data_dir),
        "metrics_gc_queue_length": dict.fromkeys(GC_QUEUES, 0),
        "ra_open_file_metrics": {},
    }
    for key in NODE_COUNTERS:  # Erlang VM and Mnesia counters: none here; churn counts come with message_stats
        node[key] = 0
    for key in (*NODE_COUNTERS, "mem_used", "fd_used", "sockets_used", "proc_used", "disk_free"):
        node[f"{key}_details"] = details()
    return node


async def get_nodes(request: web.Request) -> web.Response:
    caller(request).require_monitoring()
    return listed(request, [_node(request)])


async def get_node(request: web.Request) -> web.Response:
    caller(request).require_monitoring()
    if request.match_info["node"] != context(request).operations.node:
        raise not_found()
    return reply(_node(request))


async def get_aliveness(request: web.Request) -> web.Response:
    """Declare ``aliveness-test``, publish to it and get the message back, as RabbitMQ does."""
    vhost = vhost_of(request)
    operations = context(request).operations
    user = caller(request).name
    operations.declare_queue(vhost, "aliveness-test", durable=False, user=user)
    operations.publish(vhost, "", "aliveness-test", b"test_message", user=user)
    got = operations.get_messages(vhost, "aliveness-test", 1, "ack_requeue_false", user=user)
    if not got:
        raise ApiError(503, "failed", "aliveness-test message not received")
    return reply({"status": "ok"})


async def get_healthcheck_node(request: web.Request) -> web.Response:
    alarms = _alarms(request)
    if alarms:
        return reply({"status": "failed", "reason": f"resource alarm(s) in effect: {', '.join(alarms)}"})
    return reply({"status": "ok"})


def _alarms(request: web.Request) -> list[str]:
    figures = context(request).operations.resources()
    return [name for name, key in (("memory", "mem_alarm"), ("disk", "disk_free_alarm")) if figures[key]]


async def check_alarms(request: web.Request) -> web.Response:
    alarms = _alarms(request)
    if alarms:
        node = context(request).operations.node
        return reply(
            {
                "status": "failed",
                "reason": "There are alarms in effect in the cluster",
                "alarms": [{"node": node, "resource": name} for name in alarms],
            },
            503,
        )
    return reply({"status": "ok"})


async def check_port_listener(request: web.Request) -> web.Response:
    try:
        port = int(request.match_info["port"])
    except ValueError:
        raise bad_request("Invalid port") from None
    ports = [listener["port"] for listener in context(request).listeners]
    if port not in ports:
        return reply({"status": "failed", "reason": "No active listener", "missing": port, "ports": ports}, 503)
    return reply({"status": "ok", "port": port})


async def check_protocol_listener(request: web.Request) -> web.Response:
    protocol = request.match_info["protocol"].lower()
    protocols = sorted({listener["protocol"] for listener in context(request).listeners})
    aliases = {"amqp091": "amqp", "amqp0-9-1": "amqp", "amqp/ssl": "amqp/ssl", "https": "https", "http": "http"}
    if aliases.get(protocol, protocol) not in protocols:
        return reply(
            {"status": "failed", "reason": "No active listener", "missing": protocol, "protocols": protocols},
            503,
        )
    return reply({"status": "ok", "protocol": protocol})


async def get_auth(request: web.Request) -> web.Response:
    return reply({"enable_uaa": False, "uaa_client_id": "", "uaa_location": ""})


async def get_empty_list(request: web.Request) -> web.Response:
    """Feature flags, limits, runtime parameters: none are kept by this broker (policies have their own)."""
    return reply([])


async def get_global_parameters(request: web.Request) -> web.Response:
    return reply([{"name": "cluster_name", "value": context(request).cluster_name}])


async def check_ok(request: web.Request) -> web.Response:
    return reply({"status": "ok"})


async def check_single_node(request: web.Request) -> web.Response:
    return reply({"status": "ok", "reason": "single node cluster"})
