"""The Prometheus endpoints of a broker process, parsed with prometheus_client's own parser.

Names, types, label names and HELP texts are RabbitMQ 3.10.8's (probed with its
rabbitmq_prometheus plugin); values follow what AMQP clients do; and every metric RabbitMQ's
Grafana dashboard "RabbitMQ-Overview" queries is there with the labels it joins on.  The
module has a broker of its own, so the counts it asserts are exact.
"""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pika
import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from .broker_process import BrokerProcess
from .conftest import TIMEOUT

Samples = dict[str, list[Sample]]


@pytest.fixture(scope="module")
def process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    broker = BrokerProcess(tmp_path_factory.mktemp("prometheus-data")).start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def amqp(process: BrokerProcess) -> Iterator[pika.BlockingConnection]:
    connection = pika.BlockingConnection(pika.URLParameters(process.url + f"?socket_timeout={TIMEOUT}"))
    try:
        yield connection
    finally:
        if connection.is_open:
            connection.close()


def fetch(process: BrokerProcess, path: str) -> tuple[str, str]:
    """(content type, body) of ``GET path`` on the Prometheus port."""
    with urllib.request.urlopen(f"http://127.0.0.1:{process.prometheus_port}{path}", timeout=TIMEOUT) as response:
        return response.headers["Content-Type"], response.read().decode()


def families(process: BrokerProcess, path: str = "/metrics") -> dict[str, tuple[str, str]]:
    """``{sample name: (family type, HELP)}``: counters' samples end in _total, as on the wire."""
    found = {}
    for family in text_string_to_metric_families(fetch(process, path)[1]):
        bare = family.name + "_total" if family.type == "counter" else family.name  # no objects, no samples
        names = {sample.name for sample in family.samples} or {bare}
        for name in names:
            found[name] = (family.type, family.documentation)
    return found


def samples(process: BrokerProcess, path: str = "/metrics") -> Samples:
    found: Samples = {}
    for family in text_string_to_metric_families(fetch(process, path)[1]):
        for sample in family.samples:
            found.setdefault(sample.name, []).append(sample)
    return found


def value(found: Samples, name: str, **labels: str) -> float:
    matching = [s.value for s in found.get(name, []) if all(s.labels.get(k) == v for k, v in labels.items())]
    assert len(matching) == 1, (name, labels, found.get(name))
    return matching[0]


def wait_for(read: Callable[[], float], expected: float, what: str) -> None:
    """Poll (bounded) until ``read()`` gives ``expected``: the broker handles the AMQP frames asynchronously."""
    deadline = time.monotonic() + TIMEOUT
    while (got := read()) != expected:
        assert time.monotonic() < deadline, f"{what}: {got}, expected {expected}"
        time.sleep(0.02)


# ------------------------------------------------------------------ RabbitMQ 3.10.8's names, types and HELP texts

RABBITMQ_METRICS = {
    "rabbitmq_queue_messages_ready": ("gauge", "Messages ready to be delivered to consumers"),
    "rabbitmq_queue_messages_unacked": ("gauge", "Messages delivered to consumers but not yet acknowledged"),
    "rabbitmq_queue_messages": ("gauge", "Sum of ready and unacknowledged messages - total queue depth"),
    "rabbitmq_queue_consumers": ("gauge", "Consumers on a queue"),
    "rabbitmq_queue_messages_bytes": ("gauge", "Size in bytes of ready and unacknowledged messages"),
    "rabbitmq_connections": ("gauge", "Connections currently open"),
    "rabbitmq_channels": ("gauge", "Channels currently open"),
    "rabbitmq_consumers": ("gauge", "Consumers currently connected"),
    "rabbitmq_queues": ("gauge", "Queues available"),
    "rabbitmq_connections_opened_total": ("counter", "Total number of connections opened"),
    "rabbitmq_connections_closed_total": ("counter", "Total number of connections closed or terminated"),
    "rabbitmq_channels_opened_total": ("counter", "Total number of channels opened"),
    "rabbitmq_channels_closed_total": ("counter", "Total number of channels closed"),
    "rabbitmq_queues_declared_total": ("counter", "Total number of queues declared"),
    "rabbitmq_queues_created_total": ("counter", "Total number of queues created"),
    "rabbitmq_queues_deleted_total": ("counter", "Total number of queues deleted"),
    "rabbitmq_channel_messages_published_total": (
        "counter",
        "Total number of messages published into an exchange on a channel",
    ),
    "rabbitmq_channel_messages_unacked": ("gauge", "Delivered but not yet acknowledged messages"),
    "rabbitmq_connection_incoming_bytes_total": ("counter", "Total number of bytes received on a connection"),
    "rabbitmq_global_messages_received_total": ("counter", "Total number of messages received from publishers"),
    "rabbitmq_global_messages_routed_total": ("counter", "Total number of messages routed to queues or streams"),
    "rabbitmq_global_messages_confirmed_total": ("counter", "Total number of messages confirmed to publishers"),
    "rabbitmq_global_messages_delivered_total": ("counter", "Total number of messages delivered to consumers"),
    "rabbitmq_global_messages_acknowledged_total": ("counter", "Total number of messages acknowledged by consumers"),
    "rabbitmq_global_messages_redelivered_total": ("counter", "Total number of messages redelivered to consumers"),
    "rabbitmq_global_messages_unroutable_dropped_total": (
        "counter",
        "Total number of messages published as non-mandatory into an exchange and dropped as unroutable",
    ),
    "rabbitmq_global_messages_unroutable_returned_total": (
        "counter",
        "Total number of messages published as mandatory into an exchange and returned to the publisher as unroutable",
    ),
    "rabbitmq_global_consumers": ("gauge", "Current number of consumers"),
    "rabbitmq_global_publishers": ("gauge", "Current number of publishers"),
    "rabbitmq_auth_attempts_total": ("counter", "Total number of authorization attempts"),
    "rabbitmq_auth_attempts_succeeded_total": ("counter", "Total number of successful authentication attempts"),
    "rabbitmq_auth_attempts_failed_total": ("counter", "Total number of failed authentication attempts"),
    "rabbitmq_process_resident_memory_bytes": ("gauge", "Memory used in bytes"),
    "rabbitmq_process_open_fds": ("gauge", "Open file descriptors"),
    "rabbitmq_process_max_fds": ("gauge", "Open file descriptors limit"),
    "rabbitmq_disk_space_available_bytes": ("gauge", "Disk space available in bytes"),
    "rabbitmq_disk_space_available_limit_bytes": ("gauge", "Free disk space low watermark in bytes"),
    "rabbitmq_resident_memory_limit_bytes": ("gauge", "Memory high watermark in bytes"),
    "rabbitmq_alarms_memory_used_watermark": ("unknown", "is 1 if VM memory watermark alarm is in effect"),
    "rabbitmq_alarms_free_disk_space_watermark": ("unknown", "is 1 if free disk space watermark alarm is in effect"),
    "rabbitmq_build_info": ("unknown", "RabbitMQ & Erlang/OTP version info"),  # "untyped" on the wire
    "rabbitmq_identity_info": ("unknown", "RabbitMQ node & cluster identity info"),
}


def test_the_listening_line_gives_the_port_and_content_is_the_text_format(process: BrokerProcess) -> None:
    assert process.prometheus_port and process.prometheus_port != process.management_port
    content_type, _ = fetch(process, "/metrics")
    assert content_type.startswith("text/plain; version=0.0.4")


def test_the_listening_line_is_printed_whatever_the_log_level(tmp_path: Path) -> None:
    broker = BrokerProcess(tmp_path, "--log-level", "error").start()
    try:
        assert broker.prometheus_port
        assert any(line.startswith("amqp-server prometheus listening on 127.0.0.1:") for line in broker.log)
    finally:
        broker.stop()


def test_minus_one_turns_the_endpoint_off(tmp_path: Path) -> None:
    broker = BrokerProcess(tmp_path, "--prometheus-port", "-1").start()
    try:
        assert broker.port and not broker.prometheus_port
        assert not any("prometheus listening" in line for line in broker.log)
    finally:
        broker.stop()


@pytest.mark.parametrize("path", ["/metrics", "/metrics/per-object"])
def test_rabbitmq_names_types_and_help_texts(process: BrokerProcess, path: str) -> None:
    found = families(process, path)
    wrong = {name: found.get(name) for name, expected in RABBITMQ_METRICS.items() if found.get(name) != expected}
    assert not wrong


def test_per_object_queue_figures_follow_amqp(process: BrokerProcess, amqp: pika.BlockingConnection) -> None:
    channel = amqp.channel()
    channel.confirm_delivery()
    queue = channel.queue_declare("prom-ready", auto_delete=False).method.queue
    for _ in range(3):
        channel.basic_publish("", queue, b"hello")
    found = samples(process, "/metrics/per-object")
    labels = {"vhost": "/", "queue": queue}
    assert value(found, "rabbitmq_queue_messages_ready", **labels) == 3
    assert value(found, "rabbitmq_queue_messages", **labels) == 3
    assert value(found, "rabbitmq_queue_messages_ready_bytes", **labels) == 15
    method, _, _ = channel.basic_get(queue)
    assert method is not None
    found = samples(process, "/metrics/per-object")
    assert value(found, "rabbitmq_queue_messages_ready", **labels) == 2
    assert value(found, "rabbitmq_queue_messages_unacked", **labels) == 1
    channel.basic_ack(method.delivery_tag)
    read = lambda: value(samples(process, "/metrics/per-object"), "rabbitmq_queue_messages_unacked", **labels)  # noqa: E731
    wait_for(read, 0, "unacked after the ack")
    channel.queue_delete(queue)
    assert not [
        s for s in samples(process, "/metrics/per-object").get("rabbitmq_queue_messages", []) if s.labels == labels
    ]


def test_connection_and_channel_counts_follow_amqp(process: BrokerProcess, amqp: pika.BlockingConnection) -> None:
    before = samples(process)
    opened = value(before, "rabbitmq_connections_opened_total")
    assert value(before, "rabbitmq_connections") == 1  # the fixture's
    second = pika.BlockingConnection(pika.URLParameters(process.url))
    second.channel()
    second.channel()
    now = samples(process)
    assert value(now, "rabbitmq_connections") == 2
    assert value(now, "rabbitmq_channels") == 2
    assert value(now, "rabbitmq_connections_opened_total") == opened + 1
    per_object = samples(process, "/metrics/per-object")
    assert sorted(s.value for s in per_object["rabbitmq_connection_channels"]) == [0, 2]
    closed = value(now, "rabbitmq_connections_closed_total")
    second.close()
    wait_for(lambda: value(samples(process), "rabbitmq_connections_closed_total"), closed + 1, "connections closed")
    after = samples(process)
    assert value(after, "rabbitmq_connections") == 1
    assert value(after, "rabbitmq_channels_closed_total") >= 2


def test_login_attempts_are_counted(process: BrokerProcess) -> None:
    before = samples(process)
    refused = pika.URLParameters(f"amqp://guest:wrong@127.0.0.1:{process.port}/?socket_timeout={TIMEOUT}")
    with pytest.raises(pika.exceptions.ProbableAuthenticationError):
        pika.BlockingConnection(refused)
    pika.BlockingConnection(pika.URLParameters(process.url)).close()
    after = samples(process)
    for name, grown in (("", 2), ("_succeeded", 1), ("_failed", 1)):
        metric = f"rabbitmq_auth_attempts{name}_total"
        assert value(after, metric, protocol="amqp091") - value(before, metric, protocol="amqp091") == grown, name


def test_message_counters_follow_amqp(process: BrokerProcess, amqp: pika.BlockingConnection) -> None:
    channel = amqp.channel()
    queue = channel.queue_declare("", exclusive=True).method.queue
    before = samples(process)

    def grew(name: str, **labels: str) -> float:
        return value(samples(process), name, **labels) - value(before, name, **labels)

    channel.confirm_delivery()
    for _ in range(3):
        channel.basic_publish("", queue, b"x" * 500)  # confirmed: handled by the time it returns
    channel.basic_publish("", "no-such-queue", b"dropped")
    with pytest.raises(pika.exceptions.UnroutableError):
        channel.basic_publish("amq.direct", "nowhere", b"returned", mandatory=True)
    assert grew("rabbitmq_global_messages_received_total", protocol="amqp091") == 5
    assert grew("rabbitmq_global_messages_received_confirm_total", protocol="amqp091") == 5
    assert grew("rabbitmq_global_messages_confirmed_total", protocol="amqp091") == 5
    assert grew("rabbitmq_global_messages_routed_total", protocol="amqp091") == 3
    assert grew("rabbitmq_global_messages_unroutable_dropped_total", protocol="amqp091") == 1
    assert grew("rabbitmq_global_messages_unroutable_returned_total", protocol="amqp091") == 1
    assert grew("rabbitmq_message_size_bytes_bucket", protocol="amqp091", le="1000.0") == 5
    assert grew("rabbitmq_message_size_bytes_bucket", protocol="amqp091", le="100.0") == 2
    method, _, _ = channel.basic_get(queue)
    channel.basic_nack(method.delivery_tag, requeue=True)
    for _ in range(3):  # the requeued one (redelivered), then the other two
        assert channel.basic_get(queue, auto_ack=True)[0] is not None
    assert channel.basic_get(queue, auto_ack=True)[0] is None  # empty
    received: list[bytes] = []
    channel.basic_publish("", queue, b"y")
    channel.basic_consume(queue, lambda ch, m, p, body: (received.append(body), ch.basic_ack(m.delivery_tag)))
    deadline = time.monotonic() + TIMEOUT
    while not received and time.monotonic() < deadline:
        amqp.process_data_events(0.05)
    typed = {"protocol": "amqp091", "queue_type": "rabbit_classic_queue"}
    wait_for(lambda: grew("rabbitmq_global_messages_acknowledged_total", **typed), 1, "acknowledged")
    assert grew("rabbitmq_global_messages_delivered_get_manual_ack_total", **typed) == 1
    assert grew("rabbitmq_global_messages_delivered_get_auto_ack_total", **typed) == 3
    assert grew("rabbitmq_global_messages_get_empty_total", **typed) == 1
    assert grew("rabbitmq_global_messages_delivered_consume_manual_ack_total", **typed) == 1
    assert grew("rabbitmq_global_messages_delivered_total", **typed) == 5
    assert grew("rabbitmq_global_messages_redelivered_total", **typed) == 1
    assert value(samples(process), "rabbitmq_global_consumers", protocol="amqp091") == 1
    assert value(samples(process), "rabbitmq_global_publishers", protocol="amqp091") >= 1


def test_queue_churn_counters(process: BrokerProcess, amqp: pika.BlockingConnection) -> None:
    channel = amqp.channel()
    before = samples(process)
    channel.queue_declare("prom-churn")
    channel.queue_declare("prom-churn")  # declared again: not created again
    channel.queue_declare("prom-churn", passive=True)  # passive: not a declaration
    channel.queue_delete("prom-churn")
    after = samples(process)
    for name, grown in (("declared", 2), ("created", 1), ("deleted", 1)):
        metric = f"rabbitmq_queues_{name}_total"
        assert value(after, metric) - value(before, metric) == grown, name


def test_concurrent_scrapes_each_get_their_own_endpoint(process: BrokerProcess) -> None:
    paths = ["/metrics", "/metrics/per-object", "/metrics/detailed?family=queue_coarse_metrics"] * 3
    endpoints = {"/metrics": "aggregated", "/metrics/per-object": "per-object"}
    with ThreadPoolExecutor(len(paths)) as pool:
        results = list(pool.map(lambda path: samples(process, path), paths))
    for path, found in zip(paths, results, strict=True):
        (identity,) = found["rabbitmq_identity_info"]
        assert identity.labels["rabbitmq_endpoint"] == endpoints.get(path, "detailed"), path


def test_detailed_families_and_vhost_filter(process: BrokerProcess, amqp: pika.BlockingConnection) -> None:
    channel = amqp.channel()
    queue = channel.queue_declare("", exclusive=True).method.queue
    found = samples(process, "/metrics/detailed?family=queue_coarse_metrics&family=connection_churn_metrics")
    assert value(found, "rabbitmq_detailed_queue_messages_ready", vhost="/", queue=queue) == 0
    assert "rabbitmq_detailed_connections_opened_total" in found
    assert not [name for name in found if name.startswith("rabbitmq_detailed_channel_")]  # channel_metrics: not asked
    assert value(found, "rabbitmq_identity_info", rabbitmq_endpoint="detailed") == 1
    found = samples(process, "/metrics/detailed?family=queue_coarse_metrics&vhost=no-such-vhost")
    assert "rabbitmq_detailed_queue_messages_ready" not in found
    found = samples(process, "/metrics/detailed?family=exchange_names&family=vhost_status&vhost=/")
    assert value(found, "rabbitmq_cluster_exchange_name", vhost="/", exchange="amq.topic", type="topic") == 1
    assert value(found, "rabbitmq_cluster_vhost_status", vhost="/") == 1


# ------------------------------------------------------------------ RabbitMQ-Overview (Grafana), as facts

# Every metric the dashboard's panels query (deps/rabbitmq_prometheus/docker/grafana/dashboards/
# RabbitMQ-Overview.json in rabbitmq-server), each joined to rabbitmq_identity_info with
# `* on(instance, job) group_left(rabbitmq_cluster, rabbitmq_node) rabbitmq_identity_info{rabbitmq_cluster=…,
# rabbitmq_endpoint=…}`; `instance` and `job` are Prometheus' own target labels.
DASHBOARD_METRICS = (
    "rabbitmq_queue_messages_ready",
    "rabbitmq_queue_messages_unacked",
    "rabbitmq_global_messages_delivered_total",
    "rabbitmq_global_publishers",
    "rabbitmq_connections",
    "rabbitmq_queues",
    "rabbitmq_global_messages_received_total",
    "rabbitmq_global_consumers",
    "rabbitmq_channels",
    "rabbitmq_erlang_uptime_seconds",
    "rabbitmq_resident_memory_limit_bytes",
    "rabbitmq_process_resident_memory_bytes",
    "rabbitmq_disk_space_available_bytes",
    "rabbitmq_disk_space_available_limit_bytes",
    "rabbitmq_process_max_fds",
    "rabbitmq_process_open_fds",
    "rabbitmq_message_size_bytes_sum",
    "rabbitmq_message_size_bytes_count",
    "rabbitmq_message_size_bytes_bucket",
    "rabbitmq_global_messages_routed_total",
    "rabbitmq_global_messages_confirmed_total",
    "rabbitmq_global_messages_unroutable_dropped_total",
    "rabbitmq_global_messages_unroutable_returned_total",
    "rabbitmq_global_messages_received_confirm_total",
    "rabbitmq_global_messages_delivered_consume_auto_ack_total",
    "rabbitmq_global_messages_delivered_consume_manual_ack_total",
    "rabbitmq_global_messages_redelivered_total",
    "rabbitmq_global_messages_acknowledged_total",
    "rabbitmq_global_messages_delivered_get_auto_ack_total",
    "rabbitmq_global_messages_get_empty_total",
    "rabbitmq_global_messages_delivered_get_manual_ack_total",
    "rabbitmq_queues_declared_total",
    "rabbitmq_queues_created_total",
    "rabbitmq_queues_deleted_total",
    "rabbitmq_channels_opened_total",
    "rabbitmq_channels_closed_total",
    "rabbitmq_connections_opened_total",
    "rabbitmq_connections_closed_total",
    "rabbitmq_build_info",
    "rabbitmq_identity_info",
)
# the labels the dashboard takes from the joined series (group_left) and filters or groups on
IDENTITY_LABELS = ("rabbitmq_node", "rabbitmq_cluster", "rabbitmq_endpoint")
BUILD_INFO_LABELS = ("rabbitmq_version", "erlang_version")
# the message size panels' buckets, spelt as their queries spell them
SIZE_BUCKETS = ("100.0", "1000.0", "10000.0", "100000.0", "1e+06", "1e+07", "5e+07", "1e+08", "+Inf")


def test_every_metric_of_the_rabbitmq_overview_dashboard_is_present_with_its_join_labels(
    process: BrokerProcess,
) -> None:
    found = samples(process)
    assert not [name for name in DASHBOARD_METRICS if not found.get(name)]
    (identity,) = found["rabbitmq_identity_info"]  # exactly one: the join needs one match per instance and job
    assert all(identity.labels.get(label) for label in IDENTITY_LABELS)
    assert identity.labels["rabbitmq_endpoint"] == "aggregated"  # what the dashboard's $endpoint lists
    (build,) = found["rabbitmq_build_info"]
    assert all(build.labels.get(label) for label in BUILD_INFO_LABELS)
    assert {sample.labels["le"] for sample in found["rabbitmq_message_size_bytes_bucket"]} == set(SIZE_BUCKETS)
    # no series may carry the labels the join copies in, or group_left would clash with them
    clashing = {
        name
        for name in DASHBOARD_METRICS
        if name != "rabbitmq_identity_info"
        for sample in found[name]
        if {"rabbitmq_node", "rabbitmq_cluster"} & set(sample.labels)
    }
    assert not clashing
