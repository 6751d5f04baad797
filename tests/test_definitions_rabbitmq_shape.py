"""Our definitions export has RabbitMQ 3.10's shape, and RabbitMQ 3.10's exports import here unchanged.

The references are RabbitMQ 3.10.8's two exports of ``interop_tests/management/migration_state``'s state:
``GET /api/definitions`` (``rabbitmq_definitions.json``) and ``rabbitmqctl export_definitions``
(``rabbitmqctl_definitions.json``), captured by that module.  They differ from each other (the CLI's has
queues' ``type`` and vhosts' ``limits``/``metadata``, the HTTP API's ``product_*`` and exchanges' ``internal``),
so ours writes the union, and each of RabbitMQ's imports takes it (``interop_tests/test_migrate_to_rabbitmq``
checks that against a live RabbitMQ).  Password hashes are checked the way RabbitMQ checks them
(``rabbit_password_hashing_sha256``: base64 of a 4-byte salt and SHA-256 of salt + UTF-8 password).
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from amqp_server.core.broker import Broker
from amqp_server.ops.definitions import export_from, import_into
from interop_tests.management import migration_state as state

from .frames import FakeClock

MANAGEMENT = Path(__file__).parents[1] / "interop_tests" / "management"
HTTP_EXPORT = json.loads((MANAGEMENT / "rabbitmq_definitions.json").read_text(encoding="utf-8"))
CTL_EXPORT = json.loads((MANAGEMENT / "rabbitmqctl_definitions.json").read_text(encoding="utf-8"))
PASSWORDS = {"guest": "guest", **{user: password for user, (password, _) in state.USERS.items()}}

# The exported shape, pinned: top-level keys, and every entry's keys per section.
TOP_KEYS = {
    "rabbit_version",
    "rabbitmq_version",
    "product_name",
    "product_version",
    "users",
    "vhosts",
    "permissions",
    "topic_permissions",
    "parameters",
    "global_parameters",
    "policies",
    "queues",
    "exchanges",
    "bindings",
}
ENTRY_KEYS = {
    "users": {"name", "password_hash", "hashing_algorithm", "tags", "limits"},
    "vhosts": {"name", "limits", "metadata"},
    "permissions": {"user", "vhost", "configure", "write", "read"},
    "topic_permissions": {"user", "vhost", "exchange", "write", "read"},
    "parameters": {"vhost", "component", "name", "value"},
    "policies": {"vhost", "name", "pattern", "apply-to", "definition", "priority"},
    "queues": {"name", "vhost", "durable", "auto_delete", "arguments", "type"},
    "exchanges": {"name", "vhost", "type", "durable", "auto_delete", "internal", "arguments"},
    "bindings": {"source", "vhost", "destination", "destination_type", "routing_key", "arguments"},
}
SPECIFIC = "the other RabbitMQ export has it, and both of RabbitMQ's imports take it"
# Exporting here what was imported from RabbitMQ's export: where it differs, and why.
AFTER_IMPORT = {
    "http": {
        "top:-:product_*": "we say what we are",
        "global_parameters:internal_cluster_id:-": "RabbitMQ's cluster id, its own; the import ignores it",
        "queues:*:type": SPECIFIC,
        "vhosts:*:limits": SPECIFIC,
        "vhosts:*:metadata": SPECIFIC,
    },
    "ctl": {
        "top:-:product_*": "RabbitMQ's HTTP export has them; we say what we are",
        "exchanges:*:internal": "rabbitmqctl 3.10 leaves it out (and internal exchanges); the HTTP export has it",
        "bindings:mig-a/mig-internal/*:-": "from an internal exchange rabbitmqctl did not export: skipped, as RabbitMQ",
        "parameters:*/operator_policy/*:value": "rabbitmqctl writes the definition as [key, value] pairs",
    },
}


def new_broker() -> Broker:
    return Broker(clock=FakeClock())


def rabbitmq_accepts(password: str, password_hash: str) -> bool:
    """RabbitMQ's check, written from its format: salt = the first 4 bytes; the rest = sha256(salt + password)."""
    raw = base64.b64decode(password_hash)
    return len(raw) == 36 and hashlib.sha256(raw[:4] + password.encode("utf-8")).digest() == raw[4:]


def our_export_of_the_state() -> dict[str, Any]:
    """Our export after importing RabbitMQ's HTTP export with the hashes replaced by new passwords of ours."""
    broker = new_broker()
    import_into(broker, copy.deepcopy(HTTP_EXPORT))
    for user in list(broker.access.users.values()):
        broker.access.add_user(user.name, PASSWORDS[user.name], tags=list(user.tags))
    return export_from(broker)


@pytest.mark.parametrize("form, reference", [("http", HTTP_EXPORT), ("ctl", CTL_EXPORT)])
def test_rabbitmqs_export_imports_and_exports_back_the_same(form: str, reference: dict[str, Any]) -> None:
    broker = new_broker()
    import_into(broker, copy.deepcopy(reference))
    differences = state.export_differences(export_from(broker), reference)
    assert state.unexplained(differences, AFTER_IMPORT[form]) == []
    assert state.unused(differences, AFTER_IMPORT[form]) == []


def test_the_exported_shape_is_pinned() -> None:
    exported = our_export_of_the_state()
    assert set(exported) == TOP_KEYS
    for section, keys in ENTRY_KEYS.items():
        assert exported[section], section
        assert [set(entry) for entry in exported[section]] == [keys] * len(exported[section]), section


@pytest.mark.parametrize("reference", [HTTP_EXPORT, CTL_EXPORT], ids=["http", "ctl"])
def test_the_pinned_shape_has_every_key_and_type_rabbitmq_writes(reference: dict[str, Any]) -> None:
    exported = our_export_of_the_state()
    assert set(reference) <= TOP_KEYS
    for section, keys in ENTRY_KEYS.items():
        theirs = {(key, type(value).__name__) for entry in reference[section] for key, value in entry.items()}
        ours = {(key, type(value).__name__) for entry in exported[section] for key, value in entry.items()}
        assert {key for key, _ in theirs} <= keys, section
        if section != "parameters":  # rabbitmqctl's pairs: test_rabbitmqs_export_imports_and_exports_back_the_same
            assert {pair for pair in ours if pair[0] in {key for key, _ in theirs}} == theirs, section


def test_rabbitmqs_hashes_are_what_we_take_them_for() -> None:
    """The check above is RabbitMQ's: it accepts the hashes RabbitMQ made of the state's passwords."""
    for reference in (HTTP_EXPORT, CTL_EXPORT):
        for user in reference["users"]:
            assert user["hashing_algorithm"] == "rabbit_password_hashing_sha256"
            assert rabbitmq_accepts(PASSWORDS[user["name"]], user["password_hash"]), user["name"]
            assert not rabbitmq_accepts(PASSWORDS[user["name"]] + "x", user["password_hash"])


def test_our_hashes_verify_the_way_rabbitmq_verifies_them() -> None:
    users = our_export_of_the_state()["users"]
    assert {user["name"] for user in users} == set(PASSWORDS)
    for user in users:
        assert user["hashing_algorithm"] == "rabbit_password_hashing_sha256"
        assert (
            user["password_hash"] != next(u for u in HTTP_EXPORT["users"] if u["name"] == user["name"])["password_hash"]
        )
        assert rabbitmq_accepts(PASSWORDS[user["name"]], user["password_hash"]), user["name"]
        assert not rabbitmq_accepts(PASSWORDS[user["name"]] + "x", user["password_hash"])


def test_imported_rabbitmq_hashes_are_exported_unchanged() -> None:
    broker = new_broker()
    import_into(broker, copy.deepcopy(HTTP_EXPORT))
    assert sorted(export_from(broker)["users"], key=json.dumps) == sorted(HTTP_EXPORT["users"], key=json.dumps)


def test_a_binding_of_a_missing_exchange_or_queue_is_skipped_as_rabbitmq_does() -> None:
    """RabbitMQ answers 204 and binds nothing (probed on 3.10.8); its CLI export needs it (internal exchanges)."""
    binding = {"vhost": "/", "routing_key": "k", "arguments": {}, "destination_type": "queue"}
    data = {
        "queues": [{"name": "q", "vhost": "/", "durable": True, "auto_delete": False, "arguments": {}}],
        "bindings": [
            {**binding, "source": "no-such-x", "destination": "q"},
            {**binding, "source": "amq.direct", "destination": "no-such-q"},
        ],
    }
    broker = new_broker()
    assert import_into(broker, data)["bindings"] == 0
    assert all(not exchange.bindings for exchange in broker.vhosts["/"].exchanges.values())


def test_rabbitmqctls_operator_policy_pairs_import_as_the_definition() -> None:
    broker = new_broker()
    import_into(broker, copy.deepcopy(CTL_EXPORT))
    (parameter,) = export_from(broker)["parameters"]
    assert parameter["value"]["definition"] == {"expires": 3600000, "max-length-bytes": 1048576}
