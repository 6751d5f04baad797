"""RabbitMQ's promises, as a hypothesis state machine over a real broker process that is restarted and killed.

Each example runs ``python -m amqp_server`` on a fresh data dir and walks a
random sequence of steps: publishes (persistent or transient; without TTL, a
1 h TTL or a TTL of a few ms; under confirms, in a committed or rolled-back
transaction, or plain), basic.get and consumers, acks / nacks / rejects (plain
or in a transaction, single or ``multiple``), messages kept unacked across
steps, purges, clean restarts (SIGTERM) and kill -9 (some publishes still in
flight) on the same data dir.  A model of what the broker owes is checked at
every delivery and whenever a queue reports empty:

* confirmed or committed messages that are stored (persistent, or any on the
  quorum queue) survive a kill -9 until acked; every message that reached the
  broker survives a clean restart if stored, and none that is transient on a
  classic queue does;
* acks and purges are at-least-once: after a clean restart they stick, after a
  kill -9 the message may come back — unless the ack was committed (commit-ok
  means durable);
* a message with a 1 h TTL survives restarts; one with a TTL of a few ms is
  never delivered once its deadline plus ``SLACK`` has passed (the deadline is
  counted from the broker's reply, the check from our request: no timing race);
* nothing phantom: no message that was never published, rolled back, settled,
  or is still unacked with us is delivered;
* FIFO: messages never delivered before come in publish order, per queue.

Budget: ``PROMISES_EXAMPLES`` examples of ``PROMISES_STEPS`` steps (the CI
defaults, 5 x 40, take 10-20 s, mostly broker restarts); ``PROMISES_SHRINK=1``
lets hypothesis shrink a failure (slow: every attempt restarts brokers).  For a
longer walk locally: ``PROMISES_EXAMPLES=80 PROMISES_STEPS=80 pytest
interop_tests/test_promises_stateful.py``.  Preconditions and draws depend only
on earlier choices, never on what the broker answered (hypothesis requires it).
"""

from __future__ import annotations

import enum
import functools
import os
import shutil
import signal
import struct
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, precondition, rule
from pamqp import commands

from .broker_process import BrokerProcess
from .durability_helpers import BODY, HEADER, METHOD, AmqpSocket, describe, make_message, message_key

EXAMPLES = int(os.environ.get("PROMISES_EXAMPLES", "5"))
STEPS = int(os.environ.get("PROMISES_STEPS", "40"))
SHRINK = os.environ.get("PROMISES_SHRINK", "") not in ("", "0")

QUEUES = {"classic": {}, "quorum": {"x-queue-type": "quorum"}, "ttl": {}}
LONG_TTL = "3600000"  # 1 h: must survive every restart of a test
SHORT_TTLS = ("0", "5", "40")  # ms
SLACK = 0.25  # s past a short TTL's deadline after which a delivery is a broken promise
PUBLISHES_PER_RESTART = 2  # a restart or kill -9 only after this many publish steps since the last (they are slow)
IDLE = 0.1  # s without a delivery after which a consumer step stops waiting for more (not an assertion)

CONNECTION_CLOSE = struct.pack(">HH", 10, 50)  # class and method id at the start of a method frame's payload
PLAIN, CONFIRM, TX = 1, 2, 3  # the client's channels: gets / consumers / plain publishes, confirms, transactions


class State(enum.Enum):
    READY = "ready in the queue"  # must be delivered before the queue is empty
    MAYBE = "maybe in the queue"  # unconfirmed, acked without commit before a kill -9, short TTL...
    HELD = "delivered to us and unacked"
    ACKED = "acked (not committed)"  # gone; may come back after a kill -9 only
    GONE = "gone for good"


@dataclass
class Msg:
    key: str
    queue: str
    index: int  # publish order, over the whole example
    stored: bool  # persistent, or on the quorum queue: kept by the store
    deadline: float | None  # short TTL: the latest moment the broker may consider it alive
    state: State = State.READY
    synced: bool = False  # confirmed / committed / through a clean shutdown: survives kill -9
    delivered: bool = False
    held_on: tuple[int, int] | None = None  # (channel, delivery tag) while HELD


class Broken(AssertionError):
    """A promise the broker broke (the message says which, and about which message)."""


def step(method: Callable[..., None]) -> Callable[..., None]:
    """Marks the machine unhealthy while a step runs, so teardown skips the final check after a failure."""

    @functools.wraps(method)
    def run(self: Promises, **kwargs: Any) -> None:
        self.healthy = False
        method(self, **kwargs)
        self.healthy = True

    return run


class Client:
    """One connection, channels PLAIN, CONFIRM and TX; every read bounded by AmqpSocket's timeout."""

    def __init__(self, port: int) -> None:
        self.sock = AmqpSocket(port, timeout=5.0).handshake()  # opens channel 1
        self.sock.call(CONFIRM, commands.Channel.Open(), commands.Channel.OpenOk)
        self.sock.call(CONFIRM, commands.Confirm.Select(), commands.Confirm.SelectOk)
        self.sock.call(TX, commands.Channel.Open(), commands.Channel.OpenOk)
        self.sock.call(TX, commands.Tx.Select(), commands.Tx.SelectOk)
        self.confirm_sequence = 0
        for name, arguments in QUEUES.items():
            self.sock.call(
                PLAIN, commands.Queue.Declare(queue=name, durable=True, arguments=arguments), commands.Queue.DeclareOk
            )

    def round_trip(self, channel: int) -> None:
        """Everything sent on ``channel`` before this has been processed by the broker."""
        self.sock.call(channel, commands.Basic.Qos(prefetch_count=0), commands.Basic.QosOk)

    def publish(self, channel: int, messages: list[tuple[str, str, dict[str, Any]]]) -> None:
        self.sock.send(
            b"".join(
                make_message(key, key.encode(), **properties).publish_frames(channel, "", queue)
                for key, queue, properties in messages
            )
        )

    def wait_for_confirms(self, count: int) -> None:
        self.confirm_sequence += count
        acked = 0
        while acked < self.confirm_sequence:
            method = self.expect(CONFIRM)
            if not isinstance(method, commands.Basic.Ack):
                raise Broken(f"expected basic.ack for a publish, got {describe(method)}")
            acked = method.delivery_tag

    def expect(self, channel: int, method_type: type | None = None) -> Any:
        got_channel, method = self.sock.read_method()
        assert got_channel == channel, f"{describe(method)} on channel {got_channel}, expected channel {channel}"
        if method_type is not None and not isinstance(method, method_type):
            raise Broken(f"expected {method_type.__name__} on channel {channel}, got {describe(method)}")
        return method

    def content_key(self) -> str:
        """Read a delivery's content header and body; its message-id."""
        frame_type, _, header = self.sock.read_frame()
        assert frame_type == HEADER, f"expected a content header, got frame type {frame_type}"
        size = struct.unpack_from(">Q", header, 4)[0]
        received = 0
        while received < size:
            frame_type, _, chunk = self.sock.read_frame()
            assert frame_type == BODY, f"expected a body frame, got frame type {frame_type}"
            received += len(chunk)
        return message_key(header)

    def answer_close(self) -> None:
        """Wait for the broker's connection.close (it is shutting down) and answer close-ok, as clients do."""
        while True:
            frame_type, channel, payload = self.sock.read_frame()
            if frame_type == METHOD and channel == 0 and payload[:4] == CONNECTION_CLOSE:
                self.sock.send_method(0, commands.Connection.CloseOk())
                return

    def close(self) -> None:
        self.sock.sock.close()


class Promises(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.healthy = True
        self.data_dir = Path(tempfile.mkdtemp(prefix="promises-"))
        self.broker = BrokerProcess(self.data_dir).start()
        self.client = Client(self.broker.port)
        self.messages: dict[str, Msg] = {}
        self.first_delivered = {name: -1 for name in QUEUES}  # publish index of the last first delivery
        self.waited_for = -1  # messages up to this index were published before the last wait for short TTLs
        self.publishes = 0  # publish steps since the last restart

    def teardown(self) -> None:
        try:
            if self.healthy:
                for queue in QUEUES:
                    self._drain(queue)
            else:  # a step failed: what the broker said is part of the report (pytest shows stderr)
                print("broker log (last 40 lines):\n" + "".join(self.broker.log[-40:]), file=sys.stderr)
        finally:
            self.client.close()
            self.broker.stop(signal.SIGKILL)
            shutil.rmtree(self.data_dir, ignore_errors=True)

    # ------------------------------------------------------------ the model

    def _new(self, queue: str, persistent: bool, ttl: str | None) -> tuple[str, str, dict[str, Any]]:
        key = f"m{len(self.messages)}"
        self.messages[key] = Msg(key, queue, len(self.messages), persistent or queue == "quorum", None)
        properties: dict[str, Any] = {"delivery_mode": 2 if persistent else 1}
        if ttl is not None:
            properties["expiration"] = ttl
        return key, queue, properties

    def _arrived(self, sent: list[tuple[str, str, dict[str, Any]]], synced: bool) -> None:
        """The broker has processed these publishes (``synced``: and promised them to disk, if stored)."""
        now = time.monotonic()
        for key, _, properties in sent:
            message = self.messages[key]
            message.synced = synced and message.stored
            ttl = properties.get("expiration")
            if ttl is not None and ttl != LONG_TTL:
                message.state, message.deadline = State.MAYBE, now + int(ttl) / 1000

    def _delivered(self, queue: str, key: str | None, requested_at: float, channel: int, tag: int) -> None:
        message = self.messages.get(key)
        if message is None:
            raise Broken(f"{queue}: delivered {key!r}, which was never published")
        if message.queue != queue:
            raise Broken(f"{queue}: delivered {key}, which was published to {message.queue}")
        if message.deadline is not None and requested_at > message.deadline + SLACK:
            raise Broken(f"{queue}: delivered {key} {requested_at - message.deadline:.3f} s after its TTL ran out")
        if message.state not in (State.READY, State.MAYBE):
            raise Broken(f"{queue}: delivered {key}, which is {message.state.value}")
        if not message.delivered:
            if message.index < self.first_delivered[queue]:
                raise Broken(f"{queue}: {key} delivered after a message published later (not FIFO)")
            self.first_delivered[queue] = message.index
        message.state, message.delivered, message.held_on = State.HELD, True, (channel, tag)

    def _emptied(self, queue: str) -> None:
        """basic.get-empty: everything of ``queue`` that was ready is lost; what maybe was, is not."""
        for message in self.messages.values():
            if message.queue != queue:
                continue
            if message.state is State.READY:
                raise Broken(
                    f"{queue}: {message.key} lost (queue empty; {'synced' if message.synced else 'unsynced'}"
                    f", {'stored' if message.stored else 'transient'})"
                )
            if message.state is State.MAYBE:
                message.state = State.GONE

    def _held(self, channel: int) -> list[Msg]:
        return sorted(
            (
                message
                for message in self.messages.values()
                if message.state is State.HELD and message.held_on[0] == channel
            ),
            key=lambda message: message.held_on[1],
        )

    def _settled(self, messages: list[Msg], outcome: str, committed: bool) -> None:
        for message in messages:
            message.held_on = None
            if outcome == "requeue":
                message.state = State.READY if message.deadline is None else State.MAYBE
            elif committed or not message.stored:
                message.state = State.GONE
            else:
                message.state = State.ACKED

    def _restarted(self, crashed: bool) -> None:
        for message in self.messages.values():
            state = message.state
            if state is State.HELD:  # back in the queue: the connection went away
                message.held_on = None
                state = State.READY if message.deadline is None else State.MAYBE
            if state is State.GONE:
                continue
            if not message.stored:
                message.state = State.GONE  # transient on a classic queue: no restart keeps it
            elif state is State.ACKED:
                message.state = State.MAYBE if crashed else State.GONE
            elif crashed and not message.synced:
                message.state = State.MAYBE
            else:
                message.state = state
                message.synced = True  # on disk now (a clean shutdown writes everything; else it was synced)

    # ------------------------------------------------------------ broker operations

    def _get(self, channel: int, queue: str, no_ack: bool = False) -> Msg | None:
        requested_at = time.monotonic()
        self.client.sock.send_method(channel, commands.Basic.Get(queue=queue, no_ack=no_ack))
        method = self.client.expect(channel)
        if isinstance(method, commands.Basic.GetEmpty):
            self._emptied(queue)
            return None
        if not isinstance(method, commands.Basic.GetOk):
            raise Broken(f"expected basic.get-ok or get-empty, got {describe(method)}")
        key = self.client.content_key()
        self._delivered(queue, key, requested_at, channel, method.delivery_tag)
        return self.messages[key]

    def _drain(self, queue: str) -> None:
        """basic.get with no_ack until the queue says empty (then nothing it owes may be missing)."""
        for _ in range(len(self.messages) + 1):
            message = self._get(PLAIN, queue, no_ack=True)
            if message is None:
                return
            self._settled([message], "ack", committed=False)
        raise Broken(f"{queue}: more deliveries than messages published")

    def _settle(self, channel: int, messages: list[Msg], outcome: str, multiple: bool = False) -> list[Msg]:
        """Send the ack / nack / reject; returns what it covers (``multiple``: every held up to the last tag)."""
        if not messages:
            return []
        sock = self.client.sock
        if multiple:
            last = max(message.held_on[1] for message in messages)
            messages = [message for message in self._held(channel) if message.held_on[1] <= last]
            frames = {
                "ack": commands.Basic.Ack(delivery_tag=last, multiple=True),
                "requeue": commands.Basic.Nack(delivery_tag=last, multiple=True, requeue=True),
                "reject": commands.Basic.Nack(delivery_tag=last, multiple=True, requeue=False),
            }
            sock.send_method(channel, frames[outcome])
            return messages
        for message in messages:
            tag = message.held_on[1]
            sock.send_method(
                channel,
                {
                    "ack": commands.Basic.Ack(delivery_tag=tag),
                    "requeue": commands.Basic.Reject(delivery_tag=tag, requeue=True),
                    "reject": commands.Basic.Reject(delivery_tag=tag, requeue=False),
                }[outcome],
            )
        return messages

    def _settle_plain(self, messages: list[Msg], outcome: str) -> None:
        if outcome == "hold":
            return
        multiple = outcome.endswith("-multiple")
        outcome = outcome.removesuffix("-multiple")
        covered = self._settle(PLAIN, messages, outcome, multiple)
        self.client.round_trip(PLAIN)
        self._settled(covered, outcome, committed=False)

    def _settle_tx(self, messages: list[Msg], outcome: str) -> None:
        """``outcome``: ack / requeue / reject, then commit; ``rollback``: ack, then roll back (still held)."""
        covered = self._settle(TX, messages, "ack" if outcome == "rollback" else outcome)
        if outcome == "rollback":
            self.client.sock.call(TX, commands.Tx.Rollback(), commands.Tx.RollbackOk)
            return
        self.client.sock.call(TX, commands.Tx.Commit(), commands.Tx.CommitOk)
        self._settled(covered, outcome, committed=True)

    def _restart(self, crashed: bool, in_flight: list[tuple[str, str, dict[str, Any]]] = ()) -> None:
        if in_flight:
            self.client.publish(PLAIN, list(in_flight))
        if crashed:
            code = self.broker.stop(signal.SIGKILL)
        else:
            self.broker.process.send_signal(signal.SIGTERM)  # our connection is still open: the broker closes it
            self.client.answer_close()
            code = self.broker.process.wait(10)
        self.client.close()
        if not crashed and code != 0:
            raise Broken(f"clean shutdown exited with {code}:\n{''.join(self.broker.log[-20:])}")
        for key, _, _ in in_flight:
            self.messages[key].state = State.MAYBE
        self._restarted(crashed)
        self.publishes = 0
        self.broker = BrokerProcess(self.data_dir).start()
        self.client = Client(self.broker.port)

    # ------------------------------------------------------------ rules

    @rule(
        queue=st.sampled_from(sorted(QUEUES)),
        count=st.integers(1, 4),
        persistent=st.booleans(),
        ttl=st.sampled_from([None, None, LONG_TTL, *SHORT_TTLS]),
        via=st.sampled_from(["confirm", "commit", "rollback", "plain"]),
    )
    @step
    def publish(self, queue: str, count: int, persistent: bool, ttl: str | None, via: str) -> None:
        """``count`` messages to ``queue``: TTL and TTL-less ones mix on every queue, and survive restarts."""
        sent = [self._new(queue, persistent, ttl) for _ in range(count)]
        self.publishes += 1
        channel = {"confirm": CONFIRM, "commit": TX, "rollback": TX, "plain": PLAIN}[via]
        self.client.publish(channel, sent)
        if via == "confirm":
            self.client.wait_for_confirms(count)
        elif via == "commit":
            self.client.sock.call(TX, commands.Tx.Commit(), commands.Tx.CommitOk)
        elif via == "rollback":
            self.client.sock.call(TX, commands.Tx.Rollback(), commands.Tx.RollbackOk)
            for key, _, _ in sent:
                self.messages[key].state = State.GONE
            return
        else:
            self.client.round_trip(PLAIN)
        self._arrived(sent, synced=via != "plain")

    @rule(
        queue=st.sampled_from(sorted(QUEUES)),
        count=st.integers(1, 6),
        outcome=st.sampled_from(["ack", "ack-multiple", "requeue", "requeue-multiple", "reject", "hold", "no-ack"]),
    )
    @step
    def get(self, queue: str, count: int, outcome: str) -> None:
        got = []
        for _ in range(count):
            message = self._get(PLAIN, queue, no_ack=outcome == "no-ack")
            if message is None:
                break
            got.append(message)
        if outcome == "no-ack":
            self._settled(got, "ack", committed=False)
        else:
            self._settle_plain(got, outcome)

    @rule(
        queue=st.sampled_from(sorted(QUEUES)),
        count=st.integers(1, 4),
        outcome=st.sampled_from(["ack", "requeue", "reject", "rollback"]),
    )
    @step
    def get_in_tx(self, queue: str, count: int, outcome: str) -> None:
        got = []
        for _ in range(count):
            message = self._get(TX, queue)
            if message is None:
                break
            got.append(message)
        self._settle_tx(got, outcome)

    @rule(
        queue=st.sampled_from(sorted(QUEUES)),
        prefetch=st.integers(1, 5),
        outcome=st.sampled_from(["ack", "ack-multiple", "requeue", "reject", "hold"]),
    )
    @step
    def consume(self, queue: str, prefetch: int, outcome: str) -> None:
        """A consumer with ``prefetch`` credit; reads until it has that many or the queue goes quiet, cancels."""
        sock, got = self.client.sock, []
        sock.call(PLAIN, commands.Basic.Qos(prefetch_count=prefetch), commands.Basic.QosOk)
        requested_at = time.monotonic()
        sock.call(PLAIN, commands.Basic.Consume(queue=queue, consumer_tag="walk"), commands.Basic.ConsumeOk)
        while len(got) < prefetch:
            try:
                _, method = sock.read_method(timeout=IDLE)
            except TimeoutError:
                break
            got.append(self._consumed(queue, method, requested_at))
        sock.send_method(PLAIN, commands.Basic.Cancel(consumer_tag="walk"))
        while not isinstance(method := self.client.expect(PLAIN), commands.Basic.CancelOk):
            got.append(self._consumed(queue, method, requested_at))  # sent before the cancel took effect
        self._settle_plain(got, outcome)

    def _consumed(self, queue: str, method: Any, requested_at: float) -> Msg:
        if not isinstance(method, commands.Basic.Deliver):
            raise Broken(f"expected basic.deliver, got {describe(method)}")
        key = self.client.content_key()
        self._delivered(queue, key, requested_at, PLAIN, method.delivery_tag)
        return self.messages[key]

    @rule(
        outcome=st.sampled_from(["ack", "ack-multiple", "requeue", "requeue-multiple", "reject"]),
        picks=st.lists(st.integers(0, 63), min_size=1, max_size=4),
    )
    @step
    def settle_held(self, outcome: str, picks: list[int]) -> None:
        """Settle some of the messages kept unacked on the plain channel (``picks`` index them, modulo)."""
        held = self._held(PLAIN)
        if held:
            self._settle_plain(
                list({held[pick % len(held)].key: held[pick % len(held)] for pick in picks}.values()), outcome
            )

    @rule(outcome=st.sampled_from(["ack", "requeue", "reject"]))
    @step
    def settle_held_in_tx(self, outcome: str) -> None:
        self._settle_tx(self._held(TX), outcome)

    @rule(queue=st.sampled_from(sorted(QUEUES)))
    @step
    def purge(self, queue: str) -> None:
        self.client.sock.call(PLAIN, commands.Queue.Purge(queue=queue), commands.Queue.PurgeOk)
        self._settled(
            [
                message
                for message in self.messages.values()
                if message.queue == queue and message.state in (State.READY, State.MAYBE)
            ],
            "purge",
            committed=False,
        )

    @rule(queue=st.sampled_from(sorted(QUEUES)))
    @step
    def drain(self, queue: str) -> None:
        self._drain(queue)

    @precondition(lambda self: self.publishes >= PUBLISHES_PER_RESTART)
    @rule()
    @step
    def restart(self) -> None:
        self._restart(crashed=False)

    @precondition(lambda self: self.publishes >= PUBLISHES_PER_RESTART)
    @rule(in_flight=st.lists(st.tuples(st.sampled_from(["classic", "quorum"]), st.booleans()), max_size=30))
    @step
    def kill_9(self, in_flight: list[tuple[str, bool]]) -> None:
        """SIGKILL, with plain publishes possibly still on their way."""
        self._restart(crashed=True, in_flight=[self._new(queue, persistent, None) for queue, persistent in in_flight])

    @precondition(
        lambda self: any(
            message.deadline is not None and message.index > self.waited_for for message in self.messages.values()
        )
    )
    @rule()
    @step
    def let_short_ttls_run_out(self) -> None:
        """Time passes: every short TTL published so far is then over (the deliveries that follow check it)."""
        self.waited_for = len(self.messages)
        time.sleep(max(int(ttl) for ttl in SHORT_TTLS) / 1000 + SLACK)


Promises.TestCase.settings = settings(
    max_examples=EXAMPLES,
    stateful_step_count=STEPS,
    deadline=None,
    database=None,
    print_blob=True,
    phases=[Phase.explicit, Phase.generate, *([Phase.shrink] if SHRINK else [])],
    suppress_health_check=list(HealthCheck),
)
test_promises = Promises.TestCase
