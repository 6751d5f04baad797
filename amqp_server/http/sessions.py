"""connections, channels, consumers and definitions.

A ``management`` user sees its own connections and channels only; ``monitoring`` and
``administrator`` see all of them (RabbitMQ's rule).  Closing a connection sends the
client connection.close 320 CONNECTION_FORCED with the ``X-Reason`` header's text
(RabbitMQ's default: "Closed via management plugin").
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from .context import add, caller, context, json_body, listed, no_content, permitted_vhosts, ranges, reply, vhost_of
from .errors import bad_request, not_found

DEFAULT_CLOSE_REASON = "Closed via management plugin"


def add_routes(router: web.UrlDispatcher) -> None:
    add(router, "GET", "/api/connections", get_connections)
    add(router, "GET", "/api/connections/{name}", get_connection)
    add(router, "DELETE", "/api/connections/{name}", delete_connection)
    add(router, "GET", "/api/connections/{name}/channels", get_connection_channels)
    add(router, "GET", "/api/connections/username/{user}", get_user_connections)
    add(router, "DELETE", "/api/connections/username/{user}", delete_user_connections)
    add(router, "GET", "/api/vhosts/{vhost}/connections", get_vhost_connections)
    add(router, "GET", "/api/channels", get_channels)
    add(router, "GET", "/api/channels/{name}", get_channel)
    add(router, "GET", "/api/vhosts/{vhost}/channels", get_vhost_channels)
    add(router, "GET", "/api/consumers", get_consumers)
    add(router, "GET", "/api/consumers/{vhost}", get_consumers)
    add(router, "GET", "/api/definitions", get_definitions)
    add(router, "POST", "/api/definitions", post_definitions)
    add(router, "GET", "/api/definitions/{vhost}", get_definitions)
    add(router, "POST", "/api/definitions/{vhost}", post_definitions)


def _visible(request: web.Request, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Connections or channels the caller may see: all for monitoring, else its own."""
    who = caller(request)
    return items if who.is_monitoring else [item for item in items if item["user"] == who.name]


def _connections(request: web.Request) -> list[dict[str, Any]]:
    return _visible(request, context(request).operations.connections(ranges(request)))


def _connection(request: web.Request) -> dict[str, Any]:
    name = request.match_info["name"]
    for connection in _connections(request):
        if connection["name"] == name:
            return connection
    raise not_found()


async def get_connections(request: web.Request) -> web.Response:
    return listed(request, _connections(request))


async def get_vhost_connections(request: web.Request) -> web.Response:
    vhost = vhost_of(request)
    return listed(request, [c for c in _connections(request) if c["vhost"] == vhost])


async def get_connection(request: web.Request) -> web.Response:
    return reply(_connection(request))


async def delete_connection(request: web.Request) -> web.Response:
    connection = _connection(request)
    reason = request.headers.get("X-Reason", DEFAULT_CLOSE_REASON)
    context(request).operations.close_connection(connection["name"], reason)
    return no_content()


async def get_connection_channels(request: web.Request) -> web.Response:
    name = _connection(request)["name"]
    operations = context(request).operations
    channels = [c for c in operations.channels(ranges(request)) if c["connection_details"]["name"] == name]
    return listed(request, channels)


async def get_user_connections(request: web.Request) -> web.Response:
    user = request.match_info["user"]
    return listed(request, [c for c in _connections(request) if c["user"] == user])


async def delete_user_connections(request: web.Request) -> web.Response:
    caller(request).require_administrator()
    user = request.match_info["user"]
    reason = request.headers.get("X-Reason", DEFAULT_CLOSE_REASON)
    operations = context(request).operations
    for connection in operations.connections():
        if connection["user"] == user:
            operations.close_connection(connection["name"], reason)
    return no_content()


def _channels(request: web.Request) -> list[dict[str, Any]]:
    return _visible(request, context(request).operations.channels(ranges(request)))


async def get_channels(request: web.Request) -> web.Response:
    return listed(request, _channels(request))


async def get_vhost_channels(request: web.Request) -> web.Response:
    vhost = vhost_of(request)
    return listed(request, [c for c in _channels(request) if c["vhost"] == vhost])


async def get_channel(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    for channel in _channels(request):
        if channel["name"] == name:
            return reply({**channel, "consumer_details": [], "deliveries": [], "publishes": []})
    raise not_found()


async def get_consumers(request: web.Request) -> web.Response:
    operations = context(request).operations
    vhosts = [vhost_of(request)] if "vhost" in request.match_info else permitted_vhosts(request)
    return listed(request, [c for vhost in vhosts for c in operations.consumers(vhost)], ())


# ------------------------------------------------------------------ definitions


async def get_definitions(request: web.Request) -> web.Response:
    """The broker's definitions (or one vhost's), in the format of the CLI's export."""
    caller(request).require_administrator()
    vhost = vhost_of(request) if "vhost" in request.match_info else None
    export = context(request).export_definitions
    if export is None:
        raise not_found()
    return reply(export(vhost))


async def post_definitions(request: web.Request) -> web.Response:
    caller(request).require_administrator()
    vhost = vhost_of(request) if "vhost" in request.match_info else None
    body = await json_body(request)
    load = context(request).import_definitions
    if load is None:
        raise not_found()
    try:
        load(body, vhost)
    except ValueError as error:
        raise bad_request(str(error)) from None
    return no_content()
