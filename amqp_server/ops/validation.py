"""One function per validation rule of the operations layer.

The config file, the admin CLI, definitions import and ``access.json`` (and the HTTP API, when it
comes) check the same things — tags, permission patterns, that a user or vhost exists, which TLS
settings go together, the shape of a definitions entry — and each rule is written here once (the
password-hash rule is ``core.access.valid_password_hash``, as the core checks hashes at login).
A rule returns the problem (or the clean value) where callers word the error with their own
context (``users[0].tags: …``, ``permissions[2]: …``); it raises where the error is the same for
every caller.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Container, Iterable, Mapping
from typing import Any

from .errors import AlreadyExists, ConfigError, DefinitionsError, NotFound

# Each TLS setting and the one it is useless without, in the order they are reported.
TLS_NEEDS = (("tls_cert", "tls_key"), ("tls_key", "tls_cert"), ("tls_verify_peer", "tls_ca"), ("tls_ca", "tls_cert"))


# ------------------------------------------------------------------ values


def split_list(text: str) -> list[str]:
    """A comma-separated list, blanks dropped: ``"a, b,,c"`` → ``["a", "b", "c"]``, ``""`` → ``[]``."""
    return [part.strip() for part in text.split(",") if part.strip()]


def tags_from(value: Any) -> list[str] | None:
    """User tags given as a list of strings or as RabbitMQ's older comma-separated string; None if neither."""
    if isinstance(value, str):
        return split_list(value)
    if isinstance(value, list) and all(isinstance(tag, str) for tag in value):
        return value
    return None


def regex_problem(pattern: str) -> str | None:
    """Why ``pattern`` is not a valid permission pattern (a regular expression), or None (``""`` is valid)."""
    try:
        re.compile(pattern)
    except re.error as error:
        return f"invalid regular expression {pattern!r}: {error}"
    return None


# ------------------------------------------------------------------ users and vhosts


def must_exist(kind: str, name: str, names: Container[str]) -> None:
    """Raise ``NotFound`` (``no user 'x'``) unless ``name`` is one of ``names``."""
    if name not in names:
        raise NotFound(kind, name)


def must_be_new(kind: str, name: str, names: Container[str]) -> None:
    """Raise ``AlreadyExists`` (``user 'x' already exists``) if ``name`` is one of ``names``."""
    if name in names:
        raise AlreadyExists(kind, name)


# ------------------------------------------------------------------ TLS


def check_tls_settings(get: Callable[[str], Any], sources: Mapping[str, str] | None = None) -> None:
    """Raise ``ConfigError`` for a TLS setting that is set while one it needs is not.

    ``get(key)`` reads a setting; ``sources`` says where each came from, for the message.
    """
    for key, needs in TLS_NEEDS:
        if get(key) and not get(needs):
            where = f" (from {sources[key]})" if sources is not None else ""
            raise ConfigError(needs, f"required when {key} is set{where}")


# ------------------------------------------------------------------ definitions JSON entries


def json_object(item: Any, where: str) -> dict[str, Any]:
    """``item`` if it is a JSON object, else ``DefinitionsError``."""
    if not isinstance(item, dict):
        raise DefinitionsError(f"{where}: expected an object, got {json.dumps(item)}")
    return item


def json_string(item: Any, key: str, where: str, allow_empty: bool = False) -> str:
    """The string field ``key`` of the object ``item`` (non-empty unless ``allow_empty``)."""
    value = json_object(item, where).get(key)
    if not isinstance(value, str) or (not value and not allow_empty):
        raise DefinitionsError(
            f"{where}: '{key}' must be a non-empty string" if not allow_empty else f"{where}: '{key}' must be a string"
        )
    return value


def json_lists(data: Mapping[str, Any], sections: Iterable[str]) -> None:
    """Each of ``sections`` that ``data`` has must be a list."""
    for section in sections:
        if not isinstance(data.get(section, []), list):
            raise DefinitionsError(f"{section}: expected a list")
