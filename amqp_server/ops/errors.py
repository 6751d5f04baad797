"""The operations layer's errors: one type per kind, shared by the config file, the CLI and definitions import.

- ``ConfigError``: invalid configuration (a flag, an environment variable, a key of the TOML file);
  the command line exits with code 2.
- ``DefinitionsError``: a definitions document (a RabbitMQ definitions file, ``access.json``) that
  cannot be loaded; the message names the entry.
- ``AccessError``: a change to users, vhosts or permissions that cannot be made — ``NotFound``
  (``no user 'x'``), ``AlreadyExists`` (``user 'x' already exists``), or a refusal such as deleting
  the default vhost.

The messages are what users read (the CLI prints them after ``amqp-server:``), so callers that add
where the problem is (``users[0]: …``, ``… (from FILE)``) wrap these rather than writing their own.
"""

from __future__ import annotations


def flag_name(key: str) -> str:
    """The command-line flag of a configuration key: ``tls_cert`` → ``--tls-cert``."""
    return "--" + key.replace("_", "-")


class ConfigError(ValueError):
    """Invalid configuration: the message names the key and where its value came from."""

    def __init__(self, key: str, problem: str, source: str | None = None) -> None:
        self.key = key
        self.problem = problem
        self.source = source
        if source == flag_name(key):  # "--port must be between 0 and 65535, got 70000"
            super().__init__(f"{source} {problem}")
        else:  # "port: must be between 0 and 65535, got 70000 (from AMQP_SERVER_PORT)"
            super().__init__(f"{key}: {problem}" + (f" (from {source})" if source else ""))


class DefinitionsError(ValueError):
    """Users, vhosts, permissions or other definitions (in access.json or a definitions file) that cannot be
    loaded."""


class AccessError(Exception):
    """A change to users, vhosts or permissions that cannot be made."""


class NotFound(AccessError):
    """A user or vhost (``kind``) that does not exist: ``no user 'x'``."""

    def __init__(self, kind: str, name: str) -> None:
        self.kind = kind
        self.name = name
        super().__init__(f"no {kind} '{name}'")


class AlreadyExists(AccessError):
    """A user or vhost (``kind``) that exists already: ``user 'x' already exists``."""

    def __init__(self, kind: str, name: str) -> None:
        self.kind = kind
        self.name = name
        super().__init__(f"{kind} '{name}' already exists")
