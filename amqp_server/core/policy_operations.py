"""The policy operations management front ends call (the HTTP API's ``/api/policies``, ``/api/operator-policies``).

Part of the broker's public operations (``core.operations.BrokerOperations`` holds one as
``policies``): plain dicts in RabbitMQ's JSON shape out, JSON bodies in, validated by
``policy_validation.parse_policy`` — the same rules as definitions import and the admin CLI.
A change is written to the store here; the HTTP layer answers once it is synced
(``BrokerOperations.after_pending_writes``), so a policy it confirmed survives a kill -9.
"""

from __future__ import annotations

from typing import Any

from .broker import Broker
from .policy_validation import parse_policy
from .vhost import VirtualHost


class NoSuchVhost(LookupError):
    """The vhost a policy operation names does not exist."""


class PolicyOperations:
    """Reads and changes of one broker's policies and operator policies (``operator=True``)."""

    def __init__(self, broker: Broker) -> None:
        self._broker = broker

    def _vhost(self, name: str) -> VirtualHost:
        vhost = self._broker.vhosts.get(name)
        if vhost is None:
            raise NoSuchVhost(name)
        return vhost

    def list(self, vhosts: list[str] | None = None, operator: bool = False) -> list[dict[str, Any]]:
        """The policies of ``vhosts`` (all: None), each vhost's lowest priority first (RabbitMQ's order)."""
        names = list(self._broker.vhosts) if vhosts is None else vhosts
        return [
            policy.to_json()
            for name in names
            if name in self._broker.vhosts
            for policy in self._broker.vhosts[name].policies.listing(operator)
        ]

    def get(self, vhost: str, name: str, operator: bool = False) -> dict[str, Any] | None:
        policy = self._vhost(vhost).policies.get(name, operator)
        return None if policy is None else policy.to_json()

    def set(self, vhost: str, name: str, body: Any, operator: bool = False) -> bool:
        """Validate ``body`` (a PUT's JSON) and set the policy, applied at once; True if it is new.

        Raises ``NoSuchVhost``, or ``PolicyError`` with RabbitMQ's reason.
        """
        target = self._vhost(vhost)
        created = target.set_policy(parse_policy(vhost, name, body, operator))
        target.take_unsynced_definitions()  # the caller's answer waits for the sync (``after_pending_writes``)
        return created

    def clear(self, vhost: str, name: str, operator: bool = False) -> bool:
        """Delete the policy (what it set reverts at once); False if there is none."""
        target = self._vhost(vhost)
        cleared = target.clear_policy(name, operator)
        target.take_unsynced_definitions()  # as in ``set``
        return cleared
