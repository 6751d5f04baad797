"""Policies and operator policies on the sans-IO core: validation texts, matching, precedence, live effects.

The validation cases are RabbitMQ 3.10.8's own answers, recorded from its management API
(``tests/data/rabbitmq_policy_answers.json``: each PUT body with the status and reason it got).
The live scenarios drive a broker over AMQP frames with a fake clock: a policy set or cleared on
the vhost changes the queues and exchanges already there, and the ones declared afterwards.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

import pytest
from pamqp import commands

from amqp_server.core.broker import Broker
from amqp_server.core.policies import Policy, PolicyTable, effective_definition, queue_options
from amqp_server.core.policy_validation import PolicyError, erlang_term, parse_policy
from amqp_server.core.queue_arguments import parse_queue_arguments
from storage.memory import MemoryStore
from storage.segment_store import SegmentStore
from tests.frames import FakeClock, Peer, open_peer, publish

ANSWERS = json.loads((Path(__file__).parent / "data" / "rabbitmq_policy_answers.json").read_text())


# ------------------------------------------------------------------ validation (RabbitMQ's answers)


def _apply_to_case(case: dict) -> bool:
    """3.10 knows only queues/exchanges/all; like RabbitMQ 3.12 we also take classic_queues, quorum_queues, streams."""
    return "apply-to" in case["body"] and case["body"]["apply-to"] not in ("queues", "exchanges", "all")


@pytest.mark.parametrize(
    "case", [c for c in ANSWERS if not _apply_to_case(c)], ids=lambda c: f"{c['kind']}:{json.dumps(c['body'])[:60]}"
)
def test_validation_answers_as_rabbitmq(case):
    operator = case["kind"] == "operator-policies"
    if case["status"] in (201, 204):
        policy = parse_policy("/", "p", case["body"], operator)
        assert policy.to_json()["definition"] == case["body"]["definition"]
        return
    assert case["status"] == 400
    # the management API HTML-escapes its reasons for policies (not for operator policies): the text is the same
    expected = case["reason"] if operator else html.unescape(case["reason"])
    with pytest.raises(PolicyError) as error:
        parse_policy("/", "p", case["body"], operator)
    assert error.value.reason == expected


def test_apply_to_takes_the_queue_types_and_names_them_when_wrong():
    for apply_to in ("classic_queues", "quorum_queues", "streams", "queues", "exchanges", "all"):
        assert parse_policy("/", "p", {"pattern": "", "definition": {"expires": 5}, "apply-to": apply_to}).apply_to
    with pytest.raises(PolicyError) as error:
        parse_policy("/", "p", {"pattern": "", "definition": {"expires": 5}, "apply-to": "bogus"})
    assert "apply-to 'bogus' unrecognised; should be one of: 'queues', 'classic_queues'" in error.value.reason


def test_defaults_and_bad_bodies_answer_not_crash():
    policy = parse_policy("v", "n", {"pattern": "^a", "definition": {"max-length": 1}})
    assert policy.to_json() == {
        "vhost": "v",
        "name": "n",
        "pattern": "^a",
        "apply-to": "all",
        "definition": {"max-length": 1},
        "priority": 0,
    }
    for body, reason in (
        ([], "[{key_missing,pattern},{key_missing,definition}]"),
        ({"pattern": "", "definition": "x"}, 'Validation failed\n\ndefinition must be a dictionary: <<"x">>\n'),
        ({"pattern": "", "definition": [1]}, "Validation failed\n\ndefinition must be a dictionary: [1]\n"),
        ({"pattern": "", "definition": {"expires": 1}, "apply-to": 5}, "apply-to '5' unrecognised"),
        ({"pattern": "", "definition": {"expires": 1}, "priority": float("nan")}, "Validation failed\n\npriority"),
    ):
        with pytest.raises(PolicyError) as error:
            parse_policy("/", "p", body)
        assert reason in error.value.reason


def test_erlang_terms_print_as_rabbitmq_quotes_them():
    assert [erlang_term(v) for v in ('a"b', 1e20, 1e-05, 2.0, None, True, [1, "x"], {"b": 1, "a": []})] == [
        '<<"a\\"b">>',
        "1.0e20",
        "1.0e-5",
        "2.0",
        "null",
        "true",
        '[1,<<"x">>]',
        '#{<<"a">> => [],<<"b">> => 1}',
    ]


# ------------------------------------------------------------------ matching and merging


def table(*policies: Policy) -> PolicyTable:
    result = PolicyTable()
    for policy in policies:
        result.put(policy)
    return result


def test_the_matching_policy_of_highest_priority_applies():
    policies = table(
        Policy("/", "low", "^orders", {"max-length": 1}, 0),
        Policy("/", "high", "orders", {"max-length": 2}, 5),
        Policy("/", "higher-elsewhere", "^invoices$", {"max-length": 3}, 9),
        Policy("/", "exchanges-only", "", {"alternate-exchange": "ae"}, 99, "exchanges"),
    )
    assert policies.match("queue", "orders.eu").name == "high"
    assert policies.match("queue", "eu.orders").name == "high"  # the pattern is searched, not anchored
    assert policies.match("queue", "invoices").name == "higher-elsewhere"
    assert policies.match("queue", "invoices.old") is None
    assert policies.match("exchange", "orders").name == "exchanges-only"
    assert [p.name for p in policies.listing()] == ["low", "high", "higher-elsewhere", "exchanges-only"]


def test_equal_priorities_pick_one_deterministically_by_name():
    policies = table(Policy("/", "b", "", {"max-length": 1}), Policy("/", "a", "", {"max-length": 2}))
    assert policies.match("queue", "q").name == "a"


def test_apply_to_queue_types_and_keys_quorum_queues_refuse():
    policies = table(
        Policy("/", "lazy", "", {"queue-mode": "lazy", "max-length": 1}, 10),  # not for quorum queues at all
        Policy("/", "quorum", "", {"max-length": 2}, 5, "quorum_queues"),
        Policy("/", "classic", "", {"max-length": 3}, 1, "classic_queues"),
    )
    assert policies.match("queue", "q", "classic").name == "lazy"
    assert policies.match("queue", "q", "quorum").name == "quorum"
    policies.delete("lazy")
    assert policies.match("queue", "q", "classic").name == "classic"


def test_operator_policy_merges_the_lower_value_per_key():
    policy = Policy("/", "p", "", {"message-ttl": 2000, "dead-letter-exchange": "dlx"})
    operator = Policy("/", "o", "", {"message-ttl": 500, "max-length": 7}, operator=True)
    # what RabbitMQ 3.10 showed as effective_policy_definition for these two
    assert effective_definition(policy, operator) == {
        "dead-letter-exchange": "dlx",
        "max-length": 7,
        "message-ttl": 500,
    }
    assert effective_definition(None, None) == {}


def options(arguments: dict, definition: dict):
    base = parse_queue_arguments(arguments, "q", "/", durable=True, exclusive=False)
    return queue_options(base, arguments, definition)


def test_classic_queue_takes_the_lower_limit_and_its_own_dead_lettering_and_overflow():
    arguments = {
        "x-message-ttl": 5000,
        "x-max-length": 3,
        "x-expires": 100,
        "x-dead-letter-exchange": "mine",
        "x-overflow": "reject-publish",
    }
    definition = {
        "message-ttl": 500,
        "max-length": 7,
        "expires": 60000,
        "max-length-bytes": 10,
        "dead-letter-exchange": "policy's",
        "dead-letter-routing-key": "rk",
        "overflow": "drop-head",
        "delivery-limit": 1,  # classic queues have none
    }
    result = options(arguments, definition)
    assert (result.message_ttl, result.max_length, result.expires, result.max_length_bytes) == (500, 3, 100, 10)
    assert (result.dead_letter_exchange, result.dead_letter_routing_key, result.overflow) == (
        "mine",
        "rk",
        "reject-publish",
    )
    assert result.delivery_limit is None


def test_quorum_queue_lets_the_policy_win_for_overflow_and_expires():
    arguments = {"x-queue-type": "quorum", "x-overflow": "reject-publish", "x-expires": 2000, "x-delivery-limit": 9}
    result = options(arguments, {"overflow": "drop-head", "expires": 600000, "delivery-limit": 3})
    # as RabbitMQ 3.10 behaved: the policy's drop-head and 600 s expiry won over the queue's arguments
    assert (result.overflow, result.expires, result.delivery_limit) == ("drop-head", 600000, 3)


# ------------------------------------------------------------------ applied live


def declare(peer: Peer, queue: str, **arguments) -> None:
    peer.send_method(1, commands.Queue.Declare(queue=queue, **arguments))
    assert any(isinstance(v, commands.Queue.DeclareOk) for _, v in peer.frames())


def count(peer: Peer, queue: str) -> int:
    peer.send_method(1, commands.Queue.Declare(queue=queue, passive=True))
    [ok] = [v for _, v in peer.frames() if isinstance(v, commands.Queue.DeclareOk)]
    return ok.message_count


def set_policy(peer: Peer, name: str, pattern: str, definition: dict, **fields) -> None:
    body = {"pattern": pattern, "definition": definition, **fields}
    peer.broker.vhosts["/"].set_policy(parse_policy("/", name, body, operator=fields.pop("operator", False)))


def test_max_length_policy_trims_an_existing_queue_at_once_and_dead_letters_with_it():
    peer = open_peer()
    declare(peer, "work")
    declare(peer, "dead")
    for n in range(5):
        peer.send(publish(1, "work", b"m%d" % n))
    set_policy(peer, "cap", "^work$", {"max-length": 2, "dead-letter-exchange": "", "dead-letter-routing-key": "dead"})
    assert count(peer, "work") == 2
    assert peer.drain("dead") == [b"m0", b"m1", b"m2"]
    declare(peer, "work")  # equivalence compares the arguments only: the policy's limit is not one
    queue = peer.broker.vhosts["/"].queues["work"]
    assert queue.policy.name == "cap" and queue.operator_policy is None
    peer.broker.vhosts["/"].clear_policy("cap")
    for n in range(5, 8):
        peer.send(publish(1, "work", b"m%d" % n))
    assert count(peer, "work") == 5  # the limit went with the policy


def test_message_ttl_policy_expires_what_is_published_under_it_as_rabbitmq_does():
    """RabbitMQ 3.10 gives a message its expiry when it is enqueued: a TTL policy set later leaves the messages
    already there alone, and clearing it does not rescue the ones published while it was set."""
    clock = FakeClock()
    peer = open_peer(Broker(clock=clock))
    declare(peer, "jobs")
    peer.send(publish(1, "jobs", b"before"))
    set_policy(peer, "ttl", "^jobs$", {"message-ttl": 1000})
    peer.send(publish(1, "jobs", b"under"))
    peer.broker.vhosts["/"].clear_policy("ttl")
    peer.send(publish(1, "jobs", b"after"))
    clock.advance(2)
    assert peer.drain("jobs") == [b"before", b"after"]


def test_a_new_queue_takes_the_policy_and_expired_messages_go_to_the_policys_dead_letter_exchange():
    clock = FakeClock()
    peer = open_peer(Broker(clock=clock))
    declare(peer, "dead")
    set_policy(
        peer, "ttl", "^jobs", {"message-ttl": 1000, "dead-letter-exchange": "", "dead-letter-routing-key": "dead"}
    )
    declare(peer, "jobs.1")
    peer.send(publish(1, "jobs.1", b"late"))
    clock.advance(2)
    peer.broker.scheduler.run_due(clock.now)
    assert count(peer, "jobs.1") == 0
    assert peer.drain("dead") == [b"late"]


def test_operator_policy_caps_what_the_policy_and_the_arguments_allow():
    peer = open_peer()
    declare(peer, "q", arguments={"x-max-length": 10})
    set_policy(peer, "user", "^q$", {"max-length": 8})
    set_policy(peer, "ops", ".", {"max-length": 3}, operator=True)
    for n in range(6):
        peer.send(publish(1, "q", b"%d" % n))
    assert count(peer, "q") == 3
    queue = peer.broker.vhosts["/"].queues["q"]
    assert (queue.policy.name, queue.operator_policy.name, queue.options.max_length) == ("user", "ops", 3)


def test_expires_policy_deletes_an_unused_queue():
    clock = FakeClock()
    peer = open_peer(Broker(clock=clock))
    declare(peer, "temp")
    set_policy(peer, "exp", "^temp$", {"expires": 5000})
    clock.advance(6)
    peer.broker.scheduler.run_due(clock.now)
    assert "temp" not in peer.broker.vhosts["/"].queues


def test_alternate_exchange_policy_catches_unroutable_messages_and_the_argument_wins():
    peer = open_peer()
    for name in ("ae", "own-ae"):
        peer.send_method(1, commands.Exchange.Declare(exchange=name, exchange_type="fanout"))
        declare(peer, name + "-q")
        peer.send_method(1, commands.Queue.Bind(queue=name + "-q", exchange=name))
    peer.send_method(1, commands.Exchange.Declare(exchange="orders", exchange_type="direct"))
    peer.send_method(
        1,
        commands.Exchange.Declare(
            exchange="orders.own", exchange_type="direct", arguments={"alternate-exchange": "own-ae"}
        ),
    )
    peer.frames()
    set_policy(peer, "ae", "^orders", {"alternate-exchange": "ae"}, **{"apply-to": "exchanges"})
    peer.send(publish(1, "nowhere", b"1", exchange="orders"))
    peer.send(publish(1, "nowhere", b"2", exchange="orders.own"))
    assert (peer.drain("ae-q"), peer.drain("own-ae-q")) == ([b"1"], [b"2"])
    peer.broker.vhosts["/"].clear_policy("ae")
    peer.send(publish(1, "nowhere", b"3", exchange="orders"))
    assert peer.drain("ae-q") == []


def test_policies_survive_a_restart_of_the_segment_store(tmp_path):
    store = SegmentStore(tmp_path / "data")
    peer = open_peer(Broker(store=store, clock=FakeClock()))
    declare(peer, "durable", durable=True)
    set_policy(peer, "cap", "^durable$", {"max-length": 1}, priority=3)
    set_policy(peer, "gone", "", {"max-length": 9})
    peer.broker.vhosts["/"].clear_policy("gone")
    set_policy(peer, "ops", "", {"message-ttl": 100}, operator=True)
    store.sync()
    store.close()

    store = SegmentStore(tmp_path / "data")
    try:
        vhost = Broker(store=store, clock=FakeClock()).vhosts["/"]
        assert [p.to_json() for p in vhost.policies.listing()] == [
            {
                "vhost": "/",
                "name": "cap",
                "pattern": "^durable$",
                "apply-to": "all",
                "definition": {"max-length": 1},
                "priority": 3,
            }
        ]
        assert [p.name for p in vhost.policies.listing(operator=True)] == ["ops"]
        assert vhost.queues["durable"].options.max_length == 1
    finally:
        store.close()


def test_policies_of_other_vhosts_do_not_apply():
    broker = Broker(store=MemoryStore(), clock=FakeClock())
    other = broker.add_vhost("other")
    other.set_policy(Policy("other", "cap", "", {"max-length": 0}))
    peer = open_peer(broker)
    declare(peer, "q")
    peer.send(publish(1, "q", b"kept"))
    assert count(peer, "q") == 1


# ------------------------------------------------------------------ the offline admin CLI


def test_cli_refuses_bad_policies_with_rabbitmqs_reason_and_a_running_broker(tmp_path, capsys):
    from amqp_server.ops.cli import main

    data_dir = tmp_path / "data"
    data_dir.mkdir()
    args = ["--data-dir", str(data_dir)]
    assert main(["policies", "set", "bad", "^q", '{"expires": 0}', *args]) == 1
    assert "invalid policy 'bad': Validation failed\n\n0 is not a valid queue expiry" in capsys.readouterr().err
    assert main(["policies", "set", "dlx", "^q", '{"dead-letter-exchange": "x"}', "--operator", *args]) == 1
    assert '[{<<"dead-letter-exchange">>,<<"x">>}] are not recognised policy settings' in capsys.readouterr().err
    assert main(["policies", "set", "p", "^q", "{", *args]) == 1
    assert main(["policies", "set", "p", "^q", '{"max-length": 1}', "--vhost", "nope", *args]) == 1
    assert "no vhost 'nope'" in capsys.readouterr().err
    running = SegmentStore(data_dir)  # what a running broker holds: the data dir's lock
    try:
        assert main(["policies", "set", "p", "^q", '{"max-length": 1}', *args]) == 1
        assert "cannot set policies while a broker is running" in capsys.readouterr().err
    finally:
        running.close()
    assert main(["policies", "set", "p", "^q", '{"max-length": 1}', *args]) == 0
    assert main(["policies", "clear", "p", "--operator", *args]) == 1  # a policy, not an operator policy


def test_fields_the_management_api_shows_per_queue_and_exchange():
    from amqp_server.core.policies import exchange_policy_fields, queue_policy_fields

    peer = open_peer()
    declare(peer, "q1", arguments={"x-max-length": 3, "x-message-ttl": 5000})
    declare(peer, "zq")
    peer.send_method(1, commands.Exchange.Declare(exchange="orders", exchange_type="direct"))
    set_policy(peer, "p1", "^q", {"message-ttl": 2000}, **{"apply-to": "queues", "priority": 1})
    set_policy(peer, "o1", "^q", {"message-ttl": 500, "max-length": 7}, operator=True, **{"apply-to": "queues"})
    set_policy(peer, "ae", "^orders$", {"alternate-exchange": "u"}, **{"apply-to": "exchanges"})
    vhost = peer.broker.vhosts["/"]
    # RabbitMQ 3.10.8 showed exactly these for the same state
    assert queue_policy_fields(vhost.queues["q1"]) == {
        "policy": "p1",
        "operator_policy": "o1",
        "effective_policy_definition": {"max-length": 7, "message-ttl": 500},
    }
    assert queue_policy_fields(vhost.queues["zq"]) == {
        "policy": None,
        "operator_policy": None,
        "effective_policy_definition": {},
    }
    assert vhost.queues["q1"].options.max_length == 3  # what applies: the lower of the argument and the policies
    assert exchange_policy_fields(vhost.exchanges["orders"]) == {"policy": "ae"}
    assert exchange_policy_fields(vhost.exchanges["amq.direct"]) == {}


def test_policy_operations_for_the_management_api():
    from amqp_server.core.policy_operations import NoSuchVhost, PolicyOperations

    broker = Broker(store=MemoryStore(), clock=FakeClock())
    broker.add_vhost("other")
    operations = PolicyOperations(broker)
    body = {"pattern": "^q", "definition": {"message-ttl": 1000}, "apply-to": "queues", "priority": 1}
    assert operations.set("/", "p1", body) is True
    assert operations.set("/", "p1", {**body, "definition": {"message-ttl": 2000}}) is False  # 201, then 204
    assert operations.set("other", "low", {"pattern": "", "definition": {"expires": 5}, "priority": -1}) is True
    assert operations.set("/", "o1", {"pattern": "^q", "definition": {"max-length": 7}}, operator=True)
    assert operations.get("/", "p1") == {
        "vhost": "/",
        "name": "p1",
        "pattern": "^q",
        "apply-to": "queues",
        "definition": {"message-ttl": 2000},
        "priority": 1,
    }
    assert operations.get("/", "o1") is None and operations.get("/", "o1", operator=True)["name"] == "o1"
    assert [p["name"] for p in operations.list()] == ["p1", "low"]
    assert [p["name"] for p in operations.list(["other", "missing"])] == ["low"]
    with pytest.raises(PolicyError):
        operations.set("/", "bad", {"pattern": "^q", "definition": {}})
    with pytest.raises(NoSuchVhost):
        operations.set("missing", "p", body)
    assert operations.clear("/", "p1") is True and operations.clear("/", "p1") is False
    assert operations.list(operator=True)[0]["definition"] == {"max-length": 7}


def test_deleting_a_vhost_deletes_its_policies_so_it_does_not_come_back():
    from amqp_server.ops.definitions import delete_vhost

    store = MemoryStore()
    broker = Broker(store=store, clock=FakeClock())
    broker.add_vhost("gone").set_policy(Policy("gone", "p", "", {"max-length": 1}))
    broker.vhosts["gone"].set_policy(Policy("gone", "o", "", {"max-length": 1}, operator=True))
    delete_vhost(broker, "gone")
    assert store.recover().policies == []
    assert "gone" not in Broker(store=store, clock=FakeClock()).vhosts
