"""Moving to RabbitMQ (and back): our definitions export imports into RabbitMQ 3.10 unchanged, and the same
code works there.

In CI, without RabbitMQ: a fresh broker process of ours gets ``migration_state``'s state through its management
API; its live export (``GET /api/definitions``) is compared entry by entry with RabbitMQ 3.10.8's export of the
same state (``management/rabbitmq_definitions.json``), and its CLI export (``amqp-server definitions export``,
broker stopped) with ``rabbitmqctl export_definitions``' (``management/rabbitmqctl_definitions.json``); what
legitimately differs is allowed by pattern, each with its reason, and every password hash is checked the way
RabbitMQ checks it.  The other direction: RabbitMQ's two exports import here (``POST /api/definitions``, and
``amqp-server definitions import`` before the broker starts), its users log in with their passwords and the
topology routes.

Opt-in, against a live RabbitMQ: when ``AMQP_HTTP_URL`` (its management API, ``http://guest:guest@127.0.0.1:PORT``)
and ``AMQP_URL`` (its AMQP port) name one, e.g.::

    REF_MGMT_PORT=26111 ../shared/tools/rabbitmq-ref.sh start 26110
    AMQP_HTTP_URL=http://guest:guest@127.0.0.1:26111 AMQP_URL=amqp://guest:guest@127.0.0.1:26110/ \\
        .venv/bin/python -m pytest interop_tests/test_migrate_to_rabbitmq.py

our live export is posted to RabbitMQ's ``/api/definitions`` as is; both brokers' listings of users (with their
password hashes), vhosts, permissions, topic permissions, policies, operator policies, exchanges, queues and
bindings are compared field by field (``DIFFERS`` allows what legitimately differs); every imported user logs
in to RabbitMQ with the password it had here; one small pika routine (direct, topic and exchange-to-exchange
routes) runs against both with the same answers; RabbitMQ's export of it all imports back here changing
nothing.  The state is removed from RabbitMQ afterwards.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Callable, Collection, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pika
import pytest

from .broker_process import BrokerProcess, external_url
from .management import migration_state as state
from .management_client import Api, external_http_url, poll, q

MANAGEMENT = Path(__file__).parent / "management"
REFERENCES = {  # how RabbitMQ 3.10.8 exported the state: GET /api/definitions, rabbitmqctl export_definitions
    "http": json.loads((MANAGEMENT / "rabbitmq_definitions.json").read_text(encoding="utf-8")),
    "ctl": json.loads((MANAGEMENT / "rabbitmqctl_definitions.json").read_text(encoding="utf-8")),
}
PASSWORDS = {"guest": "guest", **{user: password for user, (password, _) in state.USERS.items()}}
HASHES = "random salts; each hash is checked against its password as RabbitMQ checks it"
OTHER_FORM = "the other RabbitMQ export has it, and both of RabbitMQ's imports take it"
EXPORT_DIFFERS = {  # export_differences' patterns -> why: our live export vs RabbitMQ's HTTP API one
    "http": {
        "top:-:product_*": "we say what we are (rabbitmq_version says which format we follow)",
        "global_parameters:internal_cluster_id:-": "RabbitMQ's cluster id, made by each node itself",
        "users:*:password_hash": HASHES,
        "queues:*:type": OTHER_FORM,
        "vhosts:*:limits": OTHER_FORM,
        "vhosts:*:metadata": OTHER_FORM,
    },
    "ctl": {  # our CLI export (broker stopped) vs rabbitmqctl's (node running)
        "top:-:product_*": "RabbitMQ's HTTP export has them too: we say what we are",
        "users:*:password_hash": HASHES,
        "exchanges:*:internal": "rabbitmqctl 3.10 leaves it out; RabbitMQ's HTTP export and both imports have it",
        "exchanges:mig-a/mig-internal:-": "rabbitmqctl 3.10 leaves internal exchanges out (not their bindings)",
        "queues:mig-a/mig-transient:-": "a non-durable queue: gone from a stopped broker's data dir, as at a restart",
        "parameters:*/operator_policy/*:value": "rabbitmqctl 3.10 writes the definition as [key, value] pairs, "
        "which its own import refuses; ours is the object both imports take",
    },
}
TIMEOUT = 10.0
POLL = 20.0  # RabbitMQ's statistics tick is 5 s
Row = dict[str, Any]


def cli(*args: str) -> str:
    """``amqp-server ARGS`` as a process; its output (it must succeed)."""
    result = subprocess.run([sys.executable, "-m", "amqp_server", *args], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


def rabbitmq_accepts(password: str, password_hash: str) -> bool:
    """RabbitMQ's check (rabbit_password_hashing_sha256): the first 4 bytes are the salt, the rest sha256(salt +
    UTF-8 password)."""
    raw = base64.b64decode(password_hash)
    return len(raw) == 36 and hashlib.sha256(raw[:4] + password.encode("utf-8")).digest() == raw[4:]


def _amqp(host: str, port: int, user: str, password: str, vhost: str) -> pika.BlockingConnection:
    credentials = pika.PlainCredentials(user, password)
    return pika.BlockingConnection(
        pika.ConnectionParameters(host, port, vhost, credentials, socket_timeout=TIMEOUT, stack_timeout=TIMEOUT)
    )


def _rabbit_amqp() -> tuple[str, int]:
    host, port, _ = external_url() or ("127.0.0.1", 5672, "")
    return host, port


ROUTES = [  # (exchange, routing key, the queues the message must reach)
    ("mig-direct", "orders", ["mig-classic"]),
    ("mig-topic", "orders.new", ["mig-ttl-orders"]),
    ("mig-topic", "audit.login", ["mig-quorum"]),  # mig-topic -> mig-fanout (exchange binding) -> mig-quorum
    ("amq.topic", "legacy.x", ["mig-classic"]),
]


EXPECTED = sorted(
    (queue, exchange, key, f"{exchange}/{key}".encode()) for exchange, key, queues in ROUTES for queue in queues
)


def round_trip(connect: Callable[[], pika.BlockingConnection]) -> list[tuple[str, str, str, bytes]]:
    """As mig-app: publish each of ``ROUTES`` with confirms, then get what each queue holds."""
    connection = connect()
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        for exchange, key, _ in ROUTES:
            channel.basic_publish(exchange, key, f"{exchange}/{key}".encode(), mandatory=True)
        got = []
        for queue in sorted({queue for *_, queues in ROUTES for queue in queues}):
            while (message := channel.basic_get(queue, auto_ack=True))[0] is not None:
                method, _, body = message
                got.append((queue, method.exchange, method.routing_key, body))
        return got
    finally:
        connection.close()


# ------------------------------------------------------------------ in CI: against RabbitMQ's recorded exports


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """Our two exports of the state: ``http`` from the running broker, ``ctl`` by the CLI once it stopped."""
    data_dir = tmp_path_factory.mktemp("export-data")
    ours = BrokerProcess(data_dir).start()
    try:
        api = Api(ours.http_url)
        state.build(api)
        live = api.ok("GET", "/api/definitions")
    finally:
        ours.stop()
    target = data_dir.parent / "cli-export.json"
    cli("definitions", "export", str(target), "--data-dir", str(data_dir))
    return {"http": live, "ctl": json.loads(target.read_text(encoding="utf-8"))}


@pytest.mark.parametrize("form", ["http", "ctl"])
def test_our_export_is_rabbitmqs_export_of_the_same_state(exports: dict[str, Any], form: str) -> None:
    differences = state.export_differences(exports[form], REFERENCES[form])
    assert state.unexplained(differences, EXPORT_DIFFERS[form]) == []
    assert state.unused(differences, EXPORT_DIFFERS[form]) == []


@pytest.mark.parametrize("form", ["http", "ctl"])
def test_our_hashes_are_checked_by_rabbitmqs_rule(exports: dict[str, Any], form: str) -> None:
    users = exports[form]["users"]
    assert {user["name"] for user in users} == set(PASSWORDS)
    for user in users:
        assert user["hashing_algorithm"] == "rabbit_password_hashing_sha256"
        assert rabbitmq_accepts(PASSWORDS[user["name"]], user["password_hash"]), user
        assert not rabbitmq_accepts(PASSWORDS[user["name"]] + "-wrong", user["password_hash"])
    for user in REFERENCES[form]["users"]:  # the rule is RabbitMQ's: it accepts RabbitMQ's own hashes
        assert rabbitmq_accepts(PASSWORDS[user["name"]], user["password_hash"]), user


@pytest.fixture(params=["http", "ctl"])
def imported_here(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BrokerProcess]:
    """A fresh broker of ours with a RabbitMQ export imported: posted to its API (http), or by the CLI into
    its data dir before it starts (ctl)."""
    path = tmp_path / "rabbitmq.json"
    path.write_text(json.dumps(REFERENCES[request.param]), encoding="utf-8")
    if request.param == "ctl":
        cli("definitions", "import", str(path), "--data-dir", str(tmp_path / "data"))
    process = BrokerProcess(tmp_path / "data").start()
    try:
        if request.param == "http":
            answer = Api(process.http_url).post("/api/definitions", REFERENCES["http"])
            assert answer.status == 204, answer.body
        yield process
    finally:
        process.stop()


def test_rabbitmqs_export_imports_here_and_works(imported_here: BrokerProcess) -> None:
    host, port = imported_here.host, imported_here.port
    for user, password in PASSWORDS.items():
        vhost = next((vhost for name, vhost, *_ in state.PERMISSIONS if name == user), "/")
        _amqp(host, port, user, password, vhost).close()
    assert sorted(round_trip(lambda: _amqp(host, port, "mig-app", PASSWORDS["mig-app"], "mig-a"))) == EXPECTED


# ------------------------------------------------------------------ opt-in: against a live RabbitMQ


# A listing: its path per vhost (or None: one path), the fields naming a row, the fields compared.
LISTINGS: dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]] = {
    "users": ("/api/users", ("name",), ("tags", "password_hash", "hashing_algorithm")),
    "vhosts": ("/api/vhosts", ("name",), ("description", "tags", "tracing")),
    "permissions": ("/api/permissions", ("user", "vhost"), ("configure", "write", "read")),
    "topic-permissions": ("/api/topic-permissions", ("user", "vhost", "exchange"), ("write", "read")),
    "policies": ("/api/policies", ("vhost", "name"), ("pattern", "apply-to", "definition", "priority")),
    "operator-policies": (
        "/api/operator-policies",
        ("vhost", "name"),
        ("pattern", "apply-to", "definition", "priority"),
    ),
    "exchanges": (
        "/api/exchanges/{vhost}",
        ("name",),
        ("type", "durable", "auto_delete", "internal", "arguments", "policy"),
    ),
    "queues": (
        "/api/queues/{vhost}",
        ("name",),
        (
            "type",
            "durable",
            "auto_delete",
            "exclusive",
            "arguments",
            "policy",
            "operator_policy",
            "effective_policy_definition",
        ),
    ),
    "bindings": (
        "/api/bindings/{vhost}",
        ("source", "destination_type", "destination", "routing_key", "arguments"),
        ("properties_key",),
    ),
}
# (listing, row key's first field, field) -> why the value may differ; "*" matches any row.
DIFFERS = {
    ("exchanges", "", "policy"): "left, not the export's: RabbitMQ applies a matching policy to the default exchange",
    ("bindings", "*", "properties_key"): "with arguments RabbitMQ adds an opaque hash (key~HASH) of them",
}


def _guest_only(api: Api, exported: dict[str, Any]) -> dict[str, Any]:
    """The export as is, unless RabbitMQ's administrator is not guest/guest: then without our guest (whose hash
    would replace that user's password if it were guest)."""
    if (api.user, api.password) == ("guest", "guest"):
        return exported
    return {
        **exported,
        "users": [user for user in exported["users"] if user["name"] != "guest"],
        "permissions": [grant for grant in exported["permissions"] if grant["user"] != "guest"],
    }


@pytest.fixture(scope="module")
def brokers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimpleNamespace]:
    """Ours (fresh, with the state) and RabbitMQ (with our export imported); ``exported`` is the export."""
    if not (external_http_url() and external_url()):
        pytest.skip("opt-in: set AMQP_HTTP_URL and AMQP_URL to a RabbitMQ's management API and AMQP port")
    ours = BrokerProcess(tmp_path_factory.mktemp("migrate-data")).start()
    rabbit = Api(external_http_url() or "")
    try:
        our_api = Api(ours.http_url)
        state.build(our_api)
        exported = our_api.ok("GET", "/api/definitions")
        state.remove(rabbit)
        answer = rabbit.post("/api/definitions", _guest_only(rabbit, exported))
        assert answer.status == 204, answer.body
        yield SimpleNamespace(ours=our_api, rabbit=rabbit, exported=exported, our_amqp=(ours.host, ours.port))
    finally:
        state.remove(rabbit)
        ours.stop()


def listing(api: Api, name: str, vhosts: Collection[str] = tuple(state.VHOSTS)) -> dict[tuple[Any, ...], Row]:
    """The rows of one listing that belong to the state, by key, with the compared fields (absent: None)."""
    path, key, fields = LISTINGS[name]
    paths = [path.format(vhost=q(vhost)) for vhost in vhosts] if "{vhost}" in path else [path]
    rows = [row for p in paths for row in api.ok("GET", p)]
    rows = [row for row in rows if row.get("vhost", row.get("name")) in vhosts or row.get("name") in state.USERS]
    if name == "users":
        rows = [row for row in rows if row["name"] in state.USERS]
    return {
        tuple(json.dumps(row.get(k), sort_keys=True) if k == "arguments" else row.get(k) for k in key): {
            field: row.get(field) for field in fields
        }
        for row in rows
    }


def differences(name: str, ours: dict[tuple[Any, ...], Row], theirs: dict[tuple[Any, ...], Row]) -> list[str]:
    """What differs between two listings and is not in ``DIFFERS``."""
    found = []
    for key in sorted(set(ours) | set(theirs), key=repr):
        mine, rabbit = ours.get(key), theirs.get(key)
        for field in (rabbit or mine or {}).keys() if mine is None or rabbit is None else mine:
            value = (mine or {}).get(field, "<missing row>") if mine is not None else "<missing row>"
            other = (rabbit or {}).get(field, "<missing row>") if rabbit is not None else "<missing row>"
            allowed = {(name, key[0], field), (name, key[0], "*"), (name, "*", field)} & DIFFERS.keys()
            if value != other and not allowed:
                found.append(f"{name} {key} {field}: ours {value!r}, RabbitMQ {other!r}")
    return found


@pytest.mark.parametrize("name", list(LISTINGS))
def test_rabbitmq_lists_what_we_list(brokers: SimpleNamespace, name: str) -> None:
    ours = listing(brokers.ours, name)
    assert ours, f"the state has no {name}"
    # RabbitMQ lists a queue's policies from its statistics, a tick (5 s) after the import: poll until they agree
    theirs = poll(lambda: listing(brokers.rabbit, name), lambda rows: not differences(name, ours, rows), name, POLL)
    assert differences(name, ours, theirs) == []


def test_every_allowed_difference_still_differs(brokers: SimpleNamespace) -> None:
    """An allow-list entry that no longer matches a difference is stale."""
    stale = []
    for listing_name, row, field in DIFFERS:
        ours, theirs = listing(brokers.ours, listing_name), listing(brokers.rabbit, listing_name)
        keys = [k for k in set(ours) | set(theirs) if row in ("*", k[0])]
        if not any(ours.get(k) != theirs.get(k) for k in keys):
            stale.append((listing_name, row, field))
    assert stale == []


@pytest.mark.parametrize("user", list(state.USERS))
def test_imported_users_log_in_to_rabbitmq_with_their_passwords(brokers: SimpleNamespace, user: str) -> None:
    password, tags = state.USERS[user]
    vhost = next(vhost for name, vhost, *_ in state.PERMISSIONS if name == user)
    connection = _amqp(*_rabbit_amqp(), user, password, vhost)
    assert connection.is_open
    connection.close()
    if tags:  # a management user: the HTTP API takes the password too
        assert brokers.rabbit.as_user(user, password).ok("GET", "/api/whoami")["name"] == user
    with pytest.raises(pika.exceptions.ProbableAuthenticationError):
        _amqp(*_rabbit_amqp(), user, password + "-wrong", vhost)


def test_the_same_pika_code_works_on_both(brokers: SimpleNamespace) -> None:
    password = state.USERS["mig-app"][0]
    ours = round_trip(lambda: _amqp(*brokers.our_amqp, "mig-app", password, "mig-a"))
    theirs = round_trip(lambda: _amqp(*_rabbit_amqp(), "mig-app", password, "mig-a"))
    assert sorted(ours) == EXPECTED
    assert sorted(theirs) == EXPECTED


def test_rabbitmqs_export_of_it_imports_back_here(brokers: SimpleNamespace) -> None:
    """The other direction on the same state: RabbitMQ's export posted to our API changes nothing we list."""
    before = {name: listing(brokers.ours, name) for name in LISTINGS}
    answer = brokers.ours.post("/api/definitions", brokers.rabbit.ok("GET", "/api/definitions"))
    assert answer.status == 204, answer.body
    assert {name: listing(brokers.ours, name) for name in LISTINGS} == before


@pytest.mark.parametrize("name", ["exchanges", "queues", "bindings"])
def test_one_vhosts_export_imports_into_another_rabbitmq_vhost(brokers: SimpleNamespace, name: str) -> None:
    """``GET /api/definitions/mig-a`` here, ``POST /api/definitions/mig-copy`` there: the same objects."""
    copy = "mig-copy"
    brokers.rabbit.ok("PUT", f"/api/vhosts/{copy}")
    try:
        brokers.rabbit.ok("POST", f"/api/definitions/{copy}", brokers.ours.ok("GET", "/api/definitions/mig-a"))
        ours = listing(brokers.ours, name, ["mig-a"])
        theirs = poll(
            lambda: listing(brokers.rabbit, name, [copy]), lambda rows: not differences(name, ours, rows), name, POLL
        )
        assert differences(name, ours, theirs) == []
    finally:
        brokers.rabbit.delete(f"/api/vhosts/{copy}")


CTL_IMPORT_DIFFERS = {  # RabbitMQ's HTTP export after `rabbitmqctl import_definitions` of our CLI export
    "top:-:product_*": "we say what we are",
    "global_parameters:internal_cluster_id:-": "RabbitMQ's cluster id, made by each node itself",
    "queues:*:type": OTHER_FORM,
    "vhosts:*:limits": OTHER_FORM,
    "vhosts:*:metadata": OTHER_FORM,
}


def test_our_cli_export_imports_with_rabbitmqctl(brokers: SimpleNamespace, exports: dict[str, Any]) -> None:
    """``rabbitmqctl import_definitions`` of our CLI export (last here: it replaces the state the tests above
    read).  Opt-in beside the others: ``RABBITMQCTL`` is the command that runs that RabbitMQ's rabbitmqctl,
    e.g. ``../shared/tools/rabbitmq-ref.sh ctl 26110``.  The hashes come back unchanged."""
    command = os.environ.get("RABBITMQCTL", "").split()
    if not command:
        pytest.skip("set RABBITMQCTL to the command running that RabbitMQ's rabbitmqctl")
    state.remove(brokers.rabbit)
    exported = _guest_only(brokers.rabbit, exports["ctl"])
    subprocess.run([*command, "-q", "import_definitions"], input=json.dumps(exported), text=True, check=True)
    # the import runs on in the node after rabbitmqctl returns: wait for its last section
    theirs = poll(
        lambda: brokers.rabbit.ok("GET", "/api/definitions"),
        lambda answer: len(state.entries(answer, "bindings")) >= len(state.entries(exported, "bindings")),
        "rabbitmqctl import_definitions",
        POLL,
    )
    theirs = {**theirs, "users": [user for user in theirs["users"] if user["name"] in PASSWORDS]}
    differences = state.export_differences(exported, theirs)
    assert state.unexplained(differences, CTL_IMPORT_DIFFERS) == []
