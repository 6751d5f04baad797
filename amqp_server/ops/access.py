"""Users, virtual hosts and permissions on disk: ``<data_dir>/access.json``.

The file holds the ``users``, ``vhosts``, ``permissions`` and ``topic_permissions`` sections
of RabbitMQ's definitions JSON (passwords only as ``rabbit_password_hashing_sha256``
hashes; a vhost's ``description`` and ``tags`` when it has them, ``tracing`` when it is on)::

    {"users": [{"name": "guest", "password_hash": "…", "hashing_algorithm": "rabbit_password_hashing_sha256",
                "tags": ["administrator"]}],
     "vhosts": [{"name": "/"}, {"name": "prod", "description": "orders", "tags": ["eu"], "tracing": true}],
     "permissions": [{"user": "guest", "vhost": "/", "configure": ".*", "write": ".*", "read": ".*"}],
     "topic_permissions": []}

Without the file the broker has RabbitMQ's out-of-the-box setup: ``guest``/``guest``,
administrator, every permission on ``/``.  Writes are atomic (temporary file,
fsync, rename, fsync of the directory), so a reader sees the old file or the new
one, never half of it.  Every writer edits it under an flock on ``access.lock``
(``edit_access``): the admin CLI while no broker runs on the data dir, the
management API of a running broker (which installs the new state at once), the
broker itself at start (``startup_access``, then ``apply_to_broker``).  A running
broker does not watch the file: the CLI goes through its API (``ops.running``).

Where the store keeps them itself (``storage.postgres_store``: a table holding this same document),
the broker's paths — ``startup_access``, ``save_broker_access`` and the management API's
``edit_access`` — take that store (an ``AccessDocuments``, chosen by ``access_home``) in place of
the data dir; the document is then read and committed there, and ``access.json`` is not used.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
from collections.abc import Callable, Container, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from storage.factory import is_postgres, open_store

from ..core import tracing
from ..core.access import HASHING_ALGORITHM, AccessControl, Permission, TopicPermission, User, check_password
from .config import Config
from .errors import ConfigError, DefinitionsError, NotFound
from .validation import json_lists, json_string, must_exist, regex_problem, tags_from

if TYPE_CHECKING:
    from ..core.broker import Broker

ACCESS_FILE = "access.json"
LOCK_FILE = "access.lock"
DEFAULT_VHOST = "/"

log = logging.getLogger("amqp_server.access")


@runtime_checkable
class AccessDocuments(Protocol):
    """A store that keeps the access document (this module's JSON) itself, instead of ``access.json``."""

    def load_access_document(self) -> Any | None:
        """The saved document, or None before the first save."""

    def save_access_document(self, document: dict[str, Any]) -> None:
        """Replace the document durably (raises ``OSError`` when it could not)."""


AccessHome = Path | AccessDocuments  # a data dir (its access.json) or a store holding the document


def access_home(data_dir: Path, store: object) -> AccessHome:
    """Where a broker on ``store`` keeps users, vhosts and permissions: the store if it can, else the data dir."""
    return store if isinstance(store, AccessDocuments) else Path(data_dir)


@contextmanager
def configured_home(config: Config) -> Iterator[AccessHome]:
    """For the admin CLI: the configured store, opened for the block, if it keeps access; else the data dir."""
    if not is_postgres(config.store):
        yield config.data_dir  # the segment store is not opened: it would lock the data dir
        return
    store = open_store(config)
    try:
        yield access_home(config.data_dir, store)
    finally:
        store.close()


# ------------------------------------------------------------------ JSON sections, shared with definitions


def user_to_json(user: User) -> dict[str, Any]:
    return {
        "name": user.name,
        "password_hash": user.password_hash,
        "hashing_algorithm": HASHING_ALGORITHM,
        "tags": list(user.tags),
    }


def permission_to_json(user: str, vhost: str, permission: Permission) -> dict[str, str]:
    return {
        "user": user,
        "vhost": vhost,
        "configure": permission.configure,
        "write": permission.write,
        "read": permission.read,
    }


def import_sections(
    data: dict[str, Any], access: AccessControl, vhosts: Container[str], add_vhost: Callable[[str], Any]
) -> dict[str, int]:
    """Apply the ``users``, ``vhosts`` and ``permissions`` sections of a definitions document (each already
    checked to be a list), in that order; returns how many users, new vhosts and permissions there were.

    ``vhosts`` are the names that exist (it sees what ``add_vhost`` adds): a permission's vhost must be one.
    """
    counts = dict.fromkeys(("users", "vhosts", "permissions"), 0)
    for i, item in enumerate(data.get("users", [])):
        _add_user_from_json(access, item, f"users[{i}]")
        counts["users"] += 1
    for i, item in enumerate(data.get("vhosts", [])):
        name = json_string(item, "name", f"vhosts[{i}]")
        metadata = vhost_metadata_from_json(item)
        if metadata:
            access.vhost_metadata[name] = metadata
        set_tracing(access, name, item.get("tracing"))
        if name not in vhosts:
            add_vhost(name)
            counts["vhosts"] += 1
    for i, item in enumerate(data.get("permissions", [])):
        _set_permission_from_json(access, vhosts, item, f"permissions[{i}]")
        counts["permissions"] += 1
    return counts


def _add_user_from_json(access: AccessControl, item: Any, where: str) -> None:
    """Add one entry of a ``users`` section (tags as a list or RabbitMQ's older comma-separated string)."""
    name = json_string(item, "name", where)
    algorithm = item.get("hashing_algorithm", HASHING_ALGORITHM)
    if algorithm != HASHING_ALGORITHM:
        raise DefinitionsError(
            f"{where}: user '{name}': hashing_algorithm {algorithm!r} is not supported "
            f"(only {HASHING_ALGORITHM}); set a new password for this user"
        )
    tags = tags_from(item.get("tags", []))
    if tags is None:
        raise DefinitionsError(f"{where}: user '{name}': tags must be a list of strings or a comma-separated string")
    if "password" in item:  # plain, as RabbitMQ's HTTP API also accepts
        access.add_user(name, json_string(item, "password", where, allow_empty=True), tags=tags)
    else:  # without a hash, a user who cannot log in with a password (RabbitMQ exports them so too)
        password_hash = json_string(item, "password_hash", where, allow_empty=True) if "password_hash" in item else ""
        access.add_user(name, tags=tags, password_hash=password_hash)


def _set_permission_from_json(access: AccessControl, vhosts: Container[str], item: Any, where: str) -> None:
    """Apply one entry of a ``permissions`` section; its user and vhost must exist."""
    user, vhost, patterns = _checked_grant(access, vhosts, item, where, ("configure", "write", "read"))
    access.set_permission(user, vhost, Permission(*patterns))


def _checked_grant(
    access: AccessControl, vhosts: Container[str], item: Any, where: str, pattern_keys: tuple[str, ...]
) -> tuple[str, str, list[str]]:
    """The user, vhost and regex patterns of a permissions or topic_permissions entry: both must exist, and
    every pattern must compile."""
    user, vhost = json_string(item, "user", where), json_string(item, "vhost", where)
    patterns = [json_string(item, key, where, allow_empty=True) for key in pattern_keys]
    try:
        must_exist("user", user, access.users)
        must_exist("vhost", vhost, vhosts)
    except NotFound as error:
        raise DefinitionsError(f"{where}: {error}") from None
    for pattern in patterns:
        problem = regex_problem(pattern)
        if problem is not None:
            raise DefinitionsError(f"{where}: {problem}")
    return user, vhost, patterns


def topic_permission_to_json(user: str, vhost: str, exchange: str, permission: TopicPermission) -> dict[str, str]:
    return {"user": user, "vhost": vhost, "exchange": exchange, "write": permission.write, "read": permission.read}


def topic_permissions_to_json(access: AccessControl) -> list[dict[str, str]]:
    return [topic_permission_to_json(*key, permission) for key, permission in access.topic_permissions.items()]


def import_topic_permissions(data: dict[str, Any], access: AccessControl, vhosts: Container[str]) -> int:
    """Apply a ``topic_permissions`` section (already checked to be a list); its users and vhosts must exist."""
    items = data.get("topic_permissions", [])
    for i, item in enumerate(items):
        where = f"topic_permissions[{i}]"
        exchange = json_string(item, "exchange", where, allow_empty=True)
        user, vhost, patterns = _checked_grant(access, vhosts, item, where, ("write", "read"))
        access.topic_permissions[(user, vhost, exchange)] = TopicPermission(*patterns)
    return len(items)


def vhost_metadata_from_json(item: dict[str, Any]) -> dict[str, Any]:
    """A vhost entry's description and tags (top level, as the API's PUT, or under RabbitMQ's ``metadata``)."""
    nested = item.get("metadata")
    metadata: dict[str, Any] = nested if isinstance(nested, dict) else item
    found: dict[str, Any] = {}
    if isinstance(metadata.get("description"), str) and metadata["description"]:
        found["description"] = metadata["description"]
    tags = tags_from(metadata.get("tags", []))
    if tags:
        found["tags"] = tags
    return found


def set_tracing(access: AccessControl, vhost: str, value: Any) -> None:
    """A vhost entry's ``tracing`` (RabbitMQ's definitions and PUT /api/vhosts carry it): true or false turns the
    firehose on or off (``core.tracing``), anything else leaves it as it is."""
    if value is True:
        access.traced_vhosts.add(vhost)
    elif value is False:
        access.traced_vhosts.discard(vhost)


def vhost_to_json(access: AccessControl, name: str) -> dict[str, Any]:
    traced = {"tracing": True} if name in access.traced_vhosts else {}
    return {"name": name, **access.vhost_metadata.get(name, {}), **traced}


def remove_vhost(access: AccessControl, vhosts: list[str], name: str) -> None:
    """Forget a vhost, its metadata and every permission on it."""
    vhosts.remove(name)
    access.vhost_metadata.pop(name, None)
    access.traced_vhosts.discard(name)
    for key in [key for key in access.permissions if key[1] == name]:
        del access.permissions[key]
    for topic_key in [key for key in access.topic_permissions if key[1] == name]:
        del access.topic_permissions[topic_key]


# ------------------------------------------------------------------ the file


def to_json(access: AccessControl, vhosts: list[str]) -> dict[str, Any]:
    return {
        "users": [user_to_json(user) for user in access.users.values()],
        "vhosts": [vhost_to_json(access, name) for name in vhosts],
        "permissions": [
            permission_to_json(user, vhost, permission) for (user, vhost), permission in access.permissions.items()
        ],
        "topic_permissions": topic_permissions_to_json(access),
    }


def from_json(data: Any, loopback_users: tuple[str, ...] = ("guest",)) -> tuple[AccessControl, list[str]]:
    if not isinstance(data, dict):
        raise DefinitionsError("expected a JSON object with users, vhosts and permissions")
    access = AccessControl(loopback_users)
    json_lists(data, ("users", "vhosts", "permissions", "topic_permissions"))
    vhosts = [DEFAULT_VHOST]  # always there, as the broker always has it
    import_sections(data, access, vhosts, vhosts.append)
    import_topic_permissions(data, access, vhosts)
    return access, vhosts


def default_access(loopback_users: tuple[str, ...] = ("guest",)) -> tuple[AccessControl, list[str]]:
    """RabbitMQ's first-start setup: guest/guest, administrator, everything on ``/``."""
    access = AccessControl.default()
    access.loopback_users = loopback_users
    return access, [DEFAULT_VHOST]


def load_access(home: AccessHome, loopback_users: tuple[str, ...] = ("guest",)) -> tuple[AccessControl, list[str]]:
    """The access control and vhost names stored in ``home`` (the default setup if there are none).

    Raises ``DefinitionsError`` naming the file (or store) when it is not valid.
    """
    return _load(home, loopback_users)[0]


def _load(home: AccessHome, loopback_users: tuple[str, ...]) -> tuple[tuple[AccessControl, list[str]], bool]:
    """``load_access``, and whether ``home`` held anything (False: the default setup), from one read."""
    if isinstance(home, AccessDocuments):
        document, where = home.load_access_document(), "the store's access document"
    else:
        where = str(Path(home) / ACCESS_FILE)
        try:
            document = Path(where).read_text(encoding="utf-8")
        except FileNotFoundError:
            document = None
    if document is None:
        return default_access(loopback_users), False
    try:
        return from_json(json.loads(document) if isinstance(document, str) else document, loopback_users), True
    except (ValueError, DefinitionsError) as error:
        raise DefinitionsError(f"{where}: {error}") from None


def save_access(home: AccessHome, access: AccessControl, vhosts: list[str]) -> None:
    """Replace ``access.json`` atomically and durably (or the store's document)."""
    if isinstance(home, AccessDocuments):
        home.save_access_document(to_json(access, vhosts))
        return
    data_dir = Path(home)
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / ACCESS_FILE
    temporary = path.with_name(ACCESS_FILE + ".tmp")
    with temporary.open("w", encoding="utf-8") as file:
        json.dump(to_json(access, vhosts), file, indent=2)
        file.write("\n")
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, path)
    directory = os.open(data_dir, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


@contextmanager
def locked(home: AccessHome) -> Iterator[None]:
    """Hold ``access.lock``: one read-modify-write of ``access.json`` at a time.

    A store's document needs no lock: only its broker writes it, from its event loop.
    """
    if isinstance(home, AccessDocuments):
        yield
        return
    data_dir = Path(home)
    data_dir.mkdir(parents=True, exist_ok=True)
    lock = os.open(data_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield
    finally:
        os.close(lock)


@contextmanager
def edit_access(
    home: AccessHome, loopback_users: tuple[str, ...] = ("guest",)
) -> Iterator[tuple[AccessControl, list[str]]]:
    """Load, let the caller change, save, under ``locked``; nothing is saved when the block raises."""
    with locked(home):
        access, vhosts = load_access(home, loopback_users)
        yield access, vhosts
        save_access(home, access, vhosts)


# ------------------------------------------------------------------ at start


def apply_config(access: AccessControl, vhosts: list[str], config: Config) -> bool:
    """Apply the config file's ``[[users]]``, ``[[vhosts]]`` and ``[[permissions]]``; True if anything changed.

    A declared user gets the declared password and tags (its hash is kept when
    the password still matches, so the file is not rewritten at every start).
    Raises ``ConfigError`` when a permission names a user or vhost that exists nowhere.
    """
    changed = False
    for user in config.users:
        existing = access.users.get(user.name)
        if user.password_hash is not None:
            password_hash = user.password_hash
        elif existing is not None and check_password(user.password or "", existing.password_hash):
            password_hash = existing.password_hash
        else:
            password_hash = None
        if existing is None or password_hash != existing.password_hash or list(user.tags) != existing.tags:
            access.add_user(user.name, user.password, list(user.tags), password_hash=password_hash)
            changed = True
    for name in config.vhosts:
        if name not in vhosts:
            vhosts.append(name)
            changed = True
    source = str(config.config_file) if config.config_file else None
    for i, entry in enumerate(config.permissions):
        try:
            must_exist("user", entry.user, access.users)
            must_exist("vhost", entry.vhost, vhosts)
        except NotFound as error:
            raise ConfigError(
                f"permissions[{i}].{error.kind}", f"{error} (declare it in [[{error.kind}s]])", source
            ) from None
        permission = Permission(entry.configure, entry.write, entry.read)
        if access.permissions.get((entry.user, entry.vhost)) != permission:
            access.set_permission(entry.user, entry.vhost, permission)
            changed = True
    return changed


def startup_access(config: Config, home: AccessHome | None = None) -> tuple[AccessControl, list[str]]:
    """What the broker starts with: ``access.json`` (or ``home``'s document) plus the config file's users,
    vhosts and permissions.

    The file is written when they changed it, or when it did not exist yet (the default setup).
    """
    home = config.data_dir if home is None else home
    with locked(home):
        (access, vhosts), exists = _load(home, config.loopback_users)
        if apply_config(access, vhosts, config) or not exists:
            save_access(home, access, vhosts)
    return access, vhosts


def apply_to_broker(broker: Broker, access: AccessControl, vhosts: list[str]) -> list[str]:
    """Install reloaded access and create new vhosts; returns the broker's vhosts that are no longer listed.

    The caller closes those vhosts' connections (320 CONNECTION_FORCED, as RabbitMQ
    does) and then removes them with ``ops.definitions.delete_vhost``.
    """
    broker.access = access
    for name in vhosts:
        broker.add_vhost(name)
    tracing.apply(broker)
    return [name for name in broker.vhosts if name not in vhosts]
