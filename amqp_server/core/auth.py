"""SASL mechanisms offered in ``connection.start``: PLAIN and AMQPLAIN."""

from __future__ import annotations

import struct

from pamqp import decode


def parse_credentials(mechanism: str, response: str | bytes) -> tuple[str, str] | None:
    """Return ``(username, password)`` from a start-ok response, or None if it is malformed."""
    raw = response.encode("utf-8", "surrogateescape") if isinstance(response, str) else bytes(response)
    if mechanism == "PLAIN":
        parts = raw.split(b"\x00")
        if len(parts) != 3:
            return None
        return parts[1].decode("utf-8", "replace"), parts[2].decode("utf-8", "replace")
    if mechanism == "AMQPLAIN":
        # a field table without its length prefix (RabbitMQ and every client send it so)
        try:
            _, table = decode.field_table(struct.pack(">I", len(raw)) + raw)
        except Exception:
            return None
        login, password = table.get("LOGIN"), table.get("PASSWORD")
        if not isinstance(login, (str, bytes)) or not isinstance(password, (str, bytes)):
            return None
        return _text(login), _text(password)
    return None


def _text(value: str | bytes) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value
