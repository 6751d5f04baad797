"""What every handler shares (the ``Context``), who is calling, and the small request/response helpers."""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from ..core.operations import BrokerOperations, RangeError, Ranges
from ..ops.access import AccessHome
from . import listing
from .auth import Caller
from .errors import ApiError, bad_request, not_authorised, not_found


@dataclass
class Context:
    """What the handlers share: the broker's operations, where access.json lives, and facts for the overview."""

    operations: BrokerOperations
    data_dir: Path
    access_home: AccessHome | None = None  # where users, vhosts and permissions live; None: data_dir's access.json
    loopback_users: tuple[str, ...] = ("guest",)
    listeners: list[dict[str, Any]] = field(default_factory=list)  # filled in once the sockets are bound
    export_definitions: Callable[[str | None], dict[str, Any]] | None = None
    import_definitions: Callable[[Any, str | None], None] | None = None
    started: float = field(default_factory=time.monotonic)
    cluster_name: str = "amqp-server"  # as connection.start's server properties say


CONTEXT = web.AppKey("context", Context)
CALLER = web.RequestKey("caller", Caller)  # set by the authentication middleware
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def add(router: web.UrlDispatcher, method: str, path: str, handler: Handler) -> None:
    """Route ``method path`` and ``path/``: RabbitMQ accepts a trailing slash (Celery Flower sends one).
    A GET answers HEAD too, as RabbitMQ's."""
    for route in (path, path + "/"):
        if method == "GET":
            router.add_get(route, handler)  # with HEAD
        else:
            router.add_route(method, route, handler)


def context(request: web.Request) -> Context:
    return request.app[CONTEXT]


def caller(request: web.Request) -> Caller:
    return request[CALLER]  # the authentication middleware runs before any handler


def permitted_vhosts(request: web.Request) -> list[str]:
    """The vhosts the caller has permissions on (an administrator: every vhost)."""
    who = caller(request)
    operations = context(request).operations
    names = operations.vhost_names()
    if who.is_administrator:
        return names
    permitted = {vhost for user, vhost in operations.access.permissions if user == who.name}
    return [name for name in names if name in permitted]


def visible_vhosts(request: web.Request) -> list[str]:
    """The vhosts ``/api/vhosts`` lists: all for monitoring, else the permitted ones (the objects inside them,
    queues, exchanges, bindings, consumers, are listed for the permitted vhosts only, even to monitoring)."""
    if caller(request).is_monitoring:
        return context(request).operations.vhost_names()
    return permitted_vhosts(request)


def vhost_of(request: web.Request, key: str = "vhost", creating: bool = False) -> str:
    """The vhost a URL names (``%2F`` is ``/``): 404 if it does not exist (``vhost_not_found`` when something
    was to be created in it, as RabbitMQ), 401 unless the caller has permissions on it (RabbitMQ asks that
    even of monitoring users)."""
    name = request.match_info[key]
    if name not in context(request).operations.vhost_names():
        raise ApiError(404, "not_found", "vhost_not_found") if creating else not_found()
    if name not in permitted_vhosts(request):
        raise not_authorised("User not authorised to access virtual host")
    return name


def ranges(request: web.Request, listing: bool = False, ceil_lengths: bool = False) -> Ranges:
    """The statistics ranges the query asks for (``msg_rates_age=60&msg_rates_incr=5`` …).

    A bad pair is a 400 as RabbitMQ words it: ``invalid_range_parameters`` on the paged listings
    (queues, exchanges, vhosts), ``bad_request`` everywhere else.
    """
    try:
        return context(request).operations.stats_ranges(request.query, ceil_lengths)
    except RangeError as error:
        raise ApiError(400, "invalid_range_parameters", str(error)) if listing else bad_request(str(error)) from None


def listed(
    request: web.Request, items: list[dict[str, Any]], default_sort: tuple[str, ...] = ("name",)
) -> web.Response:
    """``items`` filtered, sorted, paged and cut to columns as the query string asks (``listing``)."""
    return reply(listing.apply(listing.parse(request.query), items, default_sort))


async def json_body(request: web.Request) -> dict[str, Any]:
    """The request's JSON object (an empty body is ``{}``); 400 ``not_json`` otherwise, whatever Content-Type."""
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise bad_request("not_json") from None
    if not isinstance(data, dict):
        raise bad_request("not_json")
    return data


def reply(data: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, text=json.dumps(data, separators=(",", ":")), content_type="application/json")


def no_content(status: int = 204) -> web.Response:
    return web.Response(status=status)
