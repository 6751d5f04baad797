"""The state a user moving to RabbitMQ would have, built through the management API on either broker; the
capture of RabbitMQ's exports of it; and the comparison of two definitions exports, entry by entry.

``build(api)`` makes two vhosts (``mig-a`` with a description and tags, ``mig-b``), users with tags and
passwords, permissions, topic permissions, policies and an operator policy, durable exchanges of every type
(one internal, one with an alternate exchange), exchange-to-exchange and header-argument bindings, and
classic and quorum queues with TTL, dead-letter, length and expiry arguments.  It is what
``test_migrate_to_rabbitmq`` exports from our broker and imports into RabbitMQ.

Capture RabbitMQ 3.10's exports of the same state, ``GET /api/definitions`` into ``rabbitmq_definitions.json``
and ``rabbitmqctl export_definitions`` into ``rabbitmqctl_definitions.json`` (from the repository root)::

    REF_MGMT_PORT=26111 ../shared/tools/rabbitmq-ref.sh start 26110
    .venv/bin/python -m interop_tests.management.migration_state http://guest:guest@127.0.0.1:26111 \\
        ../shared/tools/rabbitmq-ref.sh ctl 26110

(the arguments after the URL are the command that runs that node's rabbitmqctl).
"""

from __future__ import annotations

import fnmatch
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from interop_tests.management_client import Api, q

CAPTURE = Path(__file__).parent / "rabbitmq_definitions.json"  # GET /api/definitions
CTL_CAPTURE = Path(__file__).parent / "rabbitmqctl_definitions.json"  # rabbitmqctl export_definitions
VHOSTS = {"mig-a": {"description": "orders", "tags": ["eu", "prod"]}, "mig-b": {"description": "", "tags": []}}
USERS = {  # name -> (password, tags)
    "mig-admin": ("mig-admin-secret", ["administrator"]),
    "mig-app": ("mig-app-secret ünïcode", ["management", "monitoring"]),
    "mig-policy": ("mig-policy-secret", ["policymaker"]),
    "mig-plain": ("mig-plain-secret", []),
}
PERMISSIONS = [  # (user, vhost, configure, write, read)
    ("mig-admin", "mig-a", ".*", ".*", ".*"),
    ("mig-admin", "mig-b", ".*", ".*", ".*"),
    ("mig-app", "mig-a", "^mig-app-.*", "^(mig-.*|amq\\.topic)$", ".*"),
    ("mig-policy", "mig-b", ".*", "", ".*"),
    ("mig-plain", "mig-b", "", "^mig-b-in$", "^mig-b-out$"),
    ("guest", "mig-a", ".*", ".*", ".*"),
    ("guest", "mig-b", ".*", ".*", ".*"),
]
TOPIC_PERMISSIONS = [  # (user, vhost, exchange, write, read)
    ("mig-app", "mig-a", "mig-topic", "^(orders|audit)\\.", ".*"),
    ("mig-plain", "mig-b", "amq.topic", "^plain\\..*", "^plain\\..*"),
]
POLICIES = {  # (vhost, name) -> body
    ("mig-a", "mig-ttl"): {
        "pattern": "^mig-ttl-",
        "apply-to": "queues",
        "definition": {"message-ttl": 60000, "max-length": 1000, "overflow": "reject-publish"},
        "priority": 1,
    },
    ("mig-a", "mig-ae"): {
        "pattern": "^mig-direct$",
        "apply-to": "exchanges",
        "definition": {"alternate-exchange": "mig-fanout"},
        "priority": 0,
    },
    ("mig-b", "mig-dlx"): {
        "pattern": ".*",
        "apply-to": "all",
        "definition": {"dead-letter-exchange": "mig-b-dlx", "dead-letter-routing-key": "dead"},
        "priority": 5,
    },
}
OPERATOR_POLICIES = {
    ("mig-a", "mig-cap"): {
        "pattern": ".*",
        "apply-to": "queues",
        "definition": {"max-length-bytes": 1048576, "expires": 3600000},
        "priority": 2,
    },
}
EXCHANGES = {  # (vhost, name) -> body
    ("mig-a", "mig-direct"): {"type": "direct", "durable": True},
    ("mig-a", "mig-fanout"): {"type": "fanout", "durable": True},
    ("mig-a", "mig-topic"): {"type": "topic", "durable": True},
    ("mig-a", "mig-headers"): {"type": "headers", "durable": True},
    ("mig-a", "mig-internal"): {"type": "topic", "durable": True, "internal": True},
    ("mig-a", "mig-with-ae"): {"type": "direct", "durable": True, "arguments": {"alternate-exchange": "mig-fanout"}},
    ("mig-a", "mig-autodelete"): {"type": "fanout", "durable": True, "auto_delete": True},
    ("mig-b", "mig-b-dlx"): {"type": "direct", "durable": True},
}
QUEUES = {  # (vhost, name) -> body
    ("mig-a", "mig-ttl-orders"): {"durable": True, "arguments": {"x-message-ttl": 30000}},
    ("mig-a", "mig-classic"): {
        "durable": True,
        "arguments": {
            "x-dead-letter-exchange": "mig-fanout",
            "x-dead-letter-routing-key": "dead",
            "x-max-length": 500,
            "x-overflow": "drop-head",
            "x-max-priority": 5,
            "x-queue-mode": "lazy",
        },
    },
    ("mig-a", "mig-expiring"): {"durable": True, "arguments": {"x-expires": 600000, "x-single-active-consumer": True}},
    ("mig-a", "mig-quorum"): {
        "durable": True,
        "arguments": {"x-queue-type": "quorum", "x-delivery-limit": 5, "x-dead-letter-exchange": "mig-fanout"},
    },
    ("mig-a", "mig-transient"): {"durable": False, "auto_delete": False},
    ("mig-b", "mig-b-in"): {"durable": True},
    ("mig-b", "mig-b-dead"): {"durable": True, "arguments": {"x-queue-type": "quorum"}},
}
BINDINGS = [  # (vhost, source, destination kind, destination, routing key, arguments)
    ("mig-a", "mig-direct", "q", "mig-classic", "orders", {}),
    ("mig-a", "mig-fanout", "q", "mig-quorum", "", {}),
    ("mig-a", "mig-topic", "q", "mig-ttl-orders", "orders.#", {}),
    ("mig-a", "mig-topic", "e", "mig-fanout", "audit.*", {}),
    ("mig-a", "mig-headers", "q", "mig-expiring", "", {"x-match": "all", "region": "eu", "level": 3}),
    ("mig-a", "mig-internal", "e", "mig-headers", "#", {}),
    ("mig-a", "amq.topic", "q", "mig-classic", "legacy.*", {}),
    ("mig-b", "mig-b-dlx", "q", "mig-b-dead", "dead", {}),
    ("mig-b", "amq.direct", "q", "mig-b-in", "in", {}),
]


# The fields naming an entry of each definitions section (arguments compared as JSON text).
IDENTITY = {
    "users": ("name",),
    "vhosts": ("name",),
    "permissions": ("user", "vhost"),
    "topic_permissions": ("user", "vhost", "exchange"),
    "parameters": ("vhost", "component", "name"),
    "global_parameters": ("name",),
    "policies": ("vhost", "name"),
    "exchanges": ("vhost", "name"),
    "queues": ("vhost", "name"),
    "bindings": ("vhost", "source", "destination_type", "destination", "routing_key", "arguments"),
}


def entries(exported: dict[str, Any], section: str) -> dict[str, dict[str, Any]]:
    """A section's entries by their identity (``vhost/name`` …)."""
    return {
        "/".join(
            json.dumps(e.get(k), sort_keys=True) if k == "arguments" else str(e.get(k)) for k in IDENTITY[section]
        ): e
        for e in exported.get(section, [])
    }


def export_differences(ours: dict[str, Any], theirs: dict[str, Any]) -> list[str]:
    """Where our export differs from RabbitMQ's: top-level keys, entries, an entry's keys and values, each as
    ``section:identity:key`` (``-``: the entry itself)."""
    found = [f"top:-:{key}" for key in set(ours) ^ set(theirs)]
    found += [
        f"top:-:{key}"
        for key in set(ours) & set(theirs)
        if not isinstance(ours[key], list) and ours[key] != theirs[key]
    ]
    for section in IDENTITY:
        mine, rabbit = entries(ours, section), entries(theirs, section)
        found += [f"{section}:{name}:-" for name in set(mine) ^ set(rabbit)]
        for name in set(mine) & set(rabbit):
            keys = set(mine[name]) | set(rabbit[name])
            found += [
                f"{section}:{name}:{k}" for k in keys if mine[name].get(k, KeyError) != rabbit[name].get(k, KeyError)
            ]
    return sorted(found)


def unexplained(differences: list[str], allowed: dict[str, str]) -> list[str]:
    """The differences no fnmatch pattern of ``allowed`` (pattern -> why it may differ) covers."""
    return [d for d in differences if not any(fnmatch.fnmatchcase(d, pattern) for pattern in allowed)]


def unused(differences: list[str], allowed: dict[str, str]) -> list[str]:
    """The patterns of ``allowed`` that cover none of the differences (stale reasons)."""
    return [p for p in allowed if not any(fnmatch.fnmatchcase(d, p) for d in differences)]


def build(api: Api) -> None:
    """Make the state on the broker behind ``api`` (the guest administrator's); it must not be there yet."""
    for vhost, metadata in VHOSTS.items():
        api.ok("PUT", f"/api/vhosts/{q(vhost)}", metadata)
    for user, (password, tags) in USERS.items():
        api.ok("PUT", f"/api/users/{q(user)}", {"password": password, "tags": ",".join(tags)})
    for user, vhost, configure, write, read in PERMISSIONS:
        api.ok("PUT", f"/api/permissions/{q(vhost)}/{q(user)}", {"configure": configure, "write": write, "read": read})
    for user, vhost, exchange, write, read in TOPIC_PERMISSIONS:
        api.ok(
            "PUT", f"/api/topic-permissions/{q(vhost)}/{q(user)}", {"exchange": exchange, "write": write, "read": read}
        )
    for kind, policies in (("policies", POLICIES), ("operator-policies", OPERATOR_POLICIES)):
        for (vhost, name), body in policies.items():
            api.ok("PUT", f"/api/{kind}/{q(vhost)}/{q(name)}", body)
    for (vhost, name), body in EXCHANGES.items():
        api.ok("PUT", f"/api/exchanges/{q(vhost)}/{q(name)}", body)
    for (vhost, name), body in QUEUES.items():
        api.ok("PUT", f"/api/queues/{q(vhost)}/{q(name)}", body)
    for vhost, source, kind, destination, key, arguments in BINDINGS:
        path = f"/api/bindings/{q(vhost)}/e/{q(source)}/{kind}/{q(destination)}"
        api.ok("POST", path, {"routing_key": key, "arguments": arguments})


def remove(api: Api) -> None:
    """Drop the state (vhosts and users) if it is there."""
    for vhost in VHOSTS:
        api.delete(f"/api/vhosts/{q(vhost)}")
    for user in USERS:
        api.delete(f"/api/users/{q(user)}")


def capture(http_url: str, rabbitmqctl: list[str]) -> None:
    """RabbitMQ's two exports of the state, built afresh, written to ``CAPTURE`` and ``CTL_CAPTURE``."""
    api = Api(http_url)
    remove(api)
    build(api)
    _write(CAPTURE, api.ok("GET", "/api/definitions"))
    ctl = [*rabbitmqctl, "-q", "export_definitions", "-"]
    _write(CTL_CAPTURE, json.loads(subprocess.run(ctl, check=True, capture_output=True, text=True).stdout))


def _write(path: Path, exported: dict[str, Any]) -> None:
    path.write_text(json.dumps(exported, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    capture(sys.argv[1], sys.argv[2:])
