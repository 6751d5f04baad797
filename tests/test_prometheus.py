"""The Prometheus collector over a broker, without HTTP: a snapshot rendered by prometheus_client and parsed back.

The HTTP endpoints, against a broker process, are in interop_tests/test_prometheus.py.
"""

from __future__ import annotations

import prometheus_client
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from amqp_server.core.broker import Broker
from amqp_server.core.operations import BrokerOperations
from amqp_server.http import prometheus

FACTS = prometheus.NodeFacts(node="rabbit@test", cluster="amqp-server", cluster_id="rabbitmq-cluster-id-x", started=0.0)


def render(broker: Broker, endpoint: str = prometheus.PER_OBJECT, **options: object) -> dict[str, float]:
    """``{sample line's name{labels}: value}`` of one scrape of ``broker``."""
    exporter = prometheus.Exporter(BrokerOperations(broker), FACTS)
    exporter.collector.scrape = prometheus.Scrape(exporter.operations.snapshot(), endpoint, **options)  # type: ignore[arg-type]
    text = generate_latest(exporter.registry).decode()
    return {
        sample.name + str(sorted(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_queue_figures_per_object_and_summed() -> None:
    broker = Broker()
    operations = BrokerOperations(broker)
    for name in ("a", "b"):
        operations.declare_queue("/", name)
    for _ in range(3):
        operations.publish("/", "", "a", b"12345")
    operations.publish("/", "", "b", b"x")
    per_object = render(broker)
    assert per_object["rabbitmq_queue_messages_ready[('queue', 'a'), ('vhost', '/')]"] == 3
    assert per_object["rabbitmq_queue_messages_ready_bytes[('queue', 'a'), ('vhost', '/')]"] == 15
    assert per_object["rabbitmq_queue_messages_ready[('queue', 'b'), ('vhost', '/')]"] == 1
    aggregated = render(broker, prometheus.AGGREGATED)
    assert aggregated["rabbitmq_queue_messages_ready[]"] == 4
    assert aggregated["rabbitmq_queues[]"] == 2
    assert aggregated["rabbitmq_queues_created_total[]"] == 2


def test_two_brokers_in_one_process_have_their_own_registries_and_leave_the_global_one_alone() -> None:
    first, second = Broker(), Broker()
    BrokerOperations(first).declare_queue("/", "only-in-first")
    assert render(first, prometheus.AGGREGATED)["rabbitmq_queues[]"] == 1
    assert render(second, prometheus.AGGREGATED)["rabbitmq_queues[]"] == 0
    assert not [name for name in prometheus_client.REGISTRY._names_to_collectors if name.startswith("rabbitmq_")]


def test_detailed_gives_only_the_families_asked_for_in_the_vhosts_asked_for() -> None:
    broker = Broker()
    broker.add_vhost("other")
    operations = BrokerOperations(broker)
    operations.declare_queue("/", "here")
    operations.declare_queue("other", "there")
    samples = render(broker, prometheus.DETAILED, families=frozenset({"queue_coarse_metrics"}), vhosts=frozenset({"/"}))
    names = {key.split("[")[0] for key in samples}
    assert names == {
        "rabbitmq_detailed_queue_messages_ready",
        "rabbitmq_detailed_queue_messages_unacked",
        "rabbitmq_detailed_queue_messages",
        "rabbitmq_build_info",
        "rabbitmq_identity_info",
    }
    assert "rabbitmq_detailed_queue_messages[('queue', 'here'), ('vhost', '/')]" in samples
    assert not [key for key in samples if "there" in key]


def test_message_size_histogram_is_cumulative_with_rabbitmqs_bounds() -> None:
    broker = Broker()
    counters = broker.counters
    counters.retired_sizes[:3] = [2, 1, 1]  # two bodies up to 100 bytes, one up to 1000, one up to 10000
    counters.retired["publish"] = 4
    counters.retired["publish_bytes"] = 5000
    samples = render(broker, prometheus.AGGREGATED)
    bucket = "rabbitmq_message_size_bytes_bucket[('le', '{}'), ('protocol', 'amqp091')]"
    assert [samples[bucket.format(le)] for le in ("100.0", "1000.0", "10000.0", "1e+06", "+Inf")] == [2, 3, 4, 4, 4]
    assert samples["rabbitmq_message_size_bytes_sum[('protocol', 'amqp091')]"] == 5000
