"""The in-memory store: for tests and transient brokers, and the executable contract.

It keeps exactly what a durable store would persist, so a new broker built on
the same ``MemoryStore`` object recovers the same state — which lets the core's
recovery logic be tested without a disk.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable

from .api import (
    BindingKey,
    BindingRecord,
    ExchangeRecord,
    MessageRecord,
    PolicyKey,
    PolicyRecord,
    QueueRecord,
    Recovered,
    StreamIndex,
    StreamRecord,
    binding_key,
    policy_key,
)


class MemoryStore:
    """A ``storage.api.Store`` held in dicts; ``sync`` is a no-op."""

    def __init__(self) -> None:
        self._exchanges: dict[tuple[str, str], ExchangeRecord] = {}
        self._queues: dict[tuple[str, str], QueueRecord] = {}
        self._bindings: dict[BindingKey, BindingRecord] = {}
        self._messages: dict[tuple[str, str], dict[int, MessageRecord]] = {}
        self._policies: dict[PolicyKey, PolicyRecord] = {}
        self._streams: dict[tuple[str, str], tuple[list[int], list[StreamRecord]]] = {}  # [first], records
        self._delayed: dict[tuple[str, str], dict[int, tuple[float, MessageRecord]]] = {}

    def recover(self) -> Recovered:
        return Recovered(
            exchanges=list(self._exchanges.values()),
            queues=list(self._queues.values()),
            bindings=list(self._bindings.values()),
            policies=list(self._policies.values()),
            messages={key: sorted(messages.items()) for key, messages in self._messages.items() if messages},
            streams={key: _index(first, records) for key, (first, records) in self._streams.items()},
            delayed={
                key: [(delayed_id, held[0]) for delayed_id, held in sorted(entries.items())]
                for key, entries in self._delayed.items()
                if entries
            },
        )

    def put_exchange(self, record: ExchangeRecord) -> None:
        self._exchanges[(record.vhost, record.name)] = record

    def delete_exchange(self, vhost: str, name: str) -> None:
        self._exchanges.pop((vhost, name), None)
        self._delayed.pop((vhost, name), None)
        self._forget_bindings(
            lambda b: (
                b.vhost == vhost and (b.source == name or (b.destination == name and b.destination_kind == "exchange"))
            )
        )

    def put_queue(self, record: QueueRecord) -> None:
        self._queues[(record.vhost, record.name)] = record

    def delete_queue(self, vhost: str, name: str) -> None:
        self._queues.pop((vhost, name), None)
        self._messages.pop((vhost, name), None)
        self._streams.pop((vhost, name), None)
        self._forget_bindings(lambda b: b.vhost == vhost and b.destination == name and b.destination_kind == "queue")

    def put_binding(self, record: BindingRecord) -> None:
        self._bindings[binding_key(record)] = record

    def delete_binding(self, record: BindingRecord) -> None:
        self._bindings.pop(binding_key(record), None)

    def put_policy(self, record: PolicyRecord) -> None:
        self._policies[policy_key(record)] = record

    def delete_policy(self, vhost: str, name: str, operator: bool = False) -> None:
        self._policies.pop((vhost, operator, name), None)

    def put_message(self, vhost: str, queue: str, message_id: int, record: MessageRecord) -> None:
        self._messages.setdefault((vhost, queue), {})[message_id] = record

    def remove_messages(self, vhost: str, queue: str, message_ids: Iterable[int]) -> None:
        messages = self._messages.get((vhost, queue))
        if messages is not None:
            for message_id in message_ids:
                messages.pop(message_id, None)

    def put_delayed(self, vhost: str, exchange: str, delayed_id: int, fire_at: float, record: MessageRecord) -> None:
        self._delayed.setdefault((vhost, exchange), {})[delayed_id] = (fire_at, record)

    def remove_delayed(self, vhost: str, exchange: str, delayed_ids: Iterable[int]) -> None:
        held = self._delayed.get((vhost, exchange))
        if held is not None:
            for delayed_id in delayed_ids:
                held.pop(delayed_id, None)

    def read_delayed(self, vhost: str, exchange: str, delayed_id: int) -> MessageRecord:
        return self._delayed[(vhost, exchange)][delayed_id][1]

    def _forget_bindings(self, doomed: Callable[[BindingRecord], bool]) -> None:
        for key in [key for key, binding in self._bindings.items() if doomed(binding)]:
            del self._bindings[key]

    def read_message(self, vhost: str, queue: str, message_id: int) -> MessageRecord:
        return self._messages[(vhost, queue)][message_id]

    def append_stream(self, vhost: str, queue: str, record: StreamRecord) -> None:
        self._streams.setdefault((vhost, queue), ([record.offset], []))[1].append(record)

    def read_stream(self, vhost: str, queue: str, start: int, count: int) -> list[StreamRecord]:
        records = self._streams.get((vhost, queue), ([0], []))[1]
        at = bisect_left(records, start, key=lambda record: record.offset)
        return records[at : at + count]

    def truncate_stream(self, vhost: str, queue: str, first: int) -> None:
        stream = self._streams.get((vhost, queue))
        if stream is not None and first > stream[0][0]:
            records = stream[1]
            stream[0][0] = min(first, records[-1].offset + 1 if records else first)
            del records[: bisect_left(records, first, key=lambda record: record.offset)]

    def sync(self) -> None:
        """Nothing to do: memory is as durable as this store gets."""

    def close(self) -> None:
        """Nothing to release."""


def _index(first: list[int], records: list[StreamRecord]) -> StreamIndex:
    index = StreamIndex(first[0])
    for record in records:
        index.sizes.append(len(record.message.header) + len(record.message.body))
        index.timestamps.append(record.timestamp)
    return index
