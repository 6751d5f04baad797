"""The Prometheus collector over a broker, without HTTP: a snapshot rendered by prometheus_client and parsed back.

The HTTP endpoints, against a broker process, are in interop_tests/test_prometheus.py.
"""

from __future__ import annotations

import prometheus_client
from prometheus_client.parser import text_string_to_metric_families

from amqp_server.core.broker import Broker
from amqp_server.core.operations import BrokerOperations
from amqp_server.http import prometheus

FACTS = prometheus.NodeFacts(node="rabbit@test", cluster="amqp-server", cluster_id="rabbitmq-cluster-id-x", started=0.0)


def render(broker: Broker, endpoint: str = prometheus.PER_OBJECT, **options: object) -> dict[str, float]:
    """``{sample line's name{labels}: value}`` of one scrape of ``broker``."""
    exporter = prometheus.Exporter(BrokerOperations(broker), FACTS)
    text = exporter.text(prometheus.Scrape(exporter.operations.snapshot(), endpoint, **options)).decode()  # type: ignore[arg-type]
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


# ------------------------------------------------------------------ the counts the core keeps (sans-IO)


def test_channel_message_counts_and_churn_survive_the_channel_and_connection() -> None:
    from pamqp import commands

    from tests.frames import open_peer, publish

    peer = open_peer()
    broker = peer.broker
    peer.send_method(1, commands.Queue.Declare(queue="q"))
    peer.send_method(1, commands.Queue.Declare(queue="q"))  # declared twice, created once
    peer.send_method(1, commands.Confirm.Select())
    peer.send(publish(1, "q", b"a" * 50) + publish(1, "q", b"b" * 500))
    peer.send(publish(1, "nowhere", b"dropped") + publish(1, "nowhere", b"returned", mandatory=True))
    peer.send_method(1, commands.Basic.Get(queue="q"))  # delivery tag 1, manual ack
    peer.send_method(1, commands.Basic.Nack(delivery_tag=1, requeue=True))
    peer.send_method(1, commands.Basic.Get(queue="q", no_ack=True))  # the redelivered one
    peer.send_method(1, commands.Basic.Get(queue="q"))  # tag 3
    peer.send_method(1, commands.Basic.Ack(delivery_tag=3))
    peer.send_method(1, commands.Basic.Get(queue="q"))  # empty
    peer.frames()
    live = BrokerOperations(broker).snapshot()
    assert live.counts["publish"] == 4 and live.counts["confirm_publish"] == 4 and live.counts["confirm"] == 4
    assert (live.counts["drop_unroutable"], live.counts["return_unroutable"]) == (1, 1)
    assert (live.counts["get"], live.counts["get_no_ack"], live.counts["get_empty"]) == (2, 1, 1)
    assert (live.counts["deliveries"], live.counts["redeliver"], live.counts["ack"]) == (3, 1, 1)
    assert live.sizes[:3] == [3, 1, 0] and live.counts["publish_bytes"] == 50 + 500 + 7 + 8
    peer.send_method(0, commands.Connection.Close(reply_code=200, reply_text="bye", class_id=0, method_id=0))
    gone = BrokerOperations(broker).snapshot()
    assert not gone.channels and gone.counts == live.counts and gone.sizes == live.sizes  # retired, not lost
    assert gone.churn == {
        "connections_opened": 1,
        "connections_closed": 0,  # closed once the socket goes (Connection._finish)
        "channels_opened": 1,
        "channels_closed": 1,
        "queues_declared": 2,
        "queues_created": 1,
        "queues_deleted": 0,
        "auth_attempts": 1,
        "auth_failed": 0,
    }
    peer.connection.connection_lost()
    assert BrokerOperations(broker).snapshot().churn["connections_closed"] == 1
