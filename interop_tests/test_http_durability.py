"""What the management API answered 201/204 to is on disk: a broker killed with -9 right after the answer has
it back after a restart (policies, operator policies, their deletion, durable queues and bindings declared
over HTTP, a vhost).  Each step is one write, the kill at once, a restart on the same data dir; the steps
run twice over so a reply racing ahead of its sync has several chances to show.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .broker_process import BrokerProcess
from .management_client import Api

POLICY = {"pattern": "^p-", "definition": {"max-length": 7}, "apply-to": "queues"}
OPERATOR_POLICY = {"pattern": "^op-", "definition": {"max-length": 3}, "apply-to": "queues"}


def write_then_kill(
    start_broker: Callable[[Path], BrokerProcess], broker: BrokerProcess, write: Callable[[Api], Any]
) -> BrokerProcess:
    """One write to ``broker``, answered 2xx; kill -9 at once; the broker started again on its data dir."""
    answer = write(Api(broker.http_url))
    assert 200 <= answer.status < 300, (answer.status, answer.body)
    broker.stop(signal.SIGKILL)
    return start_broker(broker.data_dir)


def test_http_writes_survive_kill_9_right_after_their_answer(tmp_path: Path, start_broker) -> None:
    broker = start_broker(tmp_path / "data")
    for round_ in range(2):
        broker = one_round(start_broker, broker, round_)


def one_round(start_broker: Callable[[Path], BrokerProcess], broker: BrokerProcess, round_: int) -> BrokerProcess:
    """Each kind of write once, each followed by kill -9 and a restart that must show it; the last broker."""
    p, op, q, v = f"p-{round_}", f"op-{round_}", f"q-{round_}", f"v-{round_}"

    broker = write_then_kill(start_broker, broker, lambda api: api.put(f"/api/policies/%2F/{p}", POLICY))
    api = Api(broker.http_url)
    assert api.ok("GET", f"/api/policies/%2F/{p}")["definition"] == {"max-length": 7}

    broker = write_then_kill(
        start_broker, broker, lambda api: api.put(f"/api/operator-policies/%2F/{op}", OPERATOR_POLICY)
    )
    assert Api(broker.http_url).ok("GET", f"/api/operator-policies/%2F/{op}")["priority"] == 0

    broker = write_then_kill(start_broker, broker, lambda api: api.delete(f"/api/policies/%2F/{p}"))
    assert Api(broker.http_url).get(f"/api/policies/%2F/{p}").status == 404

    broker = write_then_kill(start_broker, broker, lambda api: api.put(f"/api/queues/%2F/{q}", {"durable": True}))
    assert Api(broker.http_url).ok("GET", f"/api/queues/%2F/{q}")["durable"] is True

    binding = {"routing_key": f"key-{round_}", "arguments": {}}
    broker = write_then_kill(
        start_broker, broker, lambda api: api.post(f"/api/bindings/%2F/e/amq.direct/q/{q}", binding)
    )
    bindings = Api(broker.http_url).ok("GET", f"/api/bindings/%2F/e/amq.direct/q/{q}")
    assert [b["routing_key"] for b in bindings] == [f"key-{round_}"]

    broker = write_then_kill(start_broker, broker, lambda api: api.put(f"/api/vhosts/{v}", {}))
    assert Api(broker.http_url).ok("GET", f"/api/vhosts/{v}")["name"] == v
    return broker
