"""Who is calling: HTTP Basic credentials checked against the broker's users, and RabbitMQ's tags.

The password check and the loopback rule (``guest`` only from 127.0.0.1/::1) are
the AMQP ones, through ``BrokerOperations.authenticate``.  Tags, as RabbitMQ's
management plugin: ``management`` sees the objects of the vhosts it has permissions
on (and only its own connections and channels), ``policymaker`` adds policies,
``monitoring`` sees every vhost and connection, ``administrator`` may do anything.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from .errors import not_authorised

MANAGEMENT_TAGS = frozenset({"management", "policymaker", "monitoring", "administrator"})


@dataclass(frozen=True)
class Caller:
    """The authenticated user of one request."""

    name: str
    tags: frozenset[str]

    @property
    def is_administrator(self) -> bool:
        return "administrator" in self.tags

    @property
    def is_monitoring(self) -> bool:
        """Sees everything (every vhost, every connection): monitoring and administrator."""
        return self.is_administrator or "monitoring" in self.tags

    @property
    def is_policymaker(self) -> bool:
        return self.is_administrator or "policymaker" in self.tags

    def require_administrator(self) -> None:
        if not self.is_administrator:
            raise not_authorised("Not administrator user")

    def require_monitoring(self) -> None:
        if not self.is_monitoring:
            raise not_authorised("Not monitor user")

    def require_policymaker(self) -> None:
        if not self.is_policymaker:
            raise not_authorised("Not policymaker user")


def basic_credentials(header: str | None) -> tuple[str, str] | None:
    """``(username, password)`` of an ``Authorization: Basic …`` header; None if absent or malformed."""
    if not header:
        return None
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    username, separator, password = decoded.partition(":")
    return (username, password) if separator else None
