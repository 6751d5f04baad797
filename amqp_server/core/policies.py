"""Policies and operator policies: which one applies to a queue or exchange, and what it changes there.

A policy (RabbitMQ's runtime parameter of the same name) sets optional
arguments in bulk: its ``pattern`` is a regular expression searched in the
names of the queues and/or exchanges (``apply-to``) of its vhost, and of the
policies that match an object the one with the highest ``priority`` applies
(RabbitMQ sorts them stably by priority alone, so its winner among equals
depends on its table order; here it is the first by name).  An operator policy
is matched the same way, separately, and its keys are merged into the policy's
with the more conservative value (the lower of the two for every key it may
hold: ``rabbit_policies:merge_policy_value``) — the *effective policy
definition*.

That definition is then resolved against the queue's own ``x-…`` arguments key
by key, exactly as RabbitMQ 3.10 does (``rabbit_amqqueue_process`` for classic
queues, ``rabbit_quorum_queue`` for quorum queues):

    classic   expires, message-ttl, max-length, max-length-bytes, consumer-timeout (3.12): the lower wins;
              dead-letter-exchange, dead-letter-routing-key, overflow: the argument wins
    quorum    max-length, max-length-bytes, delivery-limit, message-ttl, consumer-timeout: the lower wins;
              overflow, expires: the policy wins;
              dead-letter-exchange, dead-letter-routing-key: the argument wins
    stream    max-length-bytes, max-age, stream-max-segment-size-bytes: the lower wins (from the next segment on)

and for exchanges ``alternate-exchange`` comes from the argument if there is
one (``rabbit_policy:get_arg``).  A policy holding a key quorum queues do not
support (``queue-mode``, ``ha-*``, …) does not match quorum queues at all.
Other accepted keys are stored and shown, with no effect here (see the README).

Applying a change re-resolves every queue and exchange of the vhost at once:
a lower max-length trims the queue, a new expires re-arms its timer.  A message
already queued keeps the expiry it was given when published, as in RabbitMQ
(a message-ttl policy applies to messages published after it is set).
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, Protocol

from storage.api import PolicyRecord

from .queue_arguments import age_seconds

if TYPE_CHECKING:
    from .queue_arguments import QueueOptions

APPLY_TO = ("all", "queues", "exchanges", "classic_queues", "quorum_queues", "streams")

# rabbit_quorum_queue:is_policy_applicable (3.10): a policy with one of these does not apply to a quorum queue
NOT_FOR_QUORUM = frozenset(
    {
        "max-priority",
        "queue-mode",
        "single-active-consumer",
        "ha-mode",
        "ha-params",
        "ha-sync-mode",
        "ha-promote-on-shutdown",
        "ha-promote-on-failure",
        "queue-master-locator",
        "max-age",
        "stream-max-segment-size-bytes",
        "queue-leader-locator",
        "initial-cluster-size",
    }
)


def _lower(policy: Any, argument: Any) -> Any:
    return min(policy, argument)


def _argument(policy: Any, argument: Any) -> Any:
    return argument


def _policy(policy: Any, argument: Any) -> Any:
    return policy


# definition key → (QueueOptions field, how a policy value and an argument value resolve)
CLASSIC_RESOLUTION = {
    "expires": ("expires", _lower),
    "dead-letter-exchange": ("dead_letter_exchange", _argument),
    "dead-letter-routing-key": ("dead_letter_routing_key", _argument),
    "message-ttl": ("message_ttl", _lower),
    "max-length": ("max_length", _lower),
    "max-length-bytes": ("max_length_bytes", _lower),
    "overflow": ("overflow", _argument),
    "consumer-timeout": ("consumer_timeout", _lower),
}
QUORUM_RESOLUTION = {
    "max-length": ("max_length", _lower),
    "overflow": ("overflow", _policy),
    "max-length-bytes": ("max_length_bytes", _lower),
    "delivery-limit": ("delivery_limit", _lower),
    "expires": ("expires", _policy),
    "message-ttl": ("message_ttl", _lower),
    "dead-letter-exchange": ("dead_letter_exchange", _argument),
    "dead-letter-routing-key": ("dead_letter_routing_key", _argument),
    "consumer-timeout": ("consumer_timeout", _lower),
}
# rabbit_stream_queue (3.10): the lower of the policy's and the argument's value for all three
STREAM_RESOLUTION = {
    "max-length-bytes": ("max_length_bytes", _lower),
    "max-age": ("max_age", _lower),
    "stream-max-segment-size-bytes": ("max_segment_size", _lower),
}
RESOLUTIONS = {"quorum": QUORUM_RESOLUTION, "stream": STREAM_RESOLUTION}


@functools.lru_cache(maxsize=1024)
def compile_pattern(pattern: str) -> re.Pattern[str]:
    """A policy pattern compiled once; PCRE's ``(?<name>…)`` groups are spelled ``(?P<name>…)`` in Python."""
    return re.compile(re.sub(r"\(\?<(?=[A-Za-z_])", "(?P<", pattern))


@dataclass(frozen=True)
class Policy(PolicyRecord):
    """One policy or operator policy of a vhost (valid: see ``policy_validation.parse_policy``): the store's
    record, with the matching and the JSON form."""

    def applies_to(self, kind: str, name: str, queue_type: str = "classic") -> bool:
        """Whether this policy matches the queue or exchange ``name`` (``kind`` "queue" or "exchange")."""
        if kind == "exchange":
            if self.apply_to not in ("exchanges", "all"):
                return False
        elif self.apply_to not in ("queues", "all", "streams" if queue_type == "stream" else f"{queue_type}_queues"):
            return False
        elif queue_type == "quorum" and not NOT_FOR_QUORUM.isdisjoint(self.definition):
            return False
        return compile_pattern(self.pattern).search(name) is not None

    def to_json(self) -> dict[str, Any]:
        """As the management API and definitions show it (RabbitMQ's field order; its definition is a map, so
        its keys come sorted)."""
        return {
            "vhost": self.vhost,
            "name": self.name,
            "pattern": self.pattern,
            "apply-to": self.apply_to,
            "definition": dict(sorted(self.definition.items())),
            "priority": self.priority,
        }

    def record(self) -> PolicyRecord:
        """The plain record the store keeps, with its own copy of the definition."""
        return PolicyRecord(**_fields(self))

    @classmethod
    def from_record(cls, record: PolicyRecord) -> Policy:
        return cls(**_fields(record))


def _fields(record: PolicyRecord) -> dict[str, Any]:
    values = {item.name: getattr(record, item.name) for item in fields(PolicyRecord)}
    values["definition"] = dict(record.definition)
    return values


class PolicedQueue(Protocol):
    """A queue as policies see it (``core.queue.Queue``): its arguments, and the options policies change."""

    name: str
    arguments: dict[str, Any]
    argument_options: QueueOptions  # what its arguments alone make it
    policy: Policy | None
    operator_policy: Policy | None

    def options_changed(self, options: QueueOptions) -> None: ...


class PolicedExchange(Protocol):
    """An exchange as policies see it (``core.exchanges.Exchange``)."""

    name: str
    policy: Policy | None
    operator_policy: Policy | None


class PolicyTable:
    """The policies and operator policies of one vhost, by name."""

    def __init__(self) -> None:
        self.policies: dict[str, Policy] = {}
        self.operator_policies: dict[str, Policy] = {}

    def __bool__(self) -> bool:
        return bool(self.policies or self.operator_policies)

    def _table(self, operator: bool) -> dict[str, Policy]:
        return self.operator_policies if operator else self.policies

    def put(self, policy: Policy) -> bool:
        """Add or replace ``policy``; True if it is new."""
        table = self._table(policy.operator)
        created = policy.name not in table
        table[policy.name] = policy
        return created

    def delete(self, name: str, operator: bool = False) -> Policy | None:
        return self._table(operator).pop(name, None)

    def get(self, name: str, operator: bool = False) -> Policy | None:
        return self._table(operator).get(name)

    def listing(self, operator: bool = False) -> list[Policy]:
        """In RabbitMQ's listing order: lowest priority first."""
        return sorted(self._table(operator).values(), key=lambda policy: (policy.priority, policy.name))

    def match(self, kind: str, name: str, queue_type: str = "classic", operator: bool = False) -> Policy | None:
        """The policy that applies: the matching one of highest priority (the first by name among equals)."""
        best = None
        for policy in self._table(operator).values():
            if (
                best is None
                or policy.priority > best.priority
                or (policy.priority == best.priority and policy.name < best.name)
            ) and policy.applies_to(kind, name, queue_type):
                best = policy
        return best


def effective_definition(policy: Policy | None, operator_policy: Policy | None) -> dict[str, Any]:
    """The policy's definition with the operator policy's merged in (the lower value of a key both set),
    keys sorted (``rabbit_policy:merge_operator_definitions``)."""
    definition = dict(policy.definition) if policy is not None else {}
    for key, value in (operator_policy.definition if operator_policy is not None else {}).items():
        definition[key] = min(definition[key], value) if key in definition else value
    return dict(sorted(definition.items()))


def queue_options(base: QueueOptions, arguments: Mapping[str, Any], definition: Mapping[str, Any]) -> QueueOptions:
    """The options a queue has under ``definition``: its arguments' ``base`` options with RabbitMQ's
    per-key resolution between an argument and the policy's value (see the module docstring)."""
    resolution = RESOLUTIONS.get(base.queue_type, CLASSIC_RESOLUTION)
    changes: dict[str, Any] = {}
    for key, (option, resolve) in resolution.items():
        if key in definition:
            value = definition[key] if key != "max-age" else age_seconds(definition[key])  # "7D" → seconds
            if arguments.get("x-" + key) is not None:
                value = resolve(value, getattr(base, option))
            changes[option] = value
    return dataclasses.replace(base, **changes) if changes else base


def apply_to_queue(table: PolicyTable, queue: PolicedQueue) -> None:
    """Match ``queue`` against the vhost's policies and give it the options that result (if they changed)."""
    queue_type = queue.argument_options.queue_type
    policy = table.match("queue", queue.name, queue_type) if table.policies else None
    operator_policy = table.match("queue", queue.name, queue_type, operator=True) if table.operator_policies else None
    if policy == queue.policy and operator_policy == queue.operator_policy:
        return
    queue.policy, queue.operator_policy = policy, operator_policy
    definition = effective_definition(policy, operator_policy)
    queue.options_changed(queue_options(queue.argument_options, queue.arguments, definition))


def apply_to_exchange(table: PolicyTable, exchange: PolicedExchange) -> None:
    """Match ``exchange`` against the vhost's policies (its alternate exchange may come from its policy)."""
    if exchange.name:  # the default exchange takes no policy, as in RabbitMQ
        exchange.policy = table.match("exchange", exchange.name) if table.policies else None
        exchange.operator_policy = (
            table.match("exchange", exchange.name, operator=True) if table.operator_policies else None
        )


def queue_policy_fields(queue: PolicedQueue) -> dict[str, Any]:
    """``policy``, ``operator_policy`` and ``effective_policy_definition`` as RabbitMQ's management API shows
    them for a queue (null, null and {} when none applies)."""
    return {
        "policy": queue.policy.name if queue.policy is not None else None,
        "operator_policy": queue.operator_policy.name if queue.operator_policy is not None else None,
        "effective_policy_definition": effective_definition(queue.policy, queue.operator_policy),
    }


def exchange_policy_fields(exchange: PolicedExchange) -> dict[str, Any]:
    """An exchange's ``policy`` as RabbitMQ's management API shows it: only when one applies."""
    return {"policy": exchange.policy.name} if exchange.policy is not None else {}
