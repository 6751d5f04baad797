"""Topic permissions and vhost metadata: kept in access.json and in definitions, as RabbitMQ has them
(their enforcement is tests/test_topic_permissions.py's)."""

from __future__ import annotations

import pytest

from amqp_server.core.access import TopicPermission
from amqp_server.core.broker import Broker
from amqp_server.ops import access as ops_access
from amqp_server.ops.definitions import export_from, import_into
from amqp_server.ops.errors import DefinitionsError

ENTRY = {"user": "guest", "vhost": "/", "exchange": "amq.topic", "write": "^a", "read": ".*"}


def test_access_json_keeps_topic_permissions() -> None:
    access, vhosts = ops_access.default_access()
    access.topic_permissions[("guest", "/", "amq.topic")] = TopicPermission("^a", ".*")
    data = ops_access.to_json(access, vhosts)
    assert data["topic_permissions"] == [ENTRY]
    again, _ = ops_access.from_json(data)
    assert again.topic_permissions == {("guest", "/", "amq.topic"): TopicPermission("^a", ".*")}


def test_deleting_a_user_or_vhost_forgets_its_topic_permissions() -> None:
    access, vhosts = ops_access.default_access()
    access.topic_permissions[("guest", "/", "x")] = TopicPermission()
    access.delete_user("guest")
    assert access.topic_permissions == {}
    access.add_user("guest", "guest")
    vhosts.append("v")
    access.topic_permissions[("guest", "v", "x")] = TopicPermission()
    ops_access.remove_vhost(access, vhosts, "v")
    assert access.topic_permissions == {}


def test_definitions_export_and_import_them() -> None:
    broker = Broker()
    counts = import_into(broker, {"topic_permissions": [ENTRY]})
    assert counts["topic_permissions"] == 1
    assert export_from(broker)["topic_permissions"] == [ENTRY]


def test_a_topic_permission_for_an_unknown_user_is_refused() -> None:
    with pytest.raises(DefinitionsError, match=r"topic_permissions\[0\]"):
        import_into(Broker(), {"topic_permissions": [{**ENTRY, "user": "nobody"}]})


def test_vhost_metadata_is_kept_in_access_json_and_definitions() -> None:
    access, vhosts = ops_access.default_access()
    vhosts.append("v")
    access.vhost_metadata["v"] = {"description": "orders", "tags": ["prod"]}
    data = ops_access.to_json(access, vhosts)
    assert {"name": "v", "description": "orders", "tags": ["prod"]} in data["vhosts"]
    again, _ = ops_access.from_json(data)
    assert again.vhost_metadata == {"v": {"description": "orders", "tags": ["prod"]}}
    broker = Broker()
    import_into(broker, {"vhosts": [{"name": "w", "metadata": {"description": "from RabbitMQ", "tags": []}}]})
    (exported,) = [v for v in export_from(broker)["vhosts"] if v["name"] == "w"]
    assert exported["metadata"] == {"description": "from RabbitMQ", "tags": []}
