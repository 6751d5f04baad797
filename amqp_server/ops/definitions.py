"""RabbitMQ's definitions JSON: export a broker's users, vhosts, permissions, exchanges, queues and bindings, and
import them.

The format is what ``rabbitmqctl export_definitions`` (3.10) writes, so a file
exported from RabbitMQ imports here and the other way round: users carry their
``rabbit_password_hashing_sha256`` hash (tags as a list, or the older
comma-separated string on import); exchanges, queues and bindings carry vhost,
name, type, durable, auto_delete, internal and arguments; policies vhost, name,
pattern, apply-to, definition and priority.  Built-in exchanges
(``''`` and ``amq.*``), exclusive queues and the default exchange's implicit
bindings are not exported, and ``amq.*`` exchanges in a file are skipped, as in
RabbitMQ.  Topic permissions are exported and imported (and enforced: core.access).
Operator policies are runtime parameters in RabbitMQ's definitions: ``parameters``
entries of component ``operator_policy`` (``value``: pattern, definition, priority,
apply-to; on import also as the ``[key, value]`` pairs rabbitmqctl 3.10 writes their
definition as).  Other parameters (federation, shovels …) and global parameters are
exported empty; on import they are reported as ignored.  A binding whose exchange or
queue is missing is skipped, as RabbitMQ does (its rabbitmqctl export leaves internal
exchanges out, not their bindings).  ``/`` without a description exports RabbitMQ's.

Import order is users, vhosts, permissions, policies, exchanges, queues, bindings
(RabbitMQ's: a queue is declared under its policy); what already exists is kept
(declared exchanges and queues are not redeclared) except a policy, which is
replaced, as ``rabbitmqctl set_policy`` would.
Anything that cannot be imported raises ``DefinitionsError`` naming the entry;
entries before it have been imported by then.

``open_offline_broker`` builds a broker over a data dir no broker is running on
(its store raises ``DataDirLocked`` otherwise), for the admin CLI.
"""

from __future__ import annotations

import datetime
import decimal
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from storage.factory import StoreSettings, open_store

from .. import __version__
from ..core.broker import Broker
from ..core.exchanges import Exchange, UnsupportedExchangeType, new_exchange
from ..core.policies import Policy
from ..core.policy_validation import PolicyError, parse_policy
from ..core.queue import Queue
from ..core.vhost import VirtualHost
from ..errors import AMQPError
from .access import (
    AccessHome,
    access_home,
    apply_to_broker,
    import_sections,
    import_topic_permissions,
    load_access,
    permission_to_json,
    save_access,
    topic_permissions_to_json,
    user_to_json,
)
from .errors import DefinitionsError
from .validation import json_lists, json_object, json_string

RABBIT_VERSION = "3.10.8"  # the definitions format written (RabbitMQ's version field)
UNSUPPORTED_SECTIONS = ("global_parameters",)
OPERATOR_POLICY = "operator_policy"  # the runtime parameter component of operator policies
DEFAULT_VHOST_DESCRIPTION = "Default virtual host"  # RabbitMQ's description of "/"


# ------------------------------------------------------------------ export


def export_from(broker: Broker) -> dict[str, Any]:
    """The broker's definitions as RabbitMQ exports them."""
    access = broker.access
    vhosts = broker.vhosts.values()
    exchanges = [_exchange_json(vhost, exchange) for vhost in vhosts for exchange in _exported_exchanges(vhost)]
    queues = [
        _queue_json(vhost, queue)
        for vhost in vhosts
        for queue in vhost.queues.values()
        if queue.exclusive_owner is None
    ]
    bindings = [binding for vhost in vhosts for binding in _exported_bindings(vhost)]
    return {
        "rabbit_version": RABBIT_VERSION,
        "rabbitmq_version": RABBIT_VERSION,
        "product_name": "amqp-server",
        "product_version": __version__,
        "users": [{**user_to_json(user), "limits": {}} for user in access.users.values()],
        "vhosts": [
            {"name": name, "limits": [], "metadata": _vhost_metadata(access.vhost_metadata.get(name, {}), name)}
            for name in broker.vhosts
        ],
        "permissions": [
            permission_to_json(user, vhost, permission) for (user, vhost), permission in access.permissions.items()
        ],
        "topic_permissions": topic_permissions_to_json(access),
        "parameters": [_operator_policy_json(p) for vhost in vhosts for p in vhost.policies.listing(operator=True)],
        "global_parameters": [],
        "policies": [policy.to_json() for vhost in vhosts for policy in vhost.policies.listing()],
        "queues": queues,
        "exchanges": exchanges,
        "bindings": bindings,
    }


def _vhost_metadata(metadata: dict[str, Any], name: str) -> dict[str, Any]:
    """A vhost's description and tags as RabbitMQ exports them; ``/`` unset is RabbitMQ's "Default virtual host"
    (as the HTTP API lists it), so an import into RabbitMQ does not blank its own description of ``/``."""
    default = DEFAULT_VHOST_DESCRIPTION if name == "/" else ""
    return {"description": default, "tags": [], **metadata}


def _exported_exchanges(vhost: VirtualHost) -> Iterator[Exchange]:
    """The exchanges a definitions file lists: not the default exchange, nor the ``amq.*`` built-ins."""
    return (e for e in vhost.exchanges.values() if e.name and not e.name.startswith("amq."))


def _exchange_json(vhost: VirtualHost, exchange: Exchange) -> dict[str, Any]:
    return {
        "name": exchange.name,
        "vhost": vhost.name,
        "type": exchange.type_name,
        "durable": exchange.durable,
        "auto_delete": exchange.auto_delete,
        "internal": exchange.internal,
        "arguments": _json_table(exchange.arguments),
    }


def _queue_json(vhost: VirtualHost, queue: Queue) -> dict[str, Any]:
    return {
        "name": queue.name,
        "vhost": vhost.name,
        "durable": queue.durable,
        "auto_delete": queue.auto_delete,
        "arguments": _json_table(queue.arguments),
        "type": queue.options.queue_type,
    }


def _exported_bindings(vhost: VirtualHost) -> Iterator[dict[str, Any]]:
    """The bindings of ``vhost`` but those of the default exchange (implicit) and of exclusive queues."""
    for exchange in vhost.exchanges.values():
        if not exchange.name:
            continue  # the default exchange's bindings are implicit
        for destination, routing_key, arguments in exchange.bindings.values():
            if getattr(destination, "exclusive_owner", None) is None:
                yield {
                    "source": exchange.name,
                    "vhost": vhost.name,
                    "destination": destination.name,
                    "destination_type": destination.kind,
                    "routing_key": routing_key,
                    "arguments": _json_table(arguments),
                }


def _json_table(table: dict[str, Any]) -> dict[str, Any]:
    return {key: _json_value(value) for key, value in table.items()}


def _json_value(value: Any) -> Any:
    """An AMQP table value as JSON (RabbitMQ's management JSON does the same for bytes and timestamps)."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, dict):
        return _json_table(value)
    if isinstance(value, (list, tuple)):
        return [_json_value(item) for item in value]
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, datetime.datetime):
        return int(value.timestamp())
    return value


# ------------------------------------------------------------------ import


def import_into(broker: Broker, data: Any) -> dict[str, int]:
    """Import RabbitMQ definitions into ``broker``; returns counts of what was created, and of ignored sections."""
    if not isinstance(data, dict):
        raise DefinitionsError("definitions must be a JSON object")
    sections = ("users", "vhosts", "permissions", "topic_permissions", "policies", "parameters")
    json_lists(data, (*sections, "exchanges", "queues", "bindings", *UNSUPPORTED_SECTIONS))
    counts = {
        **import_sections(data, broker.access, broker.vhosts, broker.add_vhost),
        **dict.fromkeys(("policies", "exchanges", "queues", "bindings"), 0),
    }
    if data.get("topic_permissions"):
        counts["topic_permissions"] = import_topic_permissions(data, broker.access, broker.vhosts)
    for i, item in enumerate(data.get("policies", [])):
        counts["policies"] += _import_policy(broker, item, f"policies[{i}]")
    counts.update(_import_parameters(broker, data.get("parameters", [])))
    for i, item in enumerate(data.get("exchanges", [])):
        counts["exchanges"] += _import_exchange(broker, item, f"exchanges[{i}]")
    for i, item in enumerate(data.get("queues", [])):
        counts["queues"] += _import_queue(broker, item, f"queues[{i}]")
    for i, item in enumerate(data.get("bindings", [])):
        counts["bindings"] += _import_binding(broker, item, f"bindings[{i}]")
    for section in UNSUPPORTED_SECTIONS:
        if data.get(section):
            counts[f"ignored {section}"] = len(data[section])
    return counts


def import_file(broker: Broker, path: Path) -> dict[str, int]:
    """Import a definitions file (``--load-definitions``); ``DefinitionsError`` names the file on failure."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as error:
        raise DefinitionsError(f"cannot read {path}: {error.strerror}") from None
    except ValueError as error:
        raise DefinitionsError(f"{path} is not valid JSON: {error}") from None
    try:
        return import_into(broker, data)
    except DefinitionsError as error:
        raise DefinitionsError(f"{path}: {error}") from None


def _entry(item: Any, where: str, strings: tuple[str, ...], flags: tuple[str, ...] = ()) -> dict[str, Any]:
    item = json_object(item, where)
    for key in strings:
        json_string(item, key, where, allow_empty=True)
    for key in flags:
        if not isinstance(item.get(key, False), bool):
            raise DefinitionsError(f"{where}: '{key}' must be true or false")
    if not isinstance(item.get("arguments", {}), dict):
        raise DefinitionsError(f"{where}: 'arguments' must be an object")
    return item


def _vhost(broker: Broker, item: dict[str, Any], where: str) -> VirtualHost:
    vhost = broker.vhosts.get(item["vhost"])
    if vhost is None:
        raise DefinitionsError(f"{where}: no vhost '{item['vhost']}'")
    return vhost


def _import_policy(broker: Broker, item: Any, where: str, body: Any = None, operator: bool = False) -> bool:
    """Set (or replace) a policy, with the same validation as the HTTP API's (``body``: the policy's fields,
    if not in ``item`` itself)."""
    item = json_object(item, where)
    json_string(item, "vhost", where)
    json_string(item, "name", where)
    vhost = _vhost(broker, item, where)
    kind = "operator policy" if operator else "policy"
    try:
        policy = parse_policy(vhost.name, item["name"], item if body is None else body, operator)
    except PolicyError as error:
        raise DefinitionsError(f"{where}: {kind} '{item['name']}': {error.reason.strip()}") from None
    vhost.set_policy(policy)
    return True


def _import_parameters(broker: Broker, items: list[Any]) -> dict[str, int]:
    """Operator policies (component ``operator_policy``) are imported; other parameters counted as ignored."""
    counts = {"operator policies": 0}
    for i, item in enumerate(items):
        if isinstance(item, dict) and item.get("component") == OPERATOR_POLICY:
            body = _pairs_as_object(json_object(item.get("value"), f"parameters[{i}].value"))
            counts["operator policies"] += _import_policy(broker, item, f"parameters[{i}]", body, operator=True)
        else:
            counts["ignored parameters"] = counts.get("ignored parameters", 0) + 1
    return counts


def _pairs_as_object(body: dict[str, Any]) -> dict[str, Any]:
    """An operator policy's value with its ``definition`` as an object: ``rabbitmqctl export_definitions``
    (3.10.8, captured in interop_tests/management/rabbitmqctl_definitions.json) writes it as a list of
    ``[key, value]`` pairs, which RabbitMQ's own import then refuses; we take it, so that such a file moves."""
    definition = body.get("definition")
    if isinstance(definition, list) and all(
        isinstance(pair, list) and len(pair) == 2 and isinstance(pair[0], str) for pair in definition
    ):
        return {**body, "definition": dict(definition)}
    return body


def _operator_policy_json(policy: Policy) -> dict[str, Any]:
    """An operator policy as RabbitMQ's definitions hold it: a runtime parameter."""
    fields = policy.to_json()
    value = {key: fields[key] for key in ("pattern", "definition", "priority", "apply-to")}
    return {"value": value, "vhost": policy.vhost, "component": OPERATOR_POLICY, "name": policy.name}


def _import_exchange(broker: Broker, item: Any, where: str) -> bool:
    item = _entry(item, where, ("vhost", "name", "type"), ("durable", "auto_delete", "internal"))
    vhost, name = _vhost(broker, item, where), item["name"]
    if not name or name.startswith("amq.") or name in vhost.exchanges:
        return False
    try:
        exchange = new_exchange(
            vhost,
            item["type"],
            name,
            item.get("durable", False),
            item.get("auto_delete", False),
            item.get("internal", False),
            item.get("arguments", {}),
        )
    except UnsupportedExchangeType:
        raise DefinitionsError(f"{where}: exchange '{name}': unsupported type '{item['type']}'") from None
    except AMQPError as error:  # an x-delayed-message without a usable x-delayed-type (core.delayed)
        raise DefinitionsError(f"{where}: exchange '{name}': {error.reply_text}") from None
    vhost.add_exchange(exchange)
    return True


def _import_queue(broker: Broker, item: Any, where: str) -> bool:
    item = _entry(item, where, ("vhost", "name"), ("durable", "auto_delete"))
    vhost, name = _vhost(broker, item, where), item["name"]
    if name in vhost.queues:
        return False
    durable, auto_delete = item.get("durable", False), item.get("auto_delete", False)
    arguments = dict(item.get("arguments", {}))
    queue_type = item.get("type", "classic")
    if queue_type != "classic" and "x-queue-type" not in arguments:
        arguments["x-queue-type"] = queue_type
    try:
        queue = Queue.with_arguments(vhost, name, durable, auto_delete, arguments)
    except AMQPError as error:
        raise DefinitionsError(f"{where}: {error.reply_text}") from None
    vhost.add_queue(queue)
    return True


def _import_binding(broker: Broker, item: Any, where: str) -> bool:
    item = _entry(item, where, ("vhost", "source", "destination", "destination_type", "routing_key"))
    vhost = _vhost(broker, item, where)
    if not item["source"]:
        return False  # the default exchange's bindings are implicit
    kind = item["destination_type"]
    if kind not in ("queue", "exchange"):
        raise DefinitionsError(f"{where}: destination_type must be 'queue' or 'exchange', not '{kind}'")
    source = vhost.exchanges.get(item["source"])
    destination = (vhost.queues if kind == "queue" else vhost.exchanges).get(item["destination"])
    if source is None or destination is None:
        # RabbitMQ skips such a binding too (204): its rabbitmqctl export leaves internal exchanges out but
        # keeps their bindings, and a non-durable queue is gone from an export taken after a restart
        return False
    arguments = dict(item.get("arguments", {}))
    try:
        source.check_binding(arguments)
    except AMQPError as error:
        raise DefinitionsError(f"{where}: {error.reply_text}") from None
    vhost.bind(source, destination, item["routing_key"], arguments)
    return True


# ------------------------------------------------------------------ vhosts and the offline broker


def delete_vhost(broker: Broker, name: str) -> None:
    """Delete a vhost with its queues (and their messages) and exchanges, from memory and the store.

    Its connections must have been closed first.
    """
    vhost = broker.vhosts.pop(name, None)
    if vhost is None:
        return
    for queue in list(vhost.queues.values()):
        vhost.delete_queue(queue)
    for operator in (False, True):
        for policy in vhost.policies.listing(operator):
            vhost.clear_policy(policy.name, operator)
    for exchange in list(vhost.exchanges.values()):
        if exchange.name and not exchange.name.startswith("amq.") and exchange.name in vhost.exchanges:
            vhost.delete_exchange(exchange)


@contextmanager
def open_offline_broker(
    settings: StoreSettings | Path, loopback_users: tuple[str, ...] = ("guest",)
) -> Iterator[Broker]:
    """A broker over the store (``settings``: the ``Config`` or a data dir) and its access.json (or the
    store's document), for editing definitions while no broker runs.

    Raises ``storage.fileio.DataDirLocked`` when a broker is running on
    the data dir.  The store is synced and closed on the way out; saving access
    changes is the caller's job (``save_access``).
    """
    store = open_store(settings)
    try:
        data_dir = settings if isinstance(settings, Path) else settings.data_dir
        access, vhosts = load_access(access_home(data_dir, store), loopback_users)
        broker = Broker(store=store, access=access)
        apply_to_broker(broker, access, vhosts)
        yield broker
    finally:
        store.close()


def save_broker_access(home: AccessHome, broker: Broker) -> None:
    """Write the broker's users, vhosts and permissions to ``access.json`` or its store (after an import)."""
    save_access(home, broker.access, list(broker.vhosts))
