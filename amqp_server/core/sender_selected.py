"""Sender-selected distribution: a message's CC and BCC header keys route it as extra routing keys.

RabbitMQ's rules: both headers must be arrays (406 otherwise), their string entries are extra routing
keys, and BCC is removed before the message is delivered.  The keys travel on the message
(``Message.extra_routing_keys``), not in its stored record: what reads a message back from the store
to route it again (a delayed message firing) keeps BCC in the stored header and applies this again.
"""

from __future__ import annotations

from ..errors import cc_not_array
from ..wire.properties import ContentHeader, decode_value, type_name
from . import dead_letter
from .message import Message


def sender_selected(message: Message) -> Message:
    """Apply CC/BCC headers: their keys become extra routing keys, and BCC is removed (RabbitMQ's rules).

    Raises ``ChannelError`` 406 when CC or BCC is not an array, as RabbitMQ does.
    """
    entries = ContentHeader(message.header).header_entries()
    keys: list[str] = []
    for name in ("CC", "BCC"):
        raw = entries.get(name)
        if raw is None:
            continue
        if raw[:1] != b"A":
            raise cc_not_array(name, type_name(raw))
        keys.extend(dead_letter.string_list(decode_value(raw)))
    if not keys and "BCC" not in entries:
        return message
    if "BCC" in entries:
        message = dead_letter.with_headers(message, {}, remove=("BCC",))
    message.extra_routing_keys = tuple(keys)
    return message


def with_bcc_kept(message: Message) -> Message:
    """``message`` with its BCC keys (already stripped from the header) written back as a BCC header, for a
    copy that is stored and routed again later: ``sender_selected`` then finds every key once more."""
    if not message.extra_routing_keys:
        return message
    raw = ContentHeader(message.header).header_entries().get("CC")
    carbon_copies = dead_letter.string_list(decode_value(raw)) if raw is not None else []
    blind = message.extra_routing_keys[len(carbon_copies) :]  # sender_selected lists CC's keys first
    return dead_letter.with_headers(message, {"BCC": list(blind)}) if blind else message
