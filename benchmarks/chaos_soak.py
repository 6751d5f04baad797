"""Chaos soak: minutes of mixed, hostile-but-ordinary traffic against a broker process, then kill -9.

What runs at once, each in its own thread and connection (real pika clients):
- confirm publishers: persistent messages to durable queues (some with a long ``expiration``, some
  without, on the same queues), recording every id the broker confirmed;
- a transactional publisher: batches committed (recorded) or rolled back (not recorded);
- consumers: manual acks, some nack-with-requeue, and now and then an abrupt disconnect (the socket
  is shut down under the client, no ``connection.close``) while holding unacked messages;
- a topology churner: exchanges of every type, exchange-to-exchange bindings, auto-delete and
  exclusive queues, bindings, short TTLs, dead-lettering, deletes;
- a connection churner: connections opened and dropped abruptly, some mid-publish.

At the end the broker is killed with SIGKILL and restarted on the same data dir. Checked:
every confirmed or committed message that was not acknowledged is back (nothing lost), broker RSS
stays flat over the run, and the log holds no traceback. Prints numbers; exits 1 on a failed check.

    python benchmarks/chaos_soak.py --duration 300
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import socket
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pika
import pika.exceptions

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from interop_tests.broker_process import BrokerProcess  # noqa: E402 - the repository root is on the path now

DURABLE_QUEUES = [f"soak.q{i}" for i in range(4)]
ERRORS = (pika.exceptions.AMQPError, OSError, AttributeError, AssertionError)


class Ledger:
    """What the broker promised: confirmed/committed ids, and ids consumers acknowledged."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.promised: dict[str, str] = {}  # id -> how it was promised ("confirmed", "committed", ...)
        self.acked: set[str] = set()
        self.counts: dict[str, int] = {}

    def add(self, what: str, ids: list[str] | None = None, n: int = 1) -> None:
        with self.lock:
            self.counts[what] = self.counts.get(what, 0) + (len(ids) if ids is not None else n)
            if ids is not None and what in ("confirmed", "committed", "confirmed with 1 h TTL"):
                self.promised.update(dict.fromkeys(ids, what))
            elif ids is not None and what == "acked":
                self.acked.update(ids)


def connect(port: int) -> pika.BlockingConnection:
    return pika.BlockingConnection(
        pika.ConnectionParameters(
            "127.0.0.1",
            port,
            heartbeat=30,
            blocked_connection_timeout=30,
            socket_timeout=10,
            stack_timeout=30,
            connection_attempts=3,
            retry_delay=0.5,
        )
    )


def drop_abruptly(connection: pika.BlockingConnection) -> None:
    """Shut the socket down under the client: the broker sees a reset, not a connection.close."""
    try:
        connection._impl._transport._sock.shutdown(socket.SHUT_RDWR)  # noqa: SLF001 - on purpose
    except (AttributeError, OSError):
        pass
    try:
        connection.close()
    except ERRORS:
        pass


class Worker(threading.Thread):
    def __init__(self, name: str, port: int, ledger: Ledger, stop: threading.Event, seed: int) -> None:
        super().__init__(name=name, daemon=True)
        self.port, self.ledger, self.stop_event, self.rng = port, ledger, stop, random.Random(seed)

    def run(self) -> None:
        while not self.stop_event.is_set():
            try:
                connection = connect(self.port)
                try:
                    self.session(connection)
                finally:
                    if connection.is_open:
                        try:
                            connection.close()
                        except ERRORS:
                            pass
            except ERRORS as error:
                self.ledger.add(f"{self.name} client error {type(error).__name__}")
                time.sleep(0.2)

    def session(self, connection: pika.BlockingConnection) -> None:
        raise NotImplementedError


class ConfirmPublisher(Worker):
    def session(self, connection: pika.BlockingConnection) -> None:
        channel = connection.channel()
        channel.confirm_delivery()
        for queue in DURABLE_QUEUES:
            channel.queue_declare(queue, durable=True)
        while not self.stop_event.is_set():
            message_id = uuid.uuid4().hex
            # TTL-less, long-TTL (must survive) and short-TTL (may expire) messages mixed on one queue
            roll = self.rng.random()
            expiration = "3600000" if roll < 0.3 else str(self.rng.randint(1, 50)) if roll < 0.4 else None
            try:
                channel.basic_publish(
                    "",
                    self.rng.choice(DURABLE_QUEUES),
                    message_id.encode(),
                    pika.BasicProperties(delivery_mode=2, expiration=expiration),
                )
            except (pika.exceptions.NackError, pika.exceptions.UnroutableError):
                self.ledger.add("nacked")
                continue
            short_ttl = 0.3 <= roll < 0.4
            self.ledger.add("confirmed (short TTL)" if short_ttl else "confirmed", [message_id])
            if expiration is not None and not short_ttl:
                self.ledger.add("confirmed with 1 h TTL", [message_id])
            time.sleep(self.rng.random() * 0.004)  # keep the backlog bounded so RSS tracks leaks, not load


class TxPublisher(Worker):
    def session(self, connection: pika.BlockingConnection) -> None:
        channel = connection.channel()
        for queue in DURABLE_QUEUES:  # before the first commit: a commit routed nowhere promises nothing
            channel.queue_declare(queue, durable=True)
        channel.tx_select()
        while not self.stop_event.is_set():
            ids = [uuid.uuid4().hex for _ in range(self.rng.randint(1, 20))]
            for message_id in ids:
                channel.basic_publish(
                    "", self.rng.choice(DURABLE_QUEUES), message_id.encode(), pika.BasicProperties(delivery_mode=2)
                )
            if self.rng.random() < 0.2:
                channel.tx_rollback()
                self.ledger.add("rolled back", ids)
            else:
                channel.tx_commit()
                self.ledger.add("committed", ids)
            time.sleep(self.rng.random() * 0.05)


class Consumer(Worker):
    """Stops (``consumers_stop``) some seconds before the end, so a backlog is left for the kill -9 check."""

    consumers_stop = threading.Event()

    def session(self, connection: pika.BlockingConnection) -> None:
        if self.consumers_stop.is_set():
            self.stop_event.wait(1)
            return
        if self.rng.random() < 0.2:  # away for a while: backlogs build, TTL'd messages wait behind others
            self.stop_event.wait(self.rng.uniform(0.5, 3))
        channel = connection.channel()
        channel.basic_qos(prefetch_count=self.rng.choice([1, 10, 100]))
        deadline = time.monotonic() + self.rng.uniform(2, 20)

        def on_message(ch, method, properties, body):  # noqa: ANN001 - pika's callback signature
            if self.rng.random() < 0.1:
                ch.basic_nack(method.delivery_tag, requeue=True)
                self.ledger.add("nacked (requeue)")
            else:
                ch.basic_ack(method.delivery_tag)
                self.ledger.add("acked", [body.decode()])

        for queue in DURABLE_QUEUES:
            channel.queue_declare(queue, durable=True)
            channel.basic_consume(queue, on_message)
        while not self.stop_event.is_set() and not self.consumers_stop.is_set() and time.monotonic() < deadline:
            connection.process_data_events(time_limit=0.2)
        if self.rng.random() < 0.5:
            drop_abruptly(connection)
            self.ledger.add("abrupt consumer disconnects")


class TopologyChurner(Worker):
    def session(self, connection: pika.BlockingConnection) -> None:
        channel = connection.channel()
        for _ in range(self.rng.randint(5, 50)):
            if self.stop_event.is_set():
                return
            self.one_round(channel)
            self.ledger.add("topology rounds")

    def one_round(self, channel) -> None:  # noqa: ANN001
        rng, tag = self.rng, uuid.uuid4().hex[:8]
        outer, inner = f"churn.x.{tag}.outer", f"churn.x.{tag}.inner"
        kind = rng.choice(["direct", "fanout", "topic", "headers"])
        durable = rng.random() < 0.3
        channel.exchange_declare(outer, "topic", auto_delete=True, durable=durable)
        inner_auto_delete = rng.random() < 0.5
        channel.exchange_declare(inner, kind, auto_delete=inner_auto_delete, durable=durable)
        channel.exchange_bind(inner, outer, routing_key="#")
        dlx = f"churn.dlq.{tag}"
        channel.queue_declare(dlx, auto_delete=True)
        arguments = {
            "x-message-ttl": rng.choice([0, 5, 50]),
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": dlx,
            "x-max-length": rng.choice([1, 10, 1000]),
        }
        queue = channel.queue_declare(
            "", exclusive=rng.random() < 0.5, auto_delete=True, durable=False, arguments=arguments
        ).method.queue
        channel.queue_bind(queue, inner, routing_key="k", arguments={"x-match": "any", "k": 1})
        for index in range(rng.randint(0, 20)):
            channel.basic_publish(
                outer,
                "k",
                b"churn",
                pika.BasicProperties(
                    expiration=str(rng.randint(0, 100)) if index % 2 else None, headers={"k": 1, "n": index}
                ),
            )
        if rng.random() < 0.5:
            channel.basic_consume(queue, lambda *args: None, auto_ack=True)
        channel.queue_unbind(queue, inner, routing_key="k", arguments={"x-match": "any", "k": 1})
        channel.queue_delete(queue)
        channel.queue_delete(dlx)
        if not inner_auto_delete or rng.random() < 0.5:  # else the broker deleted it with its last binding
            channel.exchange_delete(inner)  # (a kept one is a definition that stays: RSS would grow by design)
        channel.exchange_delete(outer)


class ConnectionChurner(Worker):
    def session(self, connection: pika.BlockingConnection) -> None:
        channel = connection.channel()
        for _ in range(self.rng.randint(0, 50)):
            channel.basic_publish(
                "",
                self.rng.choice(DURABLE_QUEUES),
                b"unconfirmed",
                pika.BasicProperties(delivery_mode=self.rng.choice([1, 2])),
            )
        self.ledger.add("connections churned")
        if self.rng.random() < 0.7:
            drop_abruptly(connection)
        time.sleep(self.rng.random() * 0.1)


def drain(port: int) -> set[str]:
    """Every message left in the durable queues (basic.get until empty)."""
    seen: set[str] = set()
    connection = connect(port)
    channel = connection.channel()
    for queue in DURABLE_QUEUES:
        while True:
            method, _properties, body = channel.basic_get(queue, auto_ack=True)
            if method is None:
                break
            seen.add(body.decode(errors="replace"))
    connection.close()
    return seen


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=300.0, help="seconds of chaos before the kill -9")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--sample-every", type=float, default=10.0, help="seconds between RSS samples")
    parser.add_argument(
        "--only",
        default="",
        help="comma-separated worker kinds to run (default: all), e.g. TxPublisher,Consumer to narrow a failure down",
    )
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="amqp-soak-"))
    log_path = workdir / "broker.log"
    broker = BrokerProcess(workdir / "data").start()
    ledger, stop = Ledger(), threading.Event()
    kinds = [ConfirmPublisher, ConfirmPublisher, TxPublisher, Consumer, Consumer, TopologyChurner, ConnectionChurner]
    if args.only:
        kinds = [kind for kind in kinds if kind.__name__ in args.only.split(",")]
    workers = [
        kind(f"{kind.__name__}-{i}", broker.port, ledger, stop, args.seed * 100 + i) for i, kind in enumerate(kinds)
    ]
    for worker in workers:
        worker.start()
    started, samples = time.monotonic(), []
    consumers_stop_at = args.duration - min(10.0, args.duration / 4)
    while time.monotonic() - started < args.duration:
        elapsed = time.monotonic() - started
        wake = min(elapsed + args.sample_every, args.duration)
        if elapsed < consumers_stop_at < wake:  # stop the consumers on time, not at the next sample
            time.sleep(consumers_stop_at - elapsed)
            Consumer.consumers_stop.set()
        time.sleep(max(0.0, wake - (time.monotonic() - started)))
        samples.append((round(time.monotonic() - started), broker.rss() // 1024))
        print(
            f"t={samples[-1][0]:>4}s rss={samples[-1][1] / 1024:.1f} MiB "
            f"confirmed={ledger.counts.get('confirmed', 0)} committed={ledger.counts.get('committed', 0)} "
            f"acked={ledger.counts.get('acked', 0)}",
            flush=True,
        )
    stop.set()
    for worker in workers:
        worker.join(30)
    alive = [worker.name for worker in workers if worker.is_alive()]
    broker.stop(signal.SIGKILL)
    broker.start(port=broker.port)  # same port, same data dir
    present = drain(broker.port)
    exit_code = broker.stop(signal.SIGTERM, timeout=30)
    with ledger.lock:
        must_survive = ledger.promised.keys() - ledger.acked
        lost = must_survive - present
    log_text = "".join(broker.log)
    log_path.write_text(log_text)
    tracebacks = log_text.count("Traceback")
    warmup = [rss for t, rss in samples if t >= min(60, args.duration / 3)]
    report = {
        "duration_s": args.duration,
        "counts": ledger.counts,
        "must_survive": len(must_survive),
        "present_after_kill9": len(present),
        "lost": len(lost),
        "tracebacks_in_log": tracebacks,
        "rss_mib_first": round(warmup[0] / 1024, 1) if warmup else None,
        "rss_mib_last": round(warmup[-1] / 1024, 1) if warmup else None,
        "rss_mib_max": round(max(warmup) / 1024, 1) if warmup else None,
        "workers_stuck": alive,
        "sigterm_exit_code": exit_code,
        "log": str(log_path),
    }
    print(json.dumps(report, indent=2, sort_keys=True))
    failed = lost or tracebacks or alive or exit_code != 0
    if lost:
        print("LOST (first 10):", [(key, ledger.promised[key]) for key in sorted(lost)[:10]])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
