"""Command line: ``amqp-server`` / ``python -m amqp_server``.

Without a subcommand it runs the broker.  Every configuration key has a flag
(``--port``), an environment variable (``AMQP_SERVER_PORT``) and a key in the
TOML file named by ``--config`` (``port``); flag > environment > file > default
(see ``ops.config``).  The flag names are a stable interface: outside tooling starts
the broker with them.  Invalid configuration exits with code 2 and one line
naming the key.

Admin subcommands change the users, vhosts and permissions of a data dir: through
the management API of the broker running on it (``ops.running`` finds it; the change
takes effect at once; ``--username``/``--password`` as for the API commands), or, when
no broker runs there, by editing ``<data dir>/access.json``.  Definitions export and
import work on the data dir's store, only while no broker runs on it::

    amqp-server users add NAME PASSWORD [--tags administrator,management]
    amqp-server users delete NAME
    amqp-server users list
    amqp-server vhosts add NAME | delete NAME | list
    amqp-server permissions set USER VHOST CONFIGURE WRITE READ
    amqp-server permissions clear USER VHOST
    amqp-server permissions list
    amqp-server definitions export FILE      (RabbitMQ's definitions JSON; - for stdout)
    amqp-server definitions import FILE
    amqp-server policies set NAME PATTERN DEFINITION [--vhost /] [--priority N] [--apply-to all] [--operator]
    amqp-server policies clear NAME [--vhost /] [--operator]
    amqp-server policies list [--vhost /] [--operator]

Policies work like users: through the running broker's management API, else in the data dir's
store (``amqp-server declare policy`` is the same through the API only, rabbitmqadmin's spelling).

Each takes ``--data-dir`` and ``--config`` (the data dir is resolved like the
broker's).  They exit with 0 on success, 1 when the change cannot be made
(with a message on stderr), 2 on a usage or configuration error.  The commands that
work on a running broker only through its API (``list``, ``declare``, ``publish`` …)
are in ``ops.api_commands``.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import ssl
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from storage.factory import is_postgres
from storage.fileio import DataDirLocked

from .. import __version__
from ..core.access import Permission
from ..core.broker import Broker
from ..core.policy_validation import PolicyError, parse_policy
from ..core.vhost import VirtualHost
from . import access as ops_access
from . import running
from .access import DEFAULT_VHOST, AccessControl, load_access, locked, remove_vhost, save_access
from .api_commands import API_COMMANDS, api_main, connection_options, credentials
from .config import CONFIG_ENV, OPTIONS, Config, env_name, load_config
from .definitions import delete_vhost, export_from, import_file, open_offline_broker, save_broker_access
from .errors import AccessError, AlreadyExists, ConfigError, DefinitionsError, NotFound, flag_name
from .http_client import ApiRequestError, ManagementClient, segment
from .logging import setup as setup_logging
from .validation import must_be_new, must_exist, regex_problem, split_list

ADMIN_COMMANDS = ("users", "vhosts", "permissions", "definitions", "policies")


class AdminError(Exception):
    """An admin command that cannot be done with this data dir (none there, or a broker runs on it): printed,
    exit code 1, like an ``AccessError`` or a ``DefinitionsError``."""


# ------------------------------------------------------------------ running the broker


def broker_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="amqp-server",
        description="A RabbitMQ-compatible AMQP 0-9-1 broker.",
        epilog="Each flag can also be set by the environment variable in brackets or by its key in the "
        "--config file; flags win over the environment, which wins over the file. Admin commands: "
        "amqp-server {users,vhosts,permissions,definitions} --help; on a running broker, through its "
        "management API: amqp-server {list,declare,delete,purge,bind,unbind,publish,get,close} --help.",
    )
    parser.add_argument("--config", metavar="FILE", help=f"TOML configuration file [{CONFIG_ENV}]")
    for key, option in OPTIONS.items():
        help_text = f"{option.help} [{env_name(key)}]"
        if option.kind == "bool":
            parser.add_argument(
                flag_name(key), dest=key, action=argparse.BooleanOptionalAction, default=None, help=help_text
            )
        else:
            parser.add_argument(
                flag_name(key),
                dest=key,
                default=None,
                help=help_text,
                choices=option.choices,
                metavar=option.metavar or (None if option.choices else key.upper()),
            )
    parser.add_argument("--version", action="version", version=f"amqp-server {__version__}")
    return parser


def parse_args(argv: list[str] | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """The broker's ``Config`` from flags, environment and config file; raises ``ConfigError``."""
    args = broker_parser().parse_args(argv)
    flags = {key: value for key, value in vars(args).items() if key in OPTIONS and value is not None}
    return load_config(flags, args.config, environ)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in ADMIN_COMMANDS:
        return admin_main(argv)
    if argv and argv[0] in API_COMMANDS:
        return api_main(argv)
    try:
        config = parse_args(argv)
    except ConfigError as error:
        return _config_failure(error)
    setup_logging(config.log_level, config.log_format)
    from ..server.embedded import run  # the server stack loads only when a broker starts

    try:
        run(config)
    except KeyboardInterrupt:
        pass
    except ConfigError as error:  # the config file's permissions name a user or vhost that does not exist
        return _config_failure(error)
    except ssl.SSLError as error:  # a certificate or key that does not load
        return _config_failure(ConfigError("tls_cert", f"cannot load the certificate and key: {error}"))
    except (DataDirLocked, DefinitionsError, OSError) as error:  # data dir in use, address in use, bad definitions …
        print(f"amqp-server: {error}", file=sys.stderr)
        return 1
    return 0


def _config_failure(error: ConfigError) -> int:
    print(f"amqp-server: invalid configuration: {error}", file=sys.stderr)
    return 2


# ------------------------------------------------------------------ admin subcommands


def _subcommand(
    common: argparse.ArgumentParser,
    group: Any,
    name: str,
    handler: Callable[[argparse.Namespace, Config], str | None],
    help_text: str,
    *arguments: str,
) -> argparse.ArgumentParser:
    """Add subcommand ``name`` to ``group``: the ``common`` options, positional ``arguments``, its handler."""
    sub = group.add_parser(name, parents=[common], help=help_text, description=help_text)
    for argument in arguments:
        sub.add_argument(argument)
    sub.set_defaults(handler=handler)
    return sub


def admin_parser() -> argparse.ArgumentParser:
    """The admin command line: a table of subcommand names to their handlers."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data-dir", help=f"the broker's data dir [{env_name('data_dir')}]")
    common.add_argument("--store", help=f"the broker's store, e.g. postgresql://… [{env_name('store')}]")
    common.add_argument("--config", metavar="FILE", help=f"TOML configuration file [{CONFIG_ENV}]")
    connection_options(common, with_location=False)  # for a running broker's API
    parser = argparse.ArgumentParser(
        prog="amqp-server", description="Manage users, vhosts, permissions and definitions of an amqp-server data dir."
    )
    groups = parser.add_subparsers(dest="group", required=True)
    command = functools.partial(_subcommand, common)
    users = groups.add_parser("users", help="users and passwords").add_subparsers(dest="action", required=True)
    add = command(users, "add", _users_add, "add a user", "name", "password")
    add.add_argument("--tags", default="", help="comma-separated tags, e.g. administrator,management")
    command(users, "delete", _users_delete, "delete a user and their permissions", "name")
    command(users, "list", _users_list, "list users and their tags")
    vhosts = groups.add_parser("vhosts", help="virtual hosts").add_subparsers(dest="action", required=True)
    command(vhosts, "add", _vhosts_add, "add a virtual host", "name")
    command(
        vhosts, "delete", _vhosts_delete, "delete a virtual host with its queues, exchanges and permissions", "name"
    )
    command(vhosts, "list", _vhosts_list, "list virtual hosts")
    permissions = groups.add_parser("permissions", help="who may configure, write and read what").add_subparsers(
        dest="action", required=True
    )
    command(
        permissions,
        "set",
        _permissions_set,
        "set a user's permissions in a vhost (regular expressions, in RabbitMQ's order)",
        "user",
        "vhost",
        "configure",
        "write",
        "read",
    )
    command(permissions, "clear", _permissions_clear, "remove a user's permissions in a vhost", "user", "vhost")
    command(permissions, "list", _permissions_list, "list permissions")
    definitions = groups.add_parser("definitions", help="RabbitMQ definitions JSON").add_subparsers(
        dest="action", required=True
    )
    command(
        definitions,
        "export",
        _definitions_export,
        "export users, vhosts, permissions, exchanges, queues and bindings (the broker must be stopped)",
        "file",
    )
    command(
        definitions,
        "import",
        _definitions_import,
        "import a definitions file (the broker must be stopped; or start it with --load-definitions FILE)",
        "file",
    )
    _policy_commands(command, groups)
    return parser


def _policy_commands(command: Callable[..., argparse.ArgumentParser], groups: Any) -> None:
    policies = groups.add_parser("policies", help="policies and operator policies").add_subparsers(
        dest="action", required=True
    )
    set_help = "set a policy: DEFINITION is a JSON object, e.g. '{\"max-length\": 1000}'"
    setter = command(policies, "set", _policies_set, set_help, "name", "pattern", "definition")
    setter.add_argument("--priority", type=int, default=0, help="the highest-priority matching policy applies (0)")
    setter.add_argument("--apply-to", default="all", help="queues, classic_queues, quorum_queues, exchanges or all")
    clearer = command(policies, "clear", _policies_clear, "delete a policy", "name")
    for sub in (setter, clearer):
        sub.add_argument("--vhost", default=DEFAULT_VHOST)
        sub.add_argument("--operator", action="store_true", help="an operator policy")
    sub = command(policies, "list", _policies_list, "list the policies of a vhost")
    sub.add_argument("--vhost", default=DEFAULT_VHOST)
    sub.add_argument("--operator", action="store_true", help="operator policies")


def admin_main(argv: list[str], environ: Mapping[str, str] | None = None) -> int:
    args = admin_parser().parse_args(argv)
    try:
        flags = {key: getattr(args, key) for key in ("data_dir", "store") if getattr(args, key)}
        config = load_config(flags, args.config, environ)
    except ConfigError as error:
        return _config_failure(error)
    try:
        message = args.handler(args, config)
    except (AdminError, AccessError, DefinitionsError, ApiRequestError, OSError) as error:  # OSError: the store
        print(f"amqp-server: {error}", file=sys.stderr)
        return 1
    if message:
        print(message)
    return 0


Edit = Callable[[AccessControl, list[str]], None]
Online = Callable[[ManagementClient], None]
Answer = Callable[[ManagementClient], str]  # an online change that says what it did


def _change_access(args: argparse.Namespace, config: Config, offline: Edit, online: Online) -> None:
    """``offline`` on access.json when no broker runs on the data dir, else ``online`` through its API.

    The probe happens under ``access.lock``, which a starting broker waits for before it reads
    the file (see ``ops.running``): no change can fall between the two.
    """
    with locked(config.data_dir):
        if running.probe(config.data_dir) is None:
            _refuse_while_leased(config, "change users, vhosts or permissions")
            with ops_access.configured_home(config) as home:
                access, vhosts = load_access(home, config.loopback_users)
                offline(access, vhosts)
                save_access(home, access, vhosts)
            return
    found = running.wait_published(config.data_dir)
    if found is None:  # it stopped meanwhile: the file is the truth again
        _change_access(args, config, offline, online)
        return
    if not found.management_url:
        state = "is still starting" if not found.published else "runs with its management API turned off"
        raise AdminError(
            f"a broker (pid {found.pid or 'unknown'}) {state} on data dir {config.data_dir}: users, vhosts and "
            "permissions of a running broker change through its management API (--management-port); stop the "
            "broker to edit its files instead"
        )
    online(ManagementClient(found.management_url, *credentials(args, os.environ)))


def _refuse_while_leased(config: Config, doing: str) -> None:
    """A database store served by a broker elsewhere (it holds the lease) is not edited behind its back: the
    broker keeps what it serves in memory and would write over the edit (as the data dir's lock refuses a
    segment store in use)."""
    if not is_postgres(config.store):
        return
    from storage.postgres_lease import active_holder  # psycopg: only for a postgresql:// store

    holder = active_holder(config.store)
    if holder is not None:
        raise AdminError(
            f"cannot {doing} while a broker serves this store (lease held by {holder}): change them through its "
            "management API, or stop it first"
        )


def _access(config: Config) -> tuple[AccessControl, list[str]]:
    with ops_access.configured_home(config) as home:
        return load_access(home, config.loopback_users)


def _exists(client: ManagementClient, path: str) -> bool:
    try:
        client.get(path)
    except ApiRequestError as error:
        if error.status == 404:
            return False
        raise
    return True


def _deleted(client: ManagementClient, path: str) -> bool:
    """DELETE ``path``; False if there was nothing (404)."""
    try:
        client.request("DELETE", path)
    except ApiRequestError as error:
        if error.status == 404:
            return False
        raise
    return True


def _users_add(args: argparse.Namespace, config: Config) -> str:
    tags = split_list(args.tags)

    def offline(access: AccessControl, vhosts: list[str]) -> None:
        must_be_new("user", args.name, access.users)
        access.add_user(args.name, args.password, tags)

    def online(client: ManagementClient) -> None:
        if _exists(client, f"/users/{segment(args.name)}"):
            raise AlreadyExists("user", args.name)
        client.request("PUT", f"/users/{segment(args.name)}", {"password": args.password, "tags": tags})

    _change_access(args, config, offline, online)
    return f"added user '{args.name}'"


def _users_delete(args: argparse.Namespace, config: Config) -> str:
    def offline(access: AccessControl, vhosts: list[str]) -> None:
        must_exist("user", args.name, access.users)
        access.delete_user(args.name)

    def online(client: ManagementClient) -> None:
        if not _deleted(client, f"/users/{segment(args.name)}"):
            raise NotFound("user", args.name)

    _change_access(args, config, offline, online)
    return f"deleted user '{args.name}'"


def _users_list(args: argparse.Namespace, config: Config) -> str:
    access, _ = _access(config)
    return "\n".join(f"{user.name}\t[{', '.join(user.tags)}]" for user in access.users.values())


def _vhosts_add(args: argparse.Namespace, config: Config) -> str:
    def offline(access: AccessControl, vhosts: list[str]) -> None:
        must_be_new("vhost", args.name, vhosts)
        vhosts.append(args.name)

    def online(client: ManagementClient) -> None:
        path = f"/vhosts/{segment(args.name)}"
        if _exists(client, path):
            raise AlreadyExists("vhost", args.name)
        client.request("PUT", path)
        # the API grants its caller every permission on a vhost it creates; rabbitmqctl add_vhost (and this
        # command on a stopped broker) grants nobody anything
        _deleted(client, f"/permissions/{segment(args.name)}/{segment(client.username)}")

    _change_access(args, config, offline, online)
    return f"added vhost '{args.name}'"


def _vhosts_delete(args: argparse.Namespace, config: Config) -> str:
    """A running broker closes the vhost's connections and deletes its contents; otherwise they are deleted here."""
    if args.name == DEFAULT_VHOST:
        raise AccessError(
            f"vhost '{DEFAULT_VHOST}' cannot be deleted: it always exists (remove its permissions instead)"
        )

    def offline(access: AccessControl, vhosts: list[str]) -> None:
        must_exist("vhost", args.name, vhosts)
        try:
            with open_offline_broker(config, config.loopback_users) as broker:
                delete_vhost(broker, args.name)
        except DataDirLocked as error:  # not a broker (it would hold running.json): an offline import or export
            raise AdminError(f"cannot delete the contents of vhost '{args.name}' now: {error}") from None
        remove_vhost(access, vhosts, args.name)

    def online(client: ManagementClient) -> None:
        if not _deleted(client, f"/vhosts/{segment(args.name)}"):
            raise NotFound("vhost", args.name)

    _change_access(args, config, offline, online)
    return f"deleted vhost '{args.name}'"


def _vhosts_list(args: argparse.Namespace, config: Config) -> str:
    return "\n".join(_access(config)[1])


def _permissions_set(args: argparse.Namespace, config: Config) -> str:
    for pattern in (args.configure, args.write, args.read):
        problem = regex_problem(pattern)
        if problem is not None:
            raise AccessError(f"permissions set: {problem}")
    permission = Permission(args.configure, args.write, args.read)

    def offline(access: AccessControl, vhosts: list[str]) -> None:
        must_exist("user", args.user, access.users)
        must_exist("vhost", args.vhost, vhosts)
        access.set_permission(args.user, args.vhost, permission)

    def online(client: ManagementClient) -> None:
        if not _exists(client, f"/users/{segment(args.user)}"):
            raise NotFound("user", args.user)
        if not _exists(client, f"/vhosts/{segment(args.vhost)}"):
            raise NotFound("vhost", args.vhost)
        body = {"configure": permission.configure, "write": permission.write, "read": permission.read}
        client.request("PUT", f"/permissions/{segment(args.vhost)}/{segment(args.user)}", body)

    _change_access(args, config, offline, online)
    return f"set permissions of user '{args.user}' in vhost '{args.vhost}'"


def _permissions_clear(args: argparse.Namespace, config: Config) -> str:
    missing = AccessError(f"user '{args.user}' has no permissions in vhost '{args.vhost}'")

    def offline(access: AccessControl, vhosts: list[str]) -> None:
        if access.permissions.pop((args.user, args.vhost), None) is None:
            raise missing

    def online(client: ManagementClient) -> None:
        if not _deleted(client, f"/permissions/{segment(args.vhost)}/{segment(args.user)}"):
            raise missing

    _change_access(args, config, offline, online)
    return f"cleared permissions of user '{args.user}' in vhost '{args.vhost}'"


def _permissions_list(args: argparse.Namespace, config: Config) -> str:
    access, _ = _access(config)
    return "\n".join(
        f"{user}\t{vhost}\t{p.configure}\t{p.write}\t{p.read}" for (user, vhost), p in access.permissions.items()
    )


@contextmanager
def _offline(config: Config, verb: str, what: str = "definitions") -> Iterator[Broker]:
    """The data dir's broker, opened here; a clear ``AdminError`` when a broker is running on it."""
    _refuse_while_leased(config, f"{verb} {what}")
    try:
        with open_offline_broker(config, config.loopback_users) as broker:
            yield broker
    except DataDirLocked as error:
        hint = ", or start it with --load-definitions FILE" if verb == "import" else ""
        raise AdminError(
            f"cannot {verb} {what} while a broker is running: {error} Stop the broker first{hint}."
        ) from None


def _policy_vhost(broker: Broker, name: str) -> VirtualHost:
    """The vhost named on the command line (``NotFound`` unless it exists)."""
    must_exist("vhost", name, broker.vhosts)
    return broker.vhosts[name]


def _on_policies(
    args: argparse.Namespace, config: Config, verb: str, offline: Callable[[Broker], str], online: Answer
) -> str:
    """``offline`` on the data dir's store when no broker runs on it, else ``online`` through the broker's API."""
    found = running.probe(config.data_dir)
    if found is not None:
        found = running.wait_published(config.data_dir)
    if found is None:
        with _offline(config, verb, "policies") as broker:  # a broker starting meanwhile: a clear AdminError
            return offline(broker)
    if not found.management_url:
        raise AdminError(
            f"a broker (pid {found.pid or 'unknown'}) runs on data dir {config.data_dir} without its management "
            "API (--management-port): its policies change through the API; stop it to edit the data dir instead"
        )
    return online(ManagementClient(found.management_url, *credentials(args, os.environ)))


def _policy_path(args: argparse.Namespace, name: bool = True) -> str:
    kind = "/operator-policies" if args.operator else "/policies"
    return f"{kind}/{segment(args.vhost)}" + (f"/{segment(args.name)}" if name else "")


def _policies_set(args: argparse.Namespace, config: Config) -> str:
    try:
        definition = json.loads(args.definition)
    except ValueError as error:
        raise AdminError(f"policies set: DEFINITION is not valid JSON: {error}") from None
    body = {"pattern": args.pattern, "definition": definition, "priority": args.priority, "apply-to": args.apply_to}
    kind = "operator policy" if args.operator else "policy"
    done = f"set {kind} '{args.name}' in vhost '{args.vhost}'"

    def offline(broker: Broker) -> str:
        vhost = _policy_vhost(broker, args.vhost)
        try:
            vhost.set_policy(parse_policy(vhost.name, args.name, body, args.operator))
        except PolicyError as error:
            raise AdminError(f"invalid {kind} '{args.name}': {error.reason.strip()}") from None
        return done

    def online(client: ManagementClient) -> str:
        client.request("PUT", _policy_path(args), body)
        return done

    return _on_policies(args, config, "set", offline, online)


def _policies_clear(args: argparse.Namespace, config: Config) -> str:
    kind = "operator policy" if args.operator else "policy"
    missing = AdminError(f"no {kind} '{args.name}' in vhost '{args.vhost}'")

    def offline(broker: Broker) -> str:
        if not _policy_vhost(broker, args.vhost).clear_policy(args.name, args.operator):
            raise missing
        return f"cleared {kind} '{args.name}' in vhost '{args.vhost}'"

    def online(client: ManagementClient) -> str:
        if not _deleted(client, _policy_path(args)):
            raise missing
        return f"cleared {kind} '{args.name}' in vhost '{args.vhost}'"

    return _on_policies(args, config, "clear", offline, online)


def _policies_list(args: argparse.Namespace, config: Config) -> str:
    """vhost, name, pattern, apply-to, definition, priority: ``rabbitmqctl list_policies``' columns."""

    def lines(policies: list[dict[str, Any]]) -> str:
        return "\n".join(
            "\t".join(
                (p["vhost"], p["name"], p["pattern"], p["apply-to"], json.dumps(p["definition"]), str(p["priority"]))
            )
            for p in policies
        )

    def offline(broker: Broker) -> str:
        return lines([p.to_json() for p in _policy_vhost(broker, args.vhost).policies.listing(args.operator)])

    def online(client: ManagementClient) -> str:
        return lines(client.get(_policy_path(args, name=False)))

    return _on_policies(args, config, "list", offline, online)


def _definitions_export(args: argparse.Namespace, config: Config) -> str | None:
    if config.store == "segment" and not config.data_dir.is_dir():
        raise AdminError(f"no data dir {config.data_dir}")
    with _offline(config, "export") as broker:
        text = json.dumps(export_from(broker), indent=2) + "\n"
    if args.file == "-":
        sys.stdout.write(text)
        return None
    Path(args.file).write_text(text, encoding="utf-8")
    return f"exported definitions to {args.file}"


def _definitions_import(args: argparse.Namespace, config: Config) -> str:
    with locked(config.data_dir), _offline(config, "import") as broker:
        counts = import_file(broker, Path(args.file))
        save_broker_access(ops_access.access_home(config.data_dir, broker.store), broker)
        transient = [
            f"{vhost.name}/{entity.name}"
            for vhost in broker.vhosts.values()
            for entity in (*vhost.exchanges.values(), *vhost.queues.values())
            if not entity.durable
        ]
    summary = ", ".join(f"{count} {name}" for name, count in counts.items())
    warning = (
        (
            f"\nwarning: non-durable exchanges and queues exist only while a broker runs, so these were not "
            f"kept (use --load-definitions at start): {', '.join(transient)}"
        )
        if transient
        else ""
    )
    return f"imported {summary} from {args.file}{warning}"
