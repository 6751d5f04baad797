"""The CLI commands that work on a running broker through its management HTTP API — what people use
``rabbitmqadmin`` and ``rabbitmqctl`` for::

    amqp-server list queues|exchanges|bindings|connections|channels|consumers|users|vhosts|permissions|policies
                |operator_policies [--columns name,messages] [--format table|tsv|json] [--sort COLUMN] [--sort-reverse]
    amqp-server declare queue NAME [--no-durable] [--auto-delete] [--type quorum] [--arguments JSON]
    amqp-server declare exchange NAME TYPE [--no-durable] [--auto-delete] [--internal] [--arguments JSON]
    amqp-server delete queue NAME [--if-empty] [--if-unused] | delete exchange NAME [--if-unused]
    amqp-server purge queue NAME
    amqp-server bind SOURCE DESTINATION [--destination-type queue|exchange] [--routing-key KEY] [--arguments JSON]
    amqp-server unbind SOURCE DESTINATION [the same options]
    amqp-server publish --routing-key KEY [--exchange NAME] [--payload TEXT (else stdin)] [--properties JSON]
    amqp-server get QUEUE [--count N] [--ackmode ack_requeue_true|ack_requeue_false|reject_requeue_…]
    amqp-server close connection NAME [--reason TEXT]
    amqp-server declare policy|operator_policy NAME PATTERN DEFINITION [--priority N] [--apply-to all|queues|…]
    amqp-server delete policy|operator_policy NAME
    amqp-server trace_on | trace_off      tracing (the firehose on amq.rabbitmq.trace) for --vhost, rabbitmqctl's

The verbs and object names are rabbitmqadmin's (``declare policy``, ``delete policy``), which also
leaves the name ``amqp-server policies …`` to the admin commands that work on a data dir.

Where the API is: ``--url`` (``http://127.0.0.1:15672``), else ``--host``/``--management-port``,
else the broker running on the data dir (``ops.running``: it publishes its port, even a
``--management-port 0`` one), else the broker configuration's host and management port
(``--config``, ``AMQP_SERVER_*``).  As whom: ``--username``/``--password``, else the URL's
``user:password@``, else guest/guest.
Which vhost: ``--vhost`` (``/``); ``list`` without it lists every vhost, as rabbitmqadmin does.
The environment variables are rabbitmqadmin v2's (``RABBITMQADMIN_BASE_URI``,
``RABBITMQADMIN_TARGET_HOST``, ``RABBITMQADMIN_TARGET_PORT``, ``RABBITMQADMIN_USERNAME``,
``RABBITMQADMIN_PASSWORD``, ``RABBITMQADMIN_TARGET_VHOST``).  A refused request prints the
API's reason on one line and exits with 1; a usage error exits with 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from . import running
from .config import CONFIG_ENV, env_name, load_config
from .errors import ConfigError
from .http_client import ApiRequestError, ManagementClient, segment
from .table_format import FORMATS, render, split_columns

API_COMMANDS = (
    "list",
    "declare",
    "delete",
    "purge",
    "bind",
    "unbind",
    "publish",
    "get",
    "close",
    "trace_on",
    "trace_off",
)
ENV = {  # rabbitmqadmin v2's names
    "url": "RABBITMQADMIN_BASE_URI",
    "host": "RABBITMQADMIN_TARGET_HOST",
    "management_port": "RABBITMQADMIN_TARGET_PORT",
    "username": "RABBITMQADMIN_USERNAME",
    "password": "RABBITMQADMIN_PASSWORD",
    "vhost": "RABBITMQADMIN_TARGET_VHOST",
}
DEFAULT_EXCHANGE = "amq.default"  # the default exchange "" in URLs
ACKMODES = ("ack_requeue_true", "ack_requeue_false", "reject_requeue_true", "reject_requeue_false")
APPLY_TO = ("all", "queues", "classic_queues", "quorum_queues", "exchanges")


class UsageError(Exception):
    """A bad argument found after parsing (e.g. JSON that does not parse): exit code 2."""


class CommandFailed(Exception):
    """The API answered, but the command could not be done (e.g. no such binding to unbind): exit code 1."""


@dataclass(frozen=True)
class Listing:
    """One ``list`` kind: its API path, whether it lives in a vhost (``/path/{vhost}``), the default columns."""

    path: str
    columns: tuple[str, ...]
    per_vhost: str | None = None  # the path of one vhost's items, {vhost} filled in


POLICY_COLUMNS = ("name", "pattern", "apply-to", "definition", "priority")
POLICY_PATHS = {"policy": "/policies", "operator_policy": "/operator-policies"}
LISTINGS = {  # default columns as rabbitmqadmin's, plus the vhost when every vhost is listed
    "queues": Listing("/queues", ("name", "messages"), "/queues/{vhost}"),
    "exchanges": Listing("/exchanges", ("name", "type"), "/exchanges/{vhost}"),
    "bindings": Listing("/bindings", ("source", "destination", "destination_type", "routing_key"), "/bindings/{vhost}"),
    "connections": Listing("/connections", ("name", "user", "channels")),
    "channels": Listing("/channels", ("name", "user")),
    "consumers": Listing(
        "/consumers", ("queue.name", "consumer_tag", "channel_details.name", "ack_required"), "/consumers/{vhost}"
    ),
    "users": Listing("/users", ("name", "tags")),
    "vhosts": Listing("/vhosts", ("name", "messages")),
    "permissions": Listing("/permissions", ("user", "vhost", "configure", "write", "read")),
    "policies": Listing("/policies", POLICY_COLUMNS, "/policies/{vhost}"),
    "operator_policies": Listing("/operator-policies", POLICY_COLUMNS, "/operator-policies/{vhost}"),
}
GET_COLUMNS = (
    "routing_key",
    "exchange",
    "message_count",
    "redelivered",
    "payload",
    "payload_bytes",
    "payload_encoding",
)


# ------------------------------------------------------------------ options shared by every command


def connection_options(parser: argparse.ArgumentParser, with_location: bool = True) -> None:
    """Where the API is and who calls it (``with_location=False``: only the credentials)."""
    if with_location:
        parser.add_argument("--url", help=f"the management API, e.g. http://127.0.0.1:15672 [{ENV['url']}]")
        parser.add_argument("--host", help=f"its host (default: the broker configuration's) [{ENV['host']}]")
        parser.add_argument("--management-port", type=int, help=f"its port (default: 15672) [{ENV['management_port']}]")
        parser.add_argument("--vhost", help=f"the virtual host (default /; list: all) [{ENV['vhost']}]")
        parser.add_argument("--data-dir", help=f"find the broker running on this data dir [{env_name('data_dir')}]")
        parser.add_argument("--config", metavar="FILE", help=f"the broker's TOML configuration file [{CONFIG_ENV}]")
    # dest names apart from the commands' own arguments (``users add NAME PASSWORD``)
    parser.add_argument(
        "--username",
        dest="api_username",
        metavar="USER",
        help=f"management API user (default guest) [{ENV['username']}]",
    )
    parser.add_argument(
        "--password", dest="api_password", metavar="PASSWORD", help=f"its password (default guest) [{ENV['password']}]"
    )


def credentials(args: argparse.Namespace, environ: Mapping[str, str]) -> tuple[str | None, str | None]:
    """``--username``/``--password`` or their environment variables; ``None`` where neither is given."""
    username = args.api_username or environ.get(ENV["username"])
    password = args.api_password if args.api_password is not None else environ.get(ENV["password"])
    return username, password


def api_url(args: argparse.Namespace, environ: Mapping[str, str]) -> str:
    """The base URL of the API these options name (see the module docstring for the order)."""
    url = args.url or environ.get(ENV["url"])
    if url:
        return str(url)
    host = args.host or environ.get(ENV["host"])
    port: Any = args.management_port or environ.get(ENV["management_port"])
    if port is not None and not str(port).isdigit():
        raise UsageError(f"{ENV['management_port']} must be a port number, got {port!r}")
    flags = {"data_dir": args.data_dir} if args.data_dir else {}
    config = load_config(flags, args.config, environ)  # ConfigError: exit 2
    if host is None and port is None:
        found = running.wait_published(config.data_dir)
        if found is not None and found.management_url:
            return found.management_url
        if found is not None:
            raise CommandFailed(
                f"the broker running on data dir {config.data_dir} (pid {found.pid or 'unknown'}) has its "
                "management API turned off (--management-port -1)"
            )
        if args.data_dir:  # that broker was meant, not whatever listens on the configured port
            raise CommandFailed(f"no broker is running on data dir {config.data_dir}")
    if port is None:
        port = config.management_port if config.management_port > 0 else 15672
    return f"http://{running.connect_host(host or config.host)}:{port}"


def vhost_of(args: argparse.Namespace, environ: Mapping[str, str]) -> str | None:
    """``--vhost`` or its environment variable; ``None`` if neither is given."""
    if args.vhost is not None:
        return str(args.vhost)
    return environ.get(ENV["vhost"])


def json_argument(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as error:
        raise UsageError(f"{what} is not valid JSON: {error}") from None


def json_object(text: str, what: str) -> dict[str, Any]:
    value = json_argument(text, what)
    if not isinstance(value, dict):
        raise UsageError(f"{what} must be a JSON object, got {text!r}")
    return value


# ------------------------------------------------------------------ the parser


Handler = Callable[[ManagementClient, argparse.Namespace, str | None], str | None]


def _policy_words(kind: str) -> str:
    return kind.replace("_", " ")  # policy, operator policy


class _Commands:
    """Adds subcommands that share the connection options (and, for listings, the output options)."""

    def __init__(self) -> None:
        self.common = argparse.ArgumentParser(add_help=False)
        connection_options(self.common)
        self.output = argparse.ArgumentParser(add_help=False)
        self.output.add_argument(
            "--columns", help="comma-separated columns, RabbitMQ's names (dotted: message_stats.publish)"
        )
        self.output.add_argument("--format", choices=FORMATS, default="table", help="output format (default table)")

    def add(self, group: Any, name: str, handler: Handler, help_text: str, listing: bool = False) -> Any:
        parents = [self.common, self.output] if listing else [self.common]
        sub = group.add_parser(name, parents=parents, help=help_text, description=help_text)
        sub.set_defaults(handler=handler)
        return sub


def api_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="amqp-server", description="Work on a running broker through its management HTTP API."
    )
    groups = parser.add_subparsers(dest="group", required=True)
    commands = _Commands()
    for add in (_list_commands, _declare_commands, _delete_commands, _binding_commands, _message_commands, _traces):
        add(commands, groups)
    return parser


def _kinds(groups: Any, verb: str, help_text: str) -> Any:
    return groups.add_parser(verb, help=help_text).add_subparsers(dest="kind", required=True)


def _list_commands(commands: _Commands, groups: Any) -> None:
    lists = _kinds(groups, "list", "list objects")
    for kind in LISTINGS:
        sub = commands.add(lists, kind, _list, f"list {kind}", listing=True)
        sub.add_argument("--sort", help="sort by this column (the API's sort)")
        sub.add_argument("--sort-reverse", action="store_true", help="in reverse order")


def _declare_commands(commands: _Commands, groups: Any) -> None:
    declare = _kinds(groups, "declare", "declare a queue, an exchange or a policy")
    queue = commands.add(declare, "queue", _declare_queue, "declare a queue (durable unless --no-durable)")
    queue.add_argument("name")
    queue.add_argument("--type", choices=("classic", "quorum"), help="x-queue-type")
    exchange = commands.add(declare, "exchange", _declare_exchange, "declare an exchange (durable unless --no-durable)")
    exchange.add_argument("name")
    exchange.add_argument("type", help="direct, fanout, topic, headers, …")
    exchange.add_argument("--internal", action="store_true")
    for sub in (queue, exchange):
        sub.add_argument("--durable", action=argparse.BooleanOptionalAction, default=True)
        sub.add_argument("--auto-delete", action="store_true")
        sub.add_argument("--arguments", default="{}", help="a JSON object, e.g. '{\"x-max-length\": 10}'")
    for kind, path in POLICY_PATHS.items():
        policy = commands.add(declare, kind, _set_policy, f"set (create or replace) the {_policy_words(kind)} NAME")
        policy.add_argument("name")
        policy.add_argument("pattern", help="regular expression matched against queue or exchange names")
        policy.add_argument("definition", help="a JSON object, e.g. '{\"message-ttl\": 60000}'")
        policy.add_argument("--priority", type=int, default=0)
        policy.add_argument("--apply-to", choices=APPLY_TO, default="all")
        policy.set_defaults(path=path)


def _delete_commands(commands: _Commands, groups: Any) -> None:
    delete = _kinds(groups, "delete", "delete a queue, an exchange or a policy")
    queue = commands.add(delete, "queue", _delete_queue, "delete a queue")
    queue.add_argument("name")
    queue.add_argument("--if-empty", action="store_true", help="only if it holds no messages")
    queue.add_argument("--if-unused", action="store_true", help="only if it has no consumers")
    exchange = commands.add(delete, "exchange", _delete_exchange, "delete an exchange")
    exchange.add_argument("name")
    exchange.add_argument("--if-unused", action="store_true", help="only if nothing is bound to it")
    for kind, path in POLICY_PATHS.items():
        policy = commands.add(delete, kind, _clear_policy, f"delete the {_policy_words(kind)} NAME")
        policy.add_argument("name")
        policy.set_defaults(path=path)
    purge = _kinds(groups, "purge", "purge a queue")
    commands.add(purge, "queue", _purge_queue, "remove every ready message of a queue").add_argument("name")


def _binding_commands(commands: _Commands, groups: Any) -> None:
    for verb, handler in (("bind", _bind), ("unbind", _unbind)):
        help_text = f"{verb} a queue or an exchange (destination) to an exchange (source)"
        sub = commands.add(groups, verb, handler, help_text)
        sub.add_argument("source", help=f"the exchange ({DEFAULT_EXCHANGE} or '' is the default exchange)")
        sub.add_argument("destination")
        sub.add_argument("--destination-type", choices=("queue", "exchange"), default="queue")
        sub.add_argument("--routing-key", default="")
        sub.add_argument("--arguments", default="{}", help="a JSON object (binding arguments)")


def _message_commands(commands: _Commands, groups: Any) -> None:
    publish = commands.add(groups, "publish", _publish, "publish one message")
    publish.add_argument("--exchange", default=DEFAULT_EXCHANGE, help=f"(default {DEFAULT_EXCHANGE})")
    publish.add_argument("--routing-key", required=True)
    publish.add_argument("--payload", help="the body (default: read from standard input)")
    publish.add_argument("--payload-encoding", choices=("string", "base64"), default="string")
    publish.add_argument("--properties", default="{}", help="a JSON object, e.g. '{\"delivery_mode\": 2}'")
    help_text = "get messages from a queue (requeued unless --ackmode says otherwise)"
    get = commands.add(groups, "get", _get, help_text, listing=True)
    get.add_argument("queue")
    get.add_argument("--count", type=int, default=1)
    get.add_argument("--ackmode", choices=ACKMODES, default="ack_requeue_true")
    get.add_argument("--encoding", choices=("auto", "base64"), default="auto")
    get.add_argument("--truncate", type=int, help="cut payloads to this many bytes")
    close = _kinds(groups, "close", "close a connection")
    connection = commands.add(close, "connection", _close_connection, "close a client connection (320)")
    connection.add_argument("name", help="as list connections shows it, e.g. '127.0.0.1:50000 -> 127.0.0.1:5672'")
    connection.add_argument("--reason", help="the text the client receives (default: Closed via management plugin)")


def _traces(commands: _Commands, groups: Any) -> None:
    for verb, on in (("trace_on", True), ("trace_off", False)):
        what = "copy every publish and delivery of --vhost to its amq.rabbitmq.trace exchange"
        sub = commands.add(groups, verb, _trace, f"{'start' if on else 'stop'} tracing: {what}")
        sub.set_defaults(tracing=on)


def api_main(argv: list[str], environ: Mapping[str, str] | None = None) -> int:
    environ = os.environ if environ is None else environ
    args = api_parser().parse_args(argv)
    try:
        client = ManagementClient(api_url(args, environ), *credentials(args, environ))
        output = args.handler(client, args, vhost_of(args, environ))
    except ConfigError as error:
        print(f"amqp-server: invalid configuration: {error}", file=sys.stderr)
        return 2
    except UsageError as error:
        print(f"amqp-server: {error}", file=sys.stderr)
        return 2
    except (ApiRequestError, CommandFailed) as error:
        print(f"amqp-server: {error}", file=sys.stderr)
        return 1
    if output:
        print(output)
    return 0


# ------------------------------------------------------------------ the commands


def _vhost(vhost: str | None) -> str:
    return segment("/" if vhost is None else vhost)


def _exchange(name: str) -> str:
    return segment(name or DEFAULT_EXCHANGE)


def _columns(args: argparse.Namespace, default: tuple[str, ...]) -> list[str] | None:
    """The columns asked for; without ``--columns`` the defaults, or every field for JSON."""
    if args.columns:
        return split_columns(args.columns)
    return None if args.format == "json" else list(default)


def _list(client: ManagementClient, args: argparse.Namespace, vhost: str | None) -> str:
    listing = LISTINGS[args.kind]
    path = listing.path
    default = listing.columns
    if listing.per_vhost is not None:
        if vhost is not None:
            path = listing.per_vhost.format(vhost=segment(vhost))
        elif "vhost" not in default:
            default = ("vhost", *default)
    columns = _columns(args, default)
    query: dict[str, str] = {}
    if columns:
        query["columns"] = ",".join(columns)
    if args.sort:
        query["sort"] = args.sort
    if args.sort_reverse:
        query["sort_reverse"] = "true"
    items = client.get(path + ("?" + urlencode(query) if query else ""))
    if isinstance(items, dict) and "items" in items:  # a paged answer
        items = items["items"]
    return render(items if isinstance(items, list) else [], columns, args.format)


def _declare_queue(client: ManagementClient, args: argparse.Namespace, vhost: str | None) -> str:
    arguments = json_object(args.arguments, "--arguments")
    if args.type:
        arguments["x-queue-type"] = args.type
    body = {"durable": args.durable, "auto_delete": args.auto_delete, "arguments": arguments}
    client.request("PUT", f"/queues/{_vhost(vhost)}/{segment(args.name)}", body)
    return f"declared queue '{args.name}'"


def _declare_exchange(client: ManagementClient, args: argparse.Namespace, vhost: str | None) -> str:
    body = {
        "type": args.type,
        "durable": args.durable,
        "auto_delete": args.auto_delete,
        "internal": args.internal,
        "arguments": json_object(args.arguments, "--arguments"),
    }
    client.request("PUT", f"/exchanges/{_vhost(vhost)}/{segment(args.name)}", body)
    return f"declared exchange '{args.name}'"


def _delete_queue(client: ManagementClient, args: argparse.Namespace, vhost: str | None) -> str:
    query = {key: "true" for key, flag in (("if-empty", args.if_empty), ("if-unused", args.if_unused)) if flag}
    suffix = "?" + urlencode(query) if query else ""
    client.request("DELETE", f"/queues/{_vhost(vhost)}/{segment(args.name)}{suffix}")
    return f"deleted queue '{args.name}'"


def _delete_exchange(client: ManagementClient, args: argparse.Namespace, vhost: str | None) -> str:
    suffix = "?if-unused=true" if args.if_unused else ""
    client.request("DELETE", f"/exchanges/{_vhost(vhost)}/{_exchange(args.name)}{suffix}")
    return f"deleted exchange '{args.name}'"


def _purge_queue(client: ManagementClient, args: argparse.Namespace, vhost: str | None) -> str:
    client.request("DELETE", f"/queues/{_vhost(vhost)}/{segment(args.name)}/contents")
    return f"purged queue '{args.name}'"


def _binding_path(args: argparse.Namespace, vhost: str | None) -> str:
    kind = args.destination_type[0]
    return f"/bindings/{_vhost(vhost)}/e/{_exchange(args.source)}/{kind}/{segment(args.destination)}"


def _bind(client: ManagementClient, args: argparse.Namespace, vhost: str | None) -> str:
    body = {"routing_key": args.routing_key, "arguments": json_object(args.arguments, "--arguments")}
    client.request("POST", _binding_path(args, vhost), body)
    return f"bound {args.destination_type} '{args.destination}' to exchange '{args.source}'"


def _unbind(client: ManagementClient, args: argparse.Namespace, vhost: str | None) -> str:
    """The binding is named by its properties key, which only the API knows: find it among the pair's bindings."""
    arguments = json_object(args.arguments, "--arguments")
    path = _binding_path(args, vhost)
    for binding in client.get(path) or []:
        if binding.get("routing_key") == args.routing_key and (binding.get("arguments") or {}) == arguments:
            client.request("DELETE", f"{path}/{segment(binding['properties_key'])}")
            return f"unbound {args.destination_type} '{args.destination}' from exchange '{args.source}'"
    raise CommandFailed(
        f"no binding of {args.destination_type} '{args.destination}' to exchange '{args.source}' "
        f"with routing key '{args.routing_key}' and arguments {json.dumps(arguments)}"
    )


def _publish(client: ManagementClient, args: argparse.Namespace, vhost: str | None) -> str:
    payload = sys.stdin.read() if args.payload is None else args.payload
    body = {
        "properties": json_object(args.properties, "--properties"),
        "routing_key": args.routing_key,
        "payload": payload,
        "payload_encoding": args.payload_encoding,
    }
    answer = client.request("POST", f"/exchanges/{_vhost(vhost)}/{_exchange(args.exchange)}/publish", body)
    routed = isinstance(answer, dict) and answer.get("routed") is True
    return "Message published" if routed else "Message published but NOT routed"  # rabbitmqadmin's words


def _get(client: ManagementClient, args: argparse.Namespace, vhost: str | None) -> str:
    body: dict[str, Any] = {"count": args.count, "ackmode": args.ackmode, "encoding": args.encoding}
    if args.truncate is not None:
        body["truncate"] = args.truncate
    messages = client.request("POST", f"/queues/{_vhost(vhost)}/{segment(args.queue)}/get", body)
    return render(messages if isinstance(messages, list) else [], _columns(args, GET_COLUMNS), args.format)


def _close_connection(client: ManagementClient, args: argparse.Namespace, vhost: str | None) -> str:
    headers = {} if args.reason is None else {"X-Reason": args.reason}
    client.request("DELETE", f"/connections/{segment(args.name)}", headers=headers)
    return f"closed connection '{args.name}'"


def _set_policy(client: ManagementClient, args: argparse.Namespace, vhost: str | None) -> str:
    body = {
        "pattern": args.pattern,
        "definition": json_object(args.definition, "the definition"),
        "priority": args.priority,
        "apply-to": args.apply_to,
    }
    client.request("PUT", f"{args.path}/{_vhost(vhost)}/{segment(args.name)}", body)
    return f"set {_policy_words(args.kind)} '{args.name}'"


def _clear_policy(client: ManagementClient, args: argparse.Namespace, vhost: str | None) -> str:
    client.request("DELETE", f"{args.path}/{_vhost(vhost)}/{segment(args.name)}")
    return f"deleted {_policy_words(args.kind)} '{args.name}'"


def _trace(client: ManagementClient, args: argparse.Namespace, vhost: str | None) -> str:
    """rabbitmqctl's trace_on / trace_off, through PUT /api/vhosts (which would create a vhost: it must exist)."""
    name = "/" if vhost is None else vhost
    try:
        client.get(f"/vhosts/{_vhost(name)}")
    except ApiRequestError as error:
        if error.status == 404:
            raise CommandFailed(f"no vhost '{name}'") from None
        raise
    client.request("PUT", f"/vhosts/{_vhost(name)}", {"tracing": args.tracing})
    return f"Trace {'enabled' if args.tracing else 'disabled'} for vhost {name}"  # rabbitmqctl's words
