"""RabbitMQ definitions JSON (export, import, round trip, a RabbitMQ 3.10 export) and access.json, the data dir's
store of users, vhosts and permissions (atomic saves, the default setup, reload detection).

The RabbitMQ sample below has the shape ``rabbitmqctl export_definitions`` wrote
on RabbitMQ 3.10.8; the hashes of ``defprobe_alice`` (password ``s3cret-pw``)
and ``guest`` (``guest``) were made by that RabbitMQ, so importing them shows
that its users can log in here unchanged.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from pamqp import commands

from amqp_server.core.access import AccessControl, Permission, hash_password
from amqp_server.core.broker import Broker
from amqp_server.ops.access import ACCESS_FILE, apply_to_broker, edit_access, load_access, save_access
from amqp_server.ops.definitions import delete_vhost, export_from, import_file, import_into, open_offline_broker
from amqp_server.ops.errors import DefinitionsError

from .frames import PROTOCOL_HEADER, FakeClock, Peer, open_peer, publish

RABBITMQ_EXPORT: dict[str, Any] = {
    "rabbit_version": "3.10.8",
    "rabbitmq_version": "3.10.8",
    "product_name": "RabbitMQ",
    "product_version": "3.10.8",
    "users": [
        {
            "name": "defprobe_alice",
            "password_hash": "sbIIFBahv37QRYPToQigkn2XwLW+DYwsz3+oz9onAqIMaBwN",
            "hashing_algorithm": "rabbit_password_hashing_sha256",
            "tags": ["monitoring", "management"],
            "limits": {},
        },
        {
            "name": "guest",
            "password_hash": "cxIpn2JPglMk/RNTRRS763NFdiDVAECu2JEBOFOPzAoBUJ6I",
            "hashing_algorithm": "rabbit_password_hashing_sha256",
            "tags": ["administrator"],
            "limits": {},
        },
    ],
    "vhosts": [
        {"name": "defprobe_vh", "limits": [], "metadata": {"description": "", "tags": ""}},
        {"name": "/", "limits": [], "metadata": {"description": "Default virtual host", "tags": []}},
    ],
    "permissions": [
        {
            "user": "defprobe_alice",
            "vhost": "defprobe_vh",
            "configure": "^alice-.*",
            "write": "^(alice-.*|amq\\.topic)$",
            "read": ".*",
        },
        {"user": "guest", "vhost": "/", "configure": ".*", "write": ".*", "read": ".*"},
    ],
    "topic_permissions": [],
    "parameters": [],
    "global_parameters": [{"name": "internal_cluster_id", "value": "rabbitmq-cluster-id-0x9Wk8x2mIH5_XyUeMQ6Jg"}],
    "policies": [],
    "queues": [
        {
            "name": "orders",
            "vhost": "/",
            "durable": True,
            "auto_delete": False,
            "type": "classic",
            "arguments": {"x-dead-letter-exchange": "orders.dlx", "x-message-ttl": 60000},
        },
        {
            "name": "orders.dead",
            "vhost": "/",
            "durable": True,
            "auto_delete": False,
            "type": "classic",
            "arguments": {},
        },
        {
            "name": "payments",
            "vhost": "/",
            "durable": True,
            "auto_delete": False,
            "type": "quorum",
            "arguments": {"x-queue-type": "quorum"},
        },
        {
            "name": "alice-work",
            "vhost": "defprobe_vh",
            "durable": False,
            "auto_delete": False,
            "type": "classic",
            "arguments": {},
        },
    ],
    "exchanges": [
        {
            "name": "events",
            "vhost": "/",
            "type": "topic",
            "durable": True,
            "auto_delete": False,
            "internal": False,
            "arguments": {},
        },
        {
            "name": "orders.dlx",
            "vhost": "/",
            "type": "fanout",
            "durable": True,
            "auto_delete": False,
            "internal": False,
            "arguments": {},
        },
        {
            "name": "amq.rabbitmq.trace",
            "vhost": "/",
            "type": "topic",
            "durable": True,
            "auto_delete": False,
            "internal": True,
            "arguments": {},
        },
    ],
    "bindings": [
        {
            "source": "events",
            "vhost": "/",
            "destination": "orders",
            "destination_type": "queue",
            "routing_key": "orders.#",
            "arguments": {},
        },
        {
            "source": "orders.dlx",
            "vhost": "/",
            "destination": "orders.dead",
            "destination_type": "queue",
            "routing_key": "",
            "arguments": {},
        },
        {
            "source": "amq.topic",
            "vhost": "/",
            "destination": "events",
            "destination_type": "exchange",
            "routing_key": "#",
            "arguments": {},
        },
    ],
}


def new_broker() -> Broker:
    return Broker(clock=FakeClock())


def imported(data: dict[str, Any]) -> Broker:
    broker = new_broker()
    import_into(broker, copy.deepcopy(data))
    return broker


def login(broker: Broker, user: str, password: str, vhost: str = "/", peer: str = "127.0.0.1:5555") -> Any:
    """The broker's last reply to a PLAIN login and connection.open: OpenOk, or a Close."""
    client = Peer(broker, peer)
    client.send(PROTOCOL_HEADER)
    client.send_method(
        0,
        commands.Connection.StartOk(
            client_properties={"capabilities": {"authentication_failure_close": True}},
            mechanism="PLAIN",
            response=f"\0{user}\0{password}",
        ),
    )
    client.send_method(0, commands.Connection.TuneOk(channel_max=2047, frame_max=131072, heartbeat=0))
    client.send_method(0, commands.Connection.Open(virtual_host=vhost))
    return client.methods()[-1][1]


def get_body(peer: Peer, queue: str) -> bytes | None:
    peer.send_method(1, commands.Basic.Get(queue=queue, no_ack=True))
    frames = peer.frames()
    if isinstance(frames[0][1], commands.Basic.GetEmpty):
        return None
    return frames[-1][1].value


def without_order(definitions: dict[str, Any]) -> dict[str, Any]:
    return {
        key: sorted(value, key=json.dumps) if isinstance(value, list) else value for key, value in definitions.items()
    }


# ------------------------------------------------------------------ importing RabbitMQ's export


def test_rabbitmq_users_log_in_with_their_rabbitmq_hashes() -> None:
    broker = imported(RABBITMQ_EXPORT)
    assert isinstance(login(broker, "defprobe_alice", "s3cret-pw", "defprobe_vh"), commands.Connection.OpenOk)
    assert isinstance(login(broker, "guest", "guest"), commands.Connection.OpenOk)
    refused = login(broker, "defprobe_alice", "wrong", "defprobe_vh")
    assert isinstance(refused, commands.Connection.Close) and refused.reply_code == 403


def test_rabbitmq_permissions_and_tags_are_imported() -> None:
    access = imported(RABBITMQ_EXPORT).access
    assert access.users["defprobe_alice"].tags == ["monitoring", "management"]
    assert access.permissions[("defprobe_alice", "defprobe_vh")] == Permission(
        "^alice-.*", "^(alice-.*|amq\\.topic)$", ".*"
    )
    assert not access.may_open("defprobe_alice", "/")


def test_rabbitmq_user_is_refused_a_vhost_without_permissions() -> None:
    refused = login(imported(RABBITMQ_EXPORT), "defprobe_alice", "s3cret-pw", "/")
    assert (refused.reply_code, refused.reply_text) == (
        530,
        "NOT_ALLOWED - access to vhost '/' refused for user 'defprobe_alice'",
    )


def test_rabbitmq_topology_routes_as_declared() -> None:
    broker = imported(RABBITMQ_EXPORT)
    peer = open_peer(broker)
    peer.send(publish(1, "orders.new", b"via amq.topic and events", exchange="amq.topic"))
    assert get_body(peer, "orders") == b"via amq.topic and events"
    peer.send(publish(1, "anything", b"dead letter", exchange="orders.dlx"))
    assert get_body(peer, "orders.dead") == b"dead letter"


def test_rabbitmq_queue_arguments_and_types_are_kept() -> None:
    vhost = imported(RABBITMQ_EXPORT).vhosts["/"]
    assert vhost.queues["orders"].arguments == {"x-dead-letter-exchange": "orders.dlx", "x-message-ttl": 60000}
    assert vhost.queues["payments"].options.queue_type == "quorum"
    assert vhost.exchanges["events"].type_name == "topic"


def test_amq_exchanges_in_a_file_are_skipped() -> None:
    export = copy.deepcopy(RABBITMQ_EXPORT)
    for exchange in export["exchanges"]:
        if exchange["name"] == "amq.rabbitmq.trace":
            exchange.update(type="fanout", internal=False)  # the built-in stays what it is
    trace = imported(export).vhosts["/"].exchanges["amq.rabbitmq.trace"]
    assert (trace.type_name, trace.internal, trace.durable) == ("topic", True, True)


def test_import_counts_and_reports_ignored_sections() -> None:
    counts = import_into(new_broker(), copy.deepcopy(RABBITMQ_EXPORT))
    assert counts == {
        "users": 2,
        "vhosts": 1,
        "permissions": 2,
        "exchanges": 2,
        "queues": 4,
        "bindings": 3,
        "policies": 0,
        "operator policies": 0,
        "ignored global_parameters": 1,
    }


def test_tags_as_a_comma_separated_string() -> None:
    data = {"users": [{"name": "ops", "password_hash": hash_password("pw"), "tags": "administrator,monitoring"}]}
    assert imported(data).access.users["ops"].tags == ["administrator", "monitoring"]


def test_existing_queue_is_kept() -> None:
    broker = imported(RABBITMQ_EXPORT)
    peer = open_peer(broker)
    peer.send(publish(1, "orders", b"kept"))
    import_into(broker, copy.deepcopy(RABBITMQ_EXPORT))
    assert get_body(peer, "orders") == b"kept"


@pytest.mark.parametrize(
    "change, message",
    [
        (
            lambda d: d["users"][0].update(hashing_algorithm="rabbit_password_hashing_md5"),
            "users[0]: user 'defprobe_alice': hashing_algorithm 'rabbit_password_hashing_md5' is not supported "
            "(only rabbit_password_hashing_sha256); set a new password for this user",
        ),
        (lambda d: d["permissions"][0].update(vhost="nope"), "permissions[0]: no vhost 'nope'"),
        (lambda d: d["permissions"][0].update(user="nobody"), "permissions[0]: no user 'nobody'"),
        (lambda d: d["queues"][0].update(vhost="nope"), "queues[0]: no vhost 'nope'"),
        (
            lambda d: d["exchanges"][0].update(type="x-consistent-hash"),
            "exchanges[0]: exchange 'events': unsupported type 'x-consistent-hash'",
        ),
        (
            lambda d: d["exchanges"][0].update(type="x-delayed-message"),  # without x-delayed-type (core.delayed)
            "exchanges[0]: exchange 'events': PRECONDITION_FAILED - Invalid argument, 'x-delayed-type' must be an "
            "existing exchange type",
        ),
        (
            lambda d: d["queues"][0]["arguments"].update({"x-max-length": -1}),
            "queues[0]: PRECONDITION_FAILED - invalid arg 'x-max-length' for queue 'orders' in vhost '/': "
            "{value_negative,-1}",
        ),
        (lambda d: d.update(queues={}), "queues: expected a list"),
    ],
)
def test_invalid_definitions_name_the_entry(change: Any, message: str) -> None:
    data = copy.deepcopy(RABBITMQ_EXPORT)
    change(data)
    with pytest.raises(DefinitionsError) as caught:
        import_into(new_broker(), data)
    assert str(caught.value) == message


def test_import_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "definitions.json"
    path.write_text("{not json")
    with pytest.raises(DefinitionsError) as caught:
        import_file(new_broker(), path)
    assert str(caught.value).startswith(f"{path} is not valid JSON: ")


# ------------------------------------------------------------------ export and round trip


def declare(peer: Peer, *methods: Any) -> None:
    for value in methods:
        peer.send_method(1, value)
        reply = peer.methods()[-1][1]
        assert not isinstance(reply, (commands.Channel.Close, commands.Connection.Close)), reply


def populated_broker() -> Broker:
    broker = imported(
        {
            "users": [{"name": "app", "password_hash": hash_password("pw"), "tags": ["management"]}],
            "vhosts": [{"name": "prod"}],
            "permissions": [{"user": "app", "vhost": "prod", "configure": "^app-", "write": ".*", "read": ""}],
        }
    )
    declare(
        open_peer(broker),
        commands.Exchange.Declare(
            exchange="hx", exchange_type="headers", durable=True, arguments={"alternate-exchange": "ae"}
        ),
        commands.Exchange.Declare(exchange="ae", exchange_type="fanout", auto_delete=True, internal=True),
        commands.Queue.Declare(queue="q1", durable=True, arguments={"x-max-priority": 5, "x-expires": 60000}),
        commands.Queue.Declare(queue="q2", auto_delete=True),
        commands.Queue.Declare(queue="mine", exclusive=True),
        commands.Queue.Bind(queue="q1", exchange="hx", arguments={"x-match": "any", "kind": "a"}),
        commands.Queue.Bind(queue="q2", exchange="ae", routing_key="k"),
        commands.Queue.Bind(queue="mine", exchange="amq.direct", routing_key="mine"),
        commands.Exchange.Bind(destination="ae", source="amq.fanout", routing_key=""),
    )
    return broker


def test_export_has_rabbitmqs_sections_and_fields() -> None:
    exported = export_from(populated_broker())
    assert set(exported) >= {
        "rabbit_version",
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
    assert {
        "name": "app",
        "password_hash": exported["users"][1]["password_hash"],
        "hashing_algorithm": "rabbit_password_hashing_sha256",
        "tags": ["management"],
        "limits": {},
    } in exported["users"]
    assert {"user": "app", "vhost": "prod", "configure": "^app-", "write": ".*", "read": ""} in exported["permissions"]
    assert {
        "name": "hx",
        "vhost": "/",
        "type": "headers",
        "durable": True,
        "auto_delete": False,
        "internal": False,
        "arguments": {"alternate-exchange": "ae"},
    } in exported["exchanges"]
    assert {
        "name": "q1",
        "vhost": "/",
        "durable": True,
        "auto_delete": False,
        "type": "classic",
        "arguments": {"x-max-priority": 5, "x-expires": 60000},
    } in exported["queues"]
    assert {
        "source": "hx",
        "vhost": "/",
        "destination": "q1",
        "destination_type": "queue",
        "routing_key": "",
        "arguments": {"x-match": "any", "kind": "a"},
    } in exported["bindings"]
    assert {
        "source": "amq.fanout",
        "vhost": "/",
        "destination": "ae",
        "destination_type": "exchange",
        "routing_key": "",
        "arguments": {},
    } in exported["bindings"]


def test_export_leaves_out_builtin_exchanges_and_exclusive_queues() -> None:
    exported = export_from(populated_broker())
    assert sorted(e["name"] for e in exported["exchanges"]) == ["ae", "hx"]
    assert sorted(q["name"] for q in exported["queues"]) == ["q1", "q2"]
    assert all(b["destination"] != "mine" and b["source"] for b in exported["bindings"])


def test_export_is_json() -> None:
    exported = export_from(populated_broker())
    assert json.loads(json.dumps(exported)) == exported


def test_round_trip_export_import_export() -> None:
    exported = export_from(populated_broker())
    again = export_from(imported(exported))
    assert without_order(again) == without_order(exported)


def test_round_trip_keeps_logins_and_routing() -> None:
    broker = imported(export_from(populated_broker()))
    assert isinstance(login(broker, "app", "pw", "prod"), commands.Connection.OpenOk)
    peer = open_peer(broker)
    peer.send(publish(1, "k", b"alternate", exchange="hx"))
    assert get_body(peer, "q2") == b"alternate"  # unrouted by hx, so to its alternate exchange ae


def test_round_trip_of_rabbitmqs_export() -> None:
    exported = export_from(imported(RABBITMQ_EXPORT))
    assert without_order(export_from(imported(exported))) == without_order(exported)
    assert {user["password_hash"] for user in exported["users"]} == {
        user["password_hash"] for user in RABBITMQ_EXPORT["users"]
    }


# ------------------------------------------------------------------ the data dir (offline broker)


def test_offline_import_survives_a_restart(tmp_path: Path) -> None:
    with open_offline_broker(tmp_path) as broker:
        import_into(broker, copy.deepcopy(RABBITMQ_EXPORT))
        save_access(tmp_path, broker.access, list(broker.vhosts))
    with open_offline_broker(tmp_path) as broker:
        vhost = broker.vhosts["/"]
        assert {"orders", "orders.dead", "payments"} <= set(vhost.queues)
        assert isinstance(login(broker, "defprobe_alice", "s3cret-pw", "defprobe_vh"), commands.Connection.OpenOk)


def test_durable_queues_of_other_vhosts_survive_a_restart(tmp_path: Path) -> None:
    data = {
        "vhosts": [{"name": "prod"}],
        "queues": [{"name": "jobs", "vhost": "prod", "durable": True, "auto_delete": False, "arguments": {}}],
    }
    with open_offline_broker(tmp_path) as broker:
        import_into(broker, data)
        save_access(tmp_path, broker.access, list(broker.vhosts))
    with open_offline_broker(tmp_path) as broker:
        assert "jobs" in broker.vhosts["prod"].queues


def test_delete_vhost_deletes_its_durable_queues(tmp_path: Path) -> None:
    data = {"queues": [{"name": "jobs", "vhost": "/", "durable": True, "auto_delete": False, "arguments": {}}]}
    with open_offline_broker(tmp_path) as broker:
        import_into(broker, data)
    with open_offline_broker(tmp_path) as broker:
        delete_vhost(broker, "/")
        assert "/" not in broker.vhosts
    with open_offline_broker(tmp_path) as broker:
        assert broker.vhosts["/"].queues == {}


# ------------------------------------------------------------------ access.json


def test_without_a_file_the_default_is_guest_on_slash(tmp_path: Path) -> None:
    access, vhosts = load_access(tmp_path)
    assert vhosts == ["/"]
    assert access.authenticate("guest", "guest", "127.0.0.1") is not None
    assert access.users["guest"].tags == ["administrator"]
    assert access.permissions == {("guest", "/"): Permission(".*", ".*", ".*")}


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    access = AccessControl()
    access.add_user("app", "pw", ["management"])
    access.set_permission("app", "prod", Permission("^app-", "", ".*"))
    save_access(tmp_path, access, ["/", "prod"])
    loaded, vhosts = load_access(tmp_path, loopback_users=("app",))
    assert vhosts == ["/", "prod"]
    assert loaded.users["app"].password_hash == access.users["app"].password_hash
    assert loaded.permissions == access.permissions
    assert loaded.loopback_users == ("app",)
    assert sorted(path.name for path in tmp_path.iterdir()) == [ACCESS_FILE]  # no temporary file left


def test_file_is_the_definitions_sections(tmp_path: Path) -> None:
    save_access(tmp_path, AccessControl.default(), ["/"])
    stored = json.loads((tmp_path / ACCESS_FILE).read_text())
    assert stored["vhosts"] == [{"name": "/"}]
    assert stored["users"][0]["hashing_algorithm"] == "rabbit_password_hashing_sha256"
    assert stored["permissions"] == [{"user": "guest", "vhost": "/", "configure": ".*", "write": ".*", "read": ".*"}]


def test_slash_is_always_a_vhost(tmp_path: Path) -> None:
    (tmp_path / ACCESS_FILE).write_text(json.dumps({"users": [], "vhosts": [{"name": "prod"}], "permissions": []}))
    assert load_access(tmp_path)[1] == ["/", "prod"]


def test_invalid_file_names_the_file(tmp_path: Path) -> None:
    (tmp_path / ACCESS_FILE).write_text(
        json.dumps(
            {
                "users": [{"name": "x", "password_hash": ""}],
                "permissions": [{"user": "x", "vhost": "/", "configure": ".*", "write": ".*", "read": "("}],
            }
        )
    )
    with pytest.raises(DefinitionsError) as caught:
        load_access(tmp_path)
    assert str(caught.value) == (
        f"{tmp_path / ACCESS_FILE}: permissions[0]: invalid regular expression '(': "
        "missing ), unterminated subpattern at position 0"
    )


def test_edit_saves_on_success_only(tmp_path: Path) -> None:
    with edit_access(tmp_path) as (access, vhosts):
        access.add_user("app", "pw")
        vhosts.append("prod")
    with pytest.raises(RuntimeError):
        with edit_access(tmp_path) as (access, _):
            access.delete_user("app")
            raise RuntimeError("abandoned")
    access, vhosts = load_access(tmp_path)
    assert "app" in access.users and vhosts == ["/", "prod"]


def test_apply_to_broker_installs_access_and_reports_removed_vhosts() -> None:
    broker = imported({"vhosts": [{"name": "old"}]})
    access = AccessControl()
    access.add_user("app", "pw")
    access.set_permission("app", "new", Permission())
    assert apply_to_broker(broker, access, ["/", "new"]) == ["old"]
    assert broker.access is access and "new" in broker.vhosts
    assert isinstance(login(broker, "app", "pw", "new"), commands.Connection.OpenOk)


# ------------------------------------------------------------------ policies


RABBITMQ_POLICIES = {  # as RabbitMQ 3.10.8's GET /api/definitions wrote them
    "vhosts": [{"name": "/"}],
    "policies": [
        {
            "vhost": "/",
            "name": "p1",
            "pattern": "^q",
            "apply-to": "queues",
            "definition": {"message-ttl": 2000},
            "priority": 1,
        },
        {
            "vhost": "/",
            "name": "p4",
            "pattern": "^zz",
            "apply-to": "all",
            "definition": {"message-ttl": 1},
            "priority": 1.5,
        },
    ],
    "queues": [{"name": "q1", "vhost": "/", "durable": True, "auto_delete": False, "arguments": {}}],
}


def test_policies_import_before_queues_and_export_as_rabbitmq_wrote_them() -> None:
    broker = new_broker()
    counts = import_into(broker, copy.deepcopy(RABBITMQ_POLICIES))
    assert counts["policies"] == 2 and not any(key.startswith("ignored") for key in counts)
    queue = broker.vhosts["/"].queues["q1"]
    assert (queue.policy.name, queue.options.message_ttl) == ("p1", 2000)
    assert export_from(broker)["policies"] == RABBITMQ_POLICIES["policies"]


def test_operator_policies_travel_as_rabbitmqs_runtime_parameters() -> None:
    from amqp_server.core.policies import Policy

    broker = new_broker()
    broker.vhosts["/"].set_policy(
        Policy("/", "cap", "^ref-", {"message-ttl": 3600000, "max-length": 1000}, operator=True)
    )
    exported = export_from(broker)
    # as RabbitMQ 3.10.8 exported its ref-op-policy (interop_tests/management/reference.json)
    assert exported["parameters"] == [
        {
            "value": {
                "pattern": "^ref-",
                "definition": {"max-length": 1000, "message-ttl": 3600000},
                "priority": 0,
                "apply-to": "all",
            },
            "vhost": "/",
            "component": "operator_policy",
            "name": "cap",
        }
    ]
    assert exported["policies"] == []
    other = new_broker()
    federation = {"vhost": "/", "component": "federation-upstream", "name": "up", "value": {"uri": "amqp://x"}}
    counts = import_into(other, {"parameters": [*exported["parameters"], federation]})
    assert (counts["operator policies"], counts["ignored parameters"]) == (1, 1)
    assert other.vhosts["/"].policies.get("cap", operator=True) == broker.vhosts["/"].policies.get("cap", operator=True)
    bad = {**exported["parameters"][0], "value": {"pattern": "^a", "definition": {"overflow": "drop-head"}}}
    with pytest.raises(DefinitionsError, match=r"parameters\[0\]: operator policy 'cap': Validation failed"):
        import_into(new_broker(), {"parameters": [bad]})


def test_an_invalid_policy_in_a_file_names_the_entry_with_rabbitmqs_reason() -> None:
    data = {"policies": [{"vhost": "/", "name": "bad", "pattern": "^q", "definition": {"message-ttl": -1}}]}
    with pytest.raises(
        DefinitionsError, match=r"policies\[0\]: policy 'bad': Validation failed\n\n-1 is not a valid message TTL$"
    ):
        import_into(new_broker(), data)
    with pytest.raises(DefinitionsError, match=r"policies\[0\]: no vhost 'nowhere'"):
        import_into(new_broker(), {"policies": [{**data["policies"][0], "vhost": "nowhere"}]})
