"""The broker's configuration: one frozen ``Config`` from a TOML file, environment variables and flags.

Precedence, highest first:

1. command-line flags: ``--tls-cert cert.pem``;
2. environment variables ``AMQP_SERVER_<KEY>``: ``AMQP_SERVER_TLS_CERT=cert.pem``;
3. the TOML file named by ``--config FILE`` (or ``AMQP_SERVER_CONFIG``): ``tls_cert = "cert.pem"``;
4. the defaults of ``Config``.

Every key of ``Config`` except ``users``, ``vhosts`` and ``permissions`` can be
set at every level: the key in the file, ``--key-with-dashes`` as a flag, the
key upper-cased after ``AMQP_SERVER_`` as an environment variable.  Lists
(``loopback_users``) are comma-separated in flags and environment variables
(an empty value is the empty list); booleans are true/false/yes/no/on/off/1/0.
Relative paths in the file are relative to the file's directory.

The file may also declare users, virtual hosts and permissions; they are
applied to ``<data_dir>/access.json`` at every start (``ops.access.apply_config``)::

    [[users]]
    name = "app"
    password = "s3cret"            # or password_hash = "<rabbit_password_hashing_sha256 hash>"
    tags = ["management"]          # or "management,policymaker"

    [[vhosts]]
    name = "prod"

    [[permissions]]
    user = "app"
    vhost = "prod"
    configure = "^app-.*"
    write = ".*"
    read = ".*"

Anything invalid (an unknown key, a wrong type, a value out of range, a missing
certificate file …) raises ``ConfigError``, whose message names the key and
where its value came from — ``--port must be between 0 and 65535, got 70000``,
``port: must be an integer, got 'x' (from AMQP_SERVER_PORT)``,
``prot: unknown key (did you mean 'port'?) (from /etc/amqp-server.toml)`` — and
the command line prints it after ``amqp-server: invalid configuration:`` and
exits with code 2.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from storage.factory import store_problem

from ..core.access import valid_password_hash
from .errors import ConfigError, flag_name
from .logging import FORMATS
from .validation import check_tls_settings, regex_problem, split_list, tags_from

ENV_PREFIX = "AMQP_SERVER_"
CONFIG_ENV = ENV_PREFIX + "CONFIG"
LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = FORMATS  # the formats ops.logging writes
EVENT_LOOPS = ("auto", "asyncio", "uvloop")
MAX_MESSAGE_SIZE_LIMIT = 512 * 1024 * 1024  # RabbitMQ refuses a larger max_message_size too
TRUE_WORDS = ("true", "yes", "on", "1")
FALSE_WORDS = ("false", "no", "off", "0")


def default_data_dir() -> Path:
    """``$XDG_DATA_HOME/amqp-server`` (``~/.local/share/amqp-server``): the same place whatever the cwd."""
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "amqp-server"


DEFAULT_MEMORY_HIGH_WATERMARK = 0.4  # of physical memory, as RabbitMQ's vm_memory_high_watermark
DEFAULT_DISK_FREE_LIMIT = 50_000_000  # bytes: RabbitMQ's default disk_free_limit ("50MB")


def physical_memory() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def memory_limit(value: float) -> int:
    """A fraction (<= 1) of physical memory, or an absolute number of bytes."""
    if value <= 1:
        return int(value * physical_memory())
    return int(value)


# RabbitMQ's information units (rabbit_resource_monitor_misc), exactly: k/kiB... are powers of 1024, kB... of 1000
SIZE_PATTERN = re.compile(
    r"([0-9]+)(kB|KB|MB|GB|kb|mb|gb|Kb|Mb|Gb|kiB|KiB|MiB|GiB|kib|mib|gib|KIB|MIB|GIB|k|K|m|M|g|G)?"
)
SIZE_UNITS = {
    "k": 1024,
    "m": 1024**2,
    "g": 1024**3,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
}
MEM_RELATIVE = "mem_relative:"


def disk_free_limit(text: str) -> int:
    """``50MB``, ``1GB``, ``500MiB``, ``52428800`` (bytes) or ``mem_relative:1.5`` (× physical memory), in bytes.

    Raises ``ValueError`` for anything else.
    """
    text = text.strip()
    if text.startswith(MEM_RELATIVE):
        return relative_disk_free_limit(float(text[len(MEM_RELATIVE) :]))
    match = SIZE_PATTERN.fullmatch(text)
    if match is None:
        raise ValueError(text)
    number, unit = match.groups()
    return int(number) * (SIZE_UNITS[unit.lower()] if unit else 1)


def relative_disk_free_limit(ratio: float) -> int:
    """RabbitMQ's ``disk_free_limit.relative``: free disk must stay at least ``ratio`` × physical memory."""
    if not 0 <= ratio < float("inf"):
        raise ValueError(ratio)
    return round(ratio * physical_memory())


@dataclass(frozen=True)
class UserDefinition:
    """A ``[[users]]`` entry: exactly one of ``password`` (plain) and ``password_hash`` is set."""

    name: str
    password: str | None = None
    password_hash: str | None = None
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class PermissionDefinition:
    """A ``[[permissions]]`` entry: three regular expressions, in RabbitMQ's configure/write/read order."""

    user: str
    vhost: str
    configure: str
    write: str
    read: str


@dataclass(frozen=True)
class Config:
    host: str = "127.0.0.1"
    port: int = 5672
    management_port: int = 15672  # the management HTTP API; 0 picks a free port, -1 turns it off
    prometheus_port: int = 15692  # the Prometheus metrics (/metrics); 0 picks a free port, -1 turns them off
    data_dir: Path = default_data_dir()
    store: str = "segment"  # or "memory", or a postgresql:// URL (storage.factory)
    log_level: str = "info"
    heartbeat: int = 60
    frame_max: int = 131072
    channel_max: int = 2047
    memory_high_watermark: int = field(default_factory=lambda: memory_limit(DEFAULT_MEMORY_HIGH_WATERMARK))
    disk_free_limit: int = DEFAULT_DISK_FREE_LIMIT  # bytes; publishers are blocked below it; 0: no disk alarm
    # limits (RabbitMQ's defaults)
    max_connections: int = 0  # 0: unlimited
    max_message_size: int = 128 * 1024 * 1024
    handshake_timeout: float = 10.0
    consumer_timeout: int = 1_800_000  # ms a delivery may stay unacknowledged before its channel closes; 0: off
    lease_ttl: float = 5.0  # seconds: with a database store, how long a dead active broker keeps the standby waiting
    # TLS (amqps): a second listener when tls_cert and tls_key are set
    tls_port: int = 5671
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_ca: Path | None = None
    tls_verify_peer: bool = False  # require and verify a client certificate signed by tls_ca
    # security
    loopback_users: tuple[str, ...] = ("guest",)  # users that may only connect from loopback
    # logging
    log_format: str = "text"  # or "json"
    # event loop: "auto" uses uvloop when it is installed (pip install 'amqp-server[uvloop]')
    event_loop: str = "auto"
    # definitions (RabbitMQ's JSON format) to import at start
    load_definitions: Path | None = None
    # the TOML file these came from, and the users, vhosts and permissions it declares
    config_file: Path | None = None
    users: tuple[UserDefinition, ...] = ()
    vhosts: tuple[str, ...] = ()
    permissions: tuple[PermissionDefinition, ...] = ()


# ------------------------------------------------------------------ options


@dataclass(frozen=True)
class Option:
    """One scalar key: its type, how it is checked and normalised, and its help text."""

    kind: str  # "str", "int", "float", "bool", "path", "list", "disk_limit"
    help: str
    check: Callable[[Any], str | None] = lambda value: None  # the problem with a value, if any
    normalise: Callable[[Any], Any] = lambda value: value  # applied before the check
    convert: Callable[[Any], Any] = lambda value: value  # applied after it
    optional: bool = False  # a path that may be unset (an empty string in flags/environment)
    metavar: str | None = None
    choices: tuple[str, ...] | None = None  # the flag's argparse choices (the check applies elsewhere)


def _between(low: int | float, high: int | float) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        return None if low <= value <= high else f"must be between {low} and {high}, got {value}"

    return check


def _positive(value: float) -> str | None:
    return None if value > 0 else f"must be positive, got {value}"


def _one_of(choices: tuple[str, ...]) -> Callable[[str], str | None]:
    def check(value: str) -> str | None:
        return None if value in choices else f"must be one of {', '.join(choices)}, got {value!r}"

    return check


def _not_empty(value: str) -> str | None:
    return None if value else "must not be empty"


def _existing_file(value: Path | None) -> str | None:
    return None if value is None or value.is_file() else f"must be an existing file, got {value}"


OPTIONS: dict[str, Option] = {
    "host": Option("str", "address to listen on (default 127.0.0.1; 0.0.0.0 for all interfaces)", _not_empty),
    "port": Option("int", "TCP port (default 5672; 0 picks a free port and logs it)", _between(0, 65535)),
    "management_port": Option(
        "int",
        "management HTTP API port, on the same host (default 15672; 0 picks a free port; -1 turns the API off)",
        _between(-1, 65535),
    ),
    "prometheus_port": Option(
        "int",
        "Prometheus metrics port (/metrics), on the same host (default 15692; 0 picks a free port; -1 turns it off)",
        _between(-1, 65535),
    ),
    "data_dir": Option("path", "where durable data lives (default ~/.local/share/amqp-server)"),
    "store": Option(
        "str",
        "where durable definitions and messages live: segment (files in the data dir, the default), "
        "a postgresql://user@host/db URL, or memory (nothing survives a restart)",
        store_problem,
        metavar="STORE",
    ),
    "log_level": Option(
        "str",
        "log verbosity: debug, info, warning or error (default info)",
        _one_of(LOG_LEVELS),
        normalise=str.lower,
        choices=LOG_LEVELS,
    ),
    "heartbeat": Option(
        "int", "heartbeat interval proposed in connection.tune, seconds (default 60; 0 off)", _between(0, 65535)
    ),
    "frame_max": Option(
        "int", "largest frame proposed in connection.tune, bytes (default 131072)", _between(4096, 2**32 - 1)
    ),
    "channel_max": Option(
        "int", "most channels per connection proposed in connection.tune (default 2047)", _between(0, 65535)
    ),
    "memory_high_watermark": Option(
        "float",
        "block publishers when queued messages use more than this: a fraction of physical memory "
        "(default 0.4, as RabbitMQ) or a number of bytes",
        _positive,
        convert=memory_limit,
    ),
    "disk_free_limit": Option(
        "disk_limit",
        "block publishers while the data dir's disk has less free space than this: bytes with an "
        "optional unit (50MB, 1GB, 500MiB) or mem_relative:RATIO, a multiple of physical memory "
        "(default 50MB, as RabbitMQ; 0: off)",
        metavar="SIZE",
    ),
    "max_connections": Option("int", "most client connections at once (default 0: unlimited)", _between(0, 2**31 - 1)),
    "max_message_size": Option(
        "int", "largest message body accepted, bytes (default 134217728)", _between(1, MAX_MESSAGE_SIZE_LIMIT)
    ),
    "handshake_timeout": Option("float", "seconds a client has to complete the AMQP handshake (default 10)", _positive),
    "consumer_timeout": Option(
        "int",
        "milliseconds a delivery may stay unacknowledged before its channel is closed with 406 "
        "(default 1800000, as RabbitMQ; 0: off)",
        _between(0, 2**32 - 1),
    ),
    "lease_ttl": Option(
        "float",
        "with a postgresql:// store, seconds the active broker's lease lasts without renewal: a standby "
        "takes over within this of the active's death (default 5)",
        _between(0.5, 3600),
    ),
    "tls_port": Option(
        "int", "TLS (amqps) port, used when tls_cert and tls_key are set (default 5671)", _between(0, 65535)
    ),
    "tls_cert": Option("path", "server certificate (PEM) for the TLS listener", _existing_file, optional=True),
    "tls_key": Option("path", "private key (PEM) of tls_cert", _existing_file, optional=True),
    "tls_ca": Option(
        "path", "CA certificates (PEM) that client certificates must chain to", _existing_file, optional=True
    ),
    "tls_verify_peer": Option("bool", "require a client certificate signed by tls_ca (default false)"),
    "loopback_users": Option(
        "list",
        "users that may only connect from localhost, comma-separated (default guest; empty: none)",
        metavar="USERS",
    ),
    "log_format": Option(
        "str",
        "log line format: text or json (default text)",
        _one_of(LOG_FORMATS),
        normalise=str.lower,
        choices=LOG_FORMATS,
    ),
    "load_definitions": Option(
        "path", "RabbitMQ definitions JSON file to import at start", _existing_file, optional=True
    ),
    "event_loop": Option(
        "str",
        "auto (uvloop when installed), asyncio or uvloop (default auto)",
        _one_of(EVENT_LOOPS),
        normalise=str.lower,
        choices=EVENT_LOOPS,
    ),
}
TABLES = ("users", "vhosts", "permissions")
PATTERN_KEYS = ("configure", "write", "read")  # "" is a valid permission pattern: it matches nothing
KIND_NAMES = {
    "str": "a string",
    "int": "an integer",
    "float": "a number",
    "bool": "a boolean",
    "path": "a path (string)",
    "list": "a list of strings",
    "disk_limit": "a size (50MB, 1GB, 500MiB, a number of bytes) or mem_relative:RATIO",
}


def env_name(key: str) -> str:
    return ENV_PREFIX + key.upper()


# ------------------------------------------------------------------ loading


def load_config(
    flags: Mapping[str, Any] | None = None,
    config_file: Path | str | None = None,
    environ: Mapping[str, str] | None = None,
) -> Config:
    """Merge flags (strings, or booleans for ``bool`` keys) > environment > TOML file > defaults.

    ``config_file`` is the ``--config`` flag; without it ``AMQP_SERVER_CONFIG`` names the file.
    """
    environ = os.environ if environ is None else environ
    values: dict[str, tuple[Any, str]] = {}  # key → (value, where it came from)
    tables: dict[str, Any] = {}
    file_source = "--config"
    if config_file is None and environ.get(CONFIG_ENV):
        config_file, file_source = environ[CONFIG_ENV], CONFIG_ENV
    path = None
    if config_file is not None:
        path = Path(config_file).expanduser()
        document = _read_toml(path, file_source)
        for key, value in document.items():
            if key in TABLES:
                tables[key] = value
            elif key in OPTIONS:
                values[key] = (_from_toml(key, value, str(path), path.parent), str(path))
            else:
                raise ConfigError(key, "unknown key" + _suggestion(key), str(path))
    for key in OPTIONS:
        text = environ.get(env_name(key))
        if text is not None:
            values[key] = (_from_text(key, text, env_name(key)), env_name(key))
    for key, value in (flags or {}).items():
        if key not in OPTIONS:
            raise ConfigError(key, "unknown key" + _suggestion(key))
        source = flag_name(key)
        values[key] = (value if isinstance(value, bool) else _from_text(key, value, source), source)
    settings = {key: _checked(key, value, source) for key, (value, source) in values.items()}
    check_tls_settings(settings.get, {key: source for key, (_, source) in values.items()})
    settings.setdefault("data_dir", default_data_dir())
    if path is not None:
        settings.update(config_file=path, **_tables(tables, str(path)))
    return Config(**settings)


def _read_toml(path: Path, source: str) -> dict[str, Any]:
    try:
        with path.open("rb") as file:
            return tomllib.load(file)
    except FileNotFoundError:
        raise ConfigError("config", f"file not found: {path}", source) from None
    except OSError as error:
        raise ConfigError("config", f"cannot read {path}: {error.strerror}", source) from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError("config", f"{path} is not valid TOML: {error}", source) from None


def _suggestion(key: str) -> str:
    close = difflib.get_close_matches(key, [*OPTIONS, *TABLES], n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _from_text(key: str, text: str, source: str) -> Any:
    """A flag's or environment variable's string as the key's type."""
    option = OPTIONS[key]
    kind = option.kind
    try:
        if kind == "int":
            return int(text.strip())
        if kind == "float":
            return float(text.strip())
    except ValueError:
        raise ConfigError(key, f"must be {KIND_NAMES[kind]}, got {text!r}", source) from None
    if kind == "bool":
        word = text.strip().lower()
        if word not in TRUE_WORDS + FALSE_WORDS:
            raise ConfigError(key, f"must be true or false, got {text!r}", source)
        return word in TRUE_WORDS
    if kind == "path":
        if not text:
            if option.optional:
                return None
            raise ConfigError(key, "must not be empty", source)
        return Path(text).expanduser()
    if kind == "list":
        return tuple(split_list(text))
    if kind == "disk_limit":
        try:
            return disk_free_limit(text)
        except ValueError:
            raise ConfigError(key, f"must be {KIND_NAMES[kind]}, got {text!r}", source) from None
    return text


def _from_toml(key: str, value: Any, source: str, base_dir: Path) -> Any:
    """A TOML value, which must already have the key's type (no quoted numbers)."""
    kind = OPTIONS[key].kind
    if kind == "int" and isinstance(value, int) and not isinstance(value, bool):
        return value
    if kind == "float" and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if kind == "bool" and isinstance(value, bool):
        return value
    if kind == "str" and isinstance(value, str):
        return value
    if kind == "path" and isinstance(value, str) and value:
        return base_dir / Path(value).expanduser()
    if kind == "list" and isinstance(value, list) and all(isinstance(item, str) for item in value):
        return tuple(value)
    if kind == "disk_limit":
        return _disk_limit_from_toml(key, value, source)
    raise ConfigError(key, f"must be {KIND_NAMES[kind]}, got {_toml_type(value)} {value!r}", source)


def _disk_limit_from_toml(key: str, value: Any, source: str) -> int:
    """``"50MB"``, ``50000000``, ``"mem_relative:1.5"``, or rabbitmq.conf's dotted keys:
    ``disk_free_limit.absolute = "1GB"`` / ``disk_free_limit.relative = 1.5``."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    try:
        if isinstance(value, str):
            return disk_free_limit(value)
        if isinstance(value, dict) and len(value) == 1:
            ((form, amount),) = value.items()
            if form == "absolute" and isinstance(amount, (str, int)) and not isinstance(amount, bool):
                return disk_free_limit(str(amount))
            if form == "relative" and isinstance(amount, (int, float)) and not isinstance(amount, bool):
                return relative_disk_free_limit(float(amount))
    except ValueError:
        pass
    if isinstance(value, dict):
        raise ConfigError(
            key, f"must be a table with one key, absolute (a size) or relative (a number), got {value!r}", source
        )
    raise ConfigError(key, f"must be {KIND_NAMES['disk_limit']}, got {_toml_type(value)} {value!r}", source)


def _toml_type(value: Any) -> str:
    names = {bool: "boolean", int: "integer", float: "float", str: "string", list: "array", dict: "table"}
    return names.get(type(value), type(value).__name__)


def _checked(key: str, value: Any, source: str) -> Any:
    option = OPTIONS[key]
    if value is None:
        return None
    value = option.normalise(value)
    problem = option.check(value)
    if problem is not None:
        raise ConfigError(key, problem, source)
    return option.convert(value)


# ------------------------------------------------------------------ [[users]], [[vhosts]], [[permissions]]


def _tables(tables: dict[str, Any], source: str) -> dict[str, Any]:
    users = tuple(_user(entry, f"users[{i}]", source) for i, entry in enumerate(_entries(tables, "users", source)))
    names = [user.name for user in users]
    for name in names:
        if names.count(name) > 1:
            raise ConfigError("users", f"user '{name}' is declared twice", source)
    vhosts = tuple(
        _fields(entry, f"vhosts[{i}]", source, required=("name",))["name"]
        for i, entry in enumerate(_entries(tables, "vhosts", source))
    )
    permissions = tuple(
        _permission(entry, f"permissions[{i}]", source)
        for i, entry in enumerate(_entries(tables, "permissions", source))
    )
    return {"users": users, "vhosts": vhosts, "permissions": permissions}


def _entries(tables: dict[str, Any], key: str, source: str) -> list[dict[str, Any]]:
    entries = tables.get(key, [])
    if not isinstance(entries, list) or not all(isinstance(entry, dict) for entry in entries):
        raise ConfigError(key, f"must be an array of tables ([[{key}]]), got {_toml_type(entries)}", source)
    return entries


def _fields(
    entry: dict[str, Any], where: str, source: str, required: tuple[str, ...], optional: tuple[str, ...] = ()
) -> dict[str, Any]:
    """One table's string fields: every required one present, none unknown (``tags`` is checked by ``_user``)."""
    for key, value in entry.items():
        if key not in required + optional:
            raise ConfigError(f"{where}.{key}", "unknown key", source)
        if key != "tags" and not isinstance(value, str):
            raise ConfigError(f"{where}.{key}", f"must be a string, got {_toml_type(value)} {value!r}", source)
    for key in required:
        if key not in entry:
            raise ConfigError(f"{where}.{key}", "missing", source)
        if not entry[key] and key not in PATTERN_KEYS:
            raise ConfigError(f"{where}.{key}", "must not be empty", source)
    return entry


def _user(entry: dict[str, Any], where: str, source: str) -> UserDefinition:
    entry = _fields(entry, where, source, required=("name",), optional=("password", "password_hash", "tags"))
    if ("password" in entry) == ("password_hash" in entry):
        raise ConfigError(f"{where}.password", "set exactly one of password and password_hash", source)
    password_hash = entry.get("password_hash")
    if password_hash is not None and not valid_password_hash(password_hash):
        raise ConfigError(
            f"{where}.password_hash",
            "not a rabbit_password_hashing_sha256 hash (base64 of a 4-byte salt and a SHA-256 digest)",
            source,
        )
    given = entry.get("tags", [])
    tags = tags_from(given)
    if tags is None:
        raise ConfigError(f"{where}.tags", f"must be a list of strings, got {_toml_type(given)} {given!r}", source)
    return UserDefinition(entry["name"], entry.get("password"), password_hash, tuple(tags))


def _permission(entry: dict[str, Any], where: str, source: str) -> PermissionDefinition:
    entry = _fields(entry, where, source, required=("user", "vhost", *PATTERN_KEYS))
    for key in PATTERN_KEYS:
        problem = regex_problem(entry[key])
        if problem is not None:
            raise ConfigError(f"{where}.{key}", problem, source)
    return PermissionDefinition(**{f.name: entry[f.name] for f in fields(PermissionDefinition)})
