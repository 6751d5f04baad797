"""exchanges, queues and bindings: list, get, declare, delete, purge, get messages, publish, bind.

Declarations run the AMQP handlers through ``BrokerOperations`` as the calling user,
so equivalence (400 "inequivalent arg …"), reserved names and permissions (401
"Access refused.") answer as RabbitMQ's management plugin does.  ``amq.default``
names the default exchange in URLs.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any
from urllib.parse import quote

from aiohttp import web

from ..core.operations import ACK_MODES, properties_key
from ..errors import AMQPError, TopicAccessRefused
from .context import add, caller, context, json_body, listed, no_content, permitted_vhosts, ranges, reply, vhost_of
from .errors import ApiError, bad_request, not_found, require_keys

DEFAULT_EXCHANGE = "amq.default"
KINDS = {"q": "queue", "e": "exchange"}


def add_routes(router: web.UrlDispatcher) -> None:
    add(router, "GET", "/api/exchanges", get_exchanges)
    add(router, "GET", "/api/exchanges/{vhost}", get_exchanges)
    add(router, "GET", "/api/exchanges/{vhost}/{name}", get_exchange)
    add(router, "PUT", "/api/exchanges/{vhost}/{name}", put_exchange)
    add(router, "DELETE", "/api/exchanges/{vhost}/{name}", delete_exchange)
    add(router, "GET", "/api/exchanges/{vhost}/{name}/bindings/source", get_exchange_bindings_source)
    add(router, "GET", "/api/exchanges/{vhost}/{name}/bindings/destination", get_exchange_bindings_destination)
    add(router, "POST", "/api/exchanges/{vhost}/{name}/publish", post_publish)
    add(router, "GET", "/api/queues", get_queues)
    add(router, "GET", "/api/queues/{vhost}", get_queues)
    add(router, "GET", "/api/queues/{vhost}/{name}", get_queue)
    add(router, "PUT", "/api/queues/{vhost}/{name}", put_queue)
    add(router, "DELETE", "/api/queues/{vhost}/{name}", delete_queue)
    add(router, "DELETE", "/api/queues/{vhost}/{name}/contents", delete_queue_contents)
    add(router, "POST", "/api/queues/{vhost}/{name}/get", post_get)
    add(router, "GET", "/api/queues/{vhost}/{name}/bindings", get_queue_bindings)
    add(router, "GET", "/api/bindings", get_bindings)
    add(router, "GET", "/api/bindings/{vhost}", get_bindings)
    add(router, "GET", "/api/bindings/{vhost}/e/{source}/{kind:[eq]}/{destination}", get_pair_bindings)
    add(router, "POST", "/api/bindings/{vhost}/e/{source}/{kind:[eq]}/{destination}", post_binding)
    add(router, "GET", "/api/bindings/{vhost}/e/{source}/{kind:[eq]}/{destination}/{props}", get_binding)
    add(router, "DELETE", "/api/bindings/{vhost}/e/{source}/{kind:[eq]}/{destination}/{props}", delete_binding)


def _vhosts(request: web.Request) -> list[str]:
    """The vhost the URL names, or (no vhost in it) every vhost the caller sees."""
    return [vhost_of(request)] if "vhost" in request.match_info else permitted_vhosts(request)


def _exchange_name(request: web.Request, key: str = "name") -> str:
    name = request.match_info[key]
    return "" if name == DEFAULT_EXCHANGE else name


def _flag(value: Any) -> bool:
    """A boolean field: JSON's, or "true"/"false" as strings (rabbitmqadmin sends those; RabbitMQ takes them)."""
    if isinstance(value, bool):
        return value
    if value in ("true", "false"):
        return bool(value == "true")
    raise bad_request(["not_boolean", value])


def _count(body: dict[str, Any], key: str) -> int | None:
    """A non-negative integer field, which RabbitMQ also takes as a string of digits ("5")."""
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, str) and value.isdigit():
        return int(value)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise bad_request(["not_int", key])
    return value


def _arguments(body: dict[str, Any]) -> dict[str, Any]:
    arguments = body.get("arguments", {})
    if arguments in ([], None, ""):  # RabbitMQ's forms accept an empty list too
        return {}
    if not isinstance(arguments, dict):
        raise bad_request("arguments must be an object")
    return arguments


# ------------------------------------------------------------------ exchanges


async def get_exchanges(request: web.Request) -> web.Response:
    operations = context(request).operations
    window = ranges(request, listing=True)
    items = [item for vhost in _vhosts(request) for item in operations.exchanges(vhost, window)]
    return listed(request, items, ("vhost", "name"))


async def get_exchange(request: web.Request) -> web.Response:
    vhost = vhost_of(request)
    found = context(request).operations.exchange(vhost, _exchange_name(request), ranges(request))
    if found is None:
        raise not_found()
    return reply({**found, "incoming": [], "outgoing": []})


async def put_exchange(request: web.Request) -> web.Response:
    vhost = vhost_of(request, creating=True)
    name = _exchange_name(request)
    body = await json_body(request)
    operations = context(request).operations
    exchange_type = body.get("type", "direct")
    if not isinstance(exchange_type, str):
        raise bad_request("type must be a string")
    if exchange_type not in {known["name"] for known in operations.exchange_types()}:
        raise bad_request(f"unknown exchange type '{exchange_type}'")  # RabbitMQ's words on a fresh node
    existed = operations.exchange(vhost, name) is not None
    operations.declare_exchange(
        vhost,
        name,
        exchange_type,
        durable=_flag(body.get("durable", True)),
        auto_delete=_flag(body.get("auto_delete", False)),
        internal=_flag(body.get("internal", False)),
        arguments=_arguments(body),
        user=caller(request).name,
    )
    return no_content(204 if existed else 201)


async def delete_exchange(request: web.Request) -> web.Response:
    vhost = vhost_of(request)
    name = _exchange_name(request)
    operations = context(request).operations
    if operations.exchange(vhost, name) is None:
        raise not_found()
    operations.delete_exchange(
        vhost, name, if_unused=request.query.get("if-unused") == "true", user=caller(request).name
    )
    return no_content()


def _bindings_where(request: web.Request, **match: str) -> list[dict[str, Any]]:
    vhost = vhost_of(request)
    return [
        binding
        for binding in context(request).operations.bindings(vhost)
        if all(binding[key] == value for key, value in match.items())
    ]


async def get_exchange_bindings_source(request: web.Request) -> web.Response:
    vhost = vhost_of(request)
    name = _exchange_name(request)
    if context(request).operations.exchange(vhost, name) is None:
        raise not_found()
    return listed(request, _bindings_where(request, source=name), ())


async def get_exchange_bindings_destination(request: web.Request) -> web.Response:
    vhost = vhost_of(request)
    name = _exchange_name(request)
    if context(request).operations.exchange(vhost, name) is None:
        raise not_found()
    return listed(request, _bindings_where(request, destination=name, destination_type="exchange"), ())


async def post_publish(request: web.Request) -> web.Response:
    vhost = vhost_of(request)
    name = _exchange_name(request)
    body = await json_body(request)
    require_keys(body, ("routing_key", "properties", "payload", "payload_encoding"))
    routing_key, payload, encoding = body["routing_key"], body["payload"], body["payload_encoding"]
    properties = body["properties"]
    if not isinstance(routing_key, str) or not isinstance(payload, str):
        raise bad_request("routing_key and payload must be strings")
    if properties == []:
        properties = {}
    if not isinstance(properties, dict):
        raise bad_request("properties must be an object")
    if encoding == "string":
        data = payload.encode()
    elif encoding == "base64":
        try:
            data = base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            raise bad_request(["not_base64", payload]) from None
    else:
        raise bad_request(["unsupported_encoding", encoding])
    for key in ("delivery_mode", "priority", "timestamp"):
        if key in properties and (not isinstance(properties[key], int) or isinstance(properties[key], bool)):
            raise bad_request(["not_int", key])
    if "headers" in properties and not isinstance(properties["headers"], dict):
        raise bad_request(["not_table", "headers"])
    try:
        routed = context(request).operations.publish(
            vhost, name, routing_key, data, properties, user=caller(request).name
        )
    except (ValueError, TypeError) as error:
        raise bad_request(str(error)) from None
    except AMQPError as error:
        if error.reply_code == 403 and not isinstance(error, TopicAccessRefused):  # RabbitMQ: 401 for those
            raise
        raise bad_request(f"{error.reply_code} {error.reply_text}") from None
    return reply({"routed": routed})


# ------------------------------------------------------------------ queues


async def get_queues(request: web.Request) -> web.Response:
    operations = context(request).operations
    window = ranges(request, listing=True)
    items = [_queue(item) for vhost in _vhosts(request) for item in operations.queues(vhost, window)]
    return listed(request, items, ("vhost", "name"))


def _queue(info: dict[str, Any]) -> dict[str, Any]:
    """A queue as the API lists it (its counts' ``*_details`` rates come with its statistics)."""
    extra: dict[str, Any] = {} if info.get("type") == "stream" else {"single_active_consumer_tag": None}
    return {**info, **extra}


async def get_queue(request: web.Request) -> web.Response:
    vhost = vhost_of(request)
    operations = context(request).operations
    found = operations.queue(vhost, request.match_info["name"], ranges(request, ceil_lengths=True))
    if found is None:
        raise not_found()
    consumers = [c for c in operations.consumers(vhost) if c["queue"]["name"] == found["name"]]
    return reply({**_queue(found), "consumer_details": consumers, "deliveries": [], "incoming": []})


async def put_queue(request: web.Request) -> web.Response:
    vhost = vhost_of(request, creating=True)
    name = request.match_info["name"]
    body = await json_body(request)
    operations = context(request).operations
    arguments = _arguments(body)
    queue_type = body.get("type")
    if isinstance(queue_type, str) and queue_type != "classic" and "x-queue-type" not in arguments:
        arguments = {**arguments, "x-queue-type": queue_type}
    existed = operations.queue(vhost, name) is not None
    operations.declare_queue(
        vhost,
        name,
        durable=_flag(body.get("durable", True)),
        auto_delete=_flag(body.get("auto_delete", False)),
        arguments=arguments,
        user=caller(request).name,
    )
    return no_content(204 if existed else 201)


async def delete_queue(request: web.Request) -> web.Response:
    vhost = vhost_of(request)
    query = request.query
    context(request).operations.delete_queue(
        vhost,
        request.match_info["name"],
        if_unused=query.get("if-unused") == "true",
        if_empty=query.get("if-empty") == "true",
        user=caller(request).name,
    )
    return no_content()


async def delete_queue_contents(request: web.Request) -> web.Response:
    vhost = vhost_of(request)
    operations = context(request).operations
    name = request.match_info["name"]
    if operations.queue(vhost, name) is None:
        raise not_found()
    operations.purge_queue(vhost, name, user=caller(request).name)
    return no_content()


async def post_get(request: web.Request) -> web.Response:
    vhost = vhost_of(request)
    body = await json_body(request)
    require_keys(body, ("count", "ackmode", "encoding"))
    ackmode, encoding = body["ackmode"], body["encoding"]
    count, truncate = _count(body, "count") or 0, _count(body, "truncate")
    if ackmode not in ACK_MODES:  # RabbitMQ answers 500 here
        raise bad_request(f"unknown ackmode '{ackmode}'")
    if encoding not in ("auto", "base64"):
        raise bad_request("Unsupported encoding. Please use auto or base64.")
    try:
        messages = context(request).operations.get_messages(
            vhost, request.match_info["name"], count, ackmode, encoding, truncate, user=caller(request).name
        )
    except AMQPError as error:
        if error.reply_code == 404:
            raise ApiError(404, "not_found", error.reply_text) from None
        raise
    for message in messages:
        if not message["properties"]:
            message["properties"] = []  # RabbitMQ's JSON for an empty property list (an Erlang [])
    return reply(messages)


async def get_queue_bindings(request: web.Request) -> web.Response:
    vhost = vhost_of(request)
    name = request.match_info["name"]
    if context(request).operations.queue(vhost, name) is None:
        raise not_found()
    return listed(request, _bindings_where(request, destination=name, destination_type="queue"), ())


# ------------------------------------------------------------------ bindings


async def get_bindings(request: web.Request) -> web.Response:
    operations = context(request).operations
    items = [item for vhost in _vhosts(request) for item in operations.bindings(vhost)]
    return listed(request, items, ())


def _pair(request: web.Request) -> tuple[str, str, str, str]:
    """(vhost, source, destination, destination_type) of a bindings URL; 404 if either end is missing."""
    vhost = vhost_of(request, creating=request.method == "POST")
    source = _exchange_name(request, "source")
    kind = KINDS[request.match_info["kind"]]
    destination = request.match_info["destination"]
    operations = context(request).operations
    if operations.exchange(vhost, source) is None:
        raise ApiError(404, "not_found", f"no exchange '{source}' in vhost '{vhost}'")
    exists = operations.queue(vhost, destination) if kind == "queue" else operations.exchange(vhost, destination)
    if exists is None:
        raise ApiError(404, "not_found", f"no {kind} '{destination}' in vhost '{vhost}'")
    return vhost, source, destination, kind


def _pair_bindings(request: web.Request) -> list[dict[str, Any]]:
    vhost, source, destination, kind = _pair(request)
    return [
        binding
        for binding in context(request).operations.bindings(vhost)
        if binding["source"] == source and binding["destination"] == destination and binding["destination_type"] == kind
    ]


async def get_pair_bindings(request: web.Request) -> web.Response:
    return listed(request, _pair_bindings(request), ())


async def post_binding(request: web.Request) -> web.Response:
    """Bind; 201 with ``Location`` naming the new binding by its properties key (relative, as RabbitMQ)."""
    vhost, source, destination, kind = _pair(request)
    body = await json_body(request)
    routing_key = body.get("routing_key", "")
    if routing_key is None:  # pyrabbit2's create_binding without a key sends null; RabbitMQ binds (key "null")
        routing_key = ""
    if not isinstance(routing_key, str):
        raise bad_request("routing_key must be a string")
    arguments = _arguments(body)
    context(request).operations.bind(
        vhost, source, destination, kind, routing_key, arguments, user=caller(request).name
    )
    location = f"{quote(destination, safe='')}/{quote(properties_key(routing_key, arguments), safe='')}"
    return web.Response(status=201, headers={"Location": location})


def _binding(request: web.Request) -> dict[str, Any]:
    props = request.match_info["props"]
    for binding in _pair_bindings(request):
        if binding["properties_key"] == props:
            return binding
    raise not_found()


async def get_binding(request: web.Request) -> web.Response:
    return reply(_binding(request))


async def delete_binding(request: web.Request) -> web.Response:
    binding = _binding(request)
    context(request).operations.unbind(
        binding["vhost"],
        binding["source"],
        binding["destination"],
        binding["destination_type"],
        binding["routing_key"],
        binding["arguments"],
        user=caller(request).name,
    )
    return no_content()
