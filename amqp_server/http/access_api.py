"""vhosts, users and permissions: read from the broker, changed in ``access.json`` and put into effect at once.

Each change is a read-modify-write of ``<data_dir>/access.json`` under its lock
(``ops.access.edit_access``, the admin CLI's own path), then
``BrokerOperations.install_access`` makes it live: a new user can log in, a deleted
vhost's connections are closed with 320 and its contents deleted.  The admin CLI
makes its changes through this API too while the broker runs.

Vhost descriptions, tags and tracing are kept in access.json too (``default_queue_type`` is not).  Topic
permissions are stored, listed, exported and imported, and enforced on topic exchanges as RabbitMQ does
(``core.access.AccessControl.check_topic``): a change here applies to the next publish or bind.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from aiohttp import web

from ..core.operations import HASHING_ALGORITHM, AccessControl, Permission, TopicPermission
from ..ops import access as ops_access
from ..ops.validation import regex_problem, tags_from
from .context import Context, add, caller, context, json_body, listed, no_content, ranges, reply, visible_vhosts
from .errors import bad_request, not_found, require_keys

T = TypeVar("T")
DEFAULT_VHOST_DESCRIPTION = "Default virtual host"


def add_routes(router: web.UrlDispatcher) -> None:
    add(router, "GET", "/api/vhosts", get_vhosts)
    add(router, "GET", "/api/vhosts/{vhost}", get_vhost)
    add(router, "PUT", "/api/vhosts/{vhost}", put_vhost)
    add(router, "DELETE", "/api/vhosts/{vhost}", delete_vhost)
    add(router, "GET", "/api/vhosts/{vhost}/permissions", get_vhost_permissions)
    add(router, "GET", "/api/users", get_users)
    add(router, "GET", "/api/users/without-permissions", get_users_without_permissions)
    add(router, "POST", "/api/users/bulk-delete", bulk_delete_users)
    add(router, "GET", "/api/users/{user}", get_user)
    add(router, "PUT", "/api/users/{user}", put_user)
    add(router, "DELETE", "/api/users/{user}", delete_user)
    add(router, "GET", "/api/users/{user}/permissions", get_user_permissions)
    add(router, "GET", "/api/permissions", get_permissions)
    add(router, "GET", "/api/permissions/{vhost}/{user}", get_permission)
    add(router, "PUT", "/api/permissions/{vhost}/{user}", put_permission)
    add(router, "DELETE", "/api/permissions/{vhost}/{user}", delete_permission)
    add(router, "GET", "/api/topic-permissions", get_topic_permissions)
    add(router, "GET", "/api/topic-permissions/{vhost}/{user}", get_topic_permission)
    add(router, "PUT", "/api/topic-permissions/{vhost}/{user}", put_topic_permission)
    add(router, "DELETE", "/api/topic-permissions/{vhost}/{user}", delete_topic_permission)
    add(router, "GET", "/api/vhosts/{vhost}/topic-permissions", get_vhost_topic_permissions)
    add(router, "GET", "/api/users/{user}/topic-permissions", get_user_topic_permissions)


def edit(ctx: Context, change: Callable[[AccessControl, list[str]], T]) -> T:
    """Apply ``change`` to access.json (nothing is saved if it raises), then put the result into effect."""
    home = ctx.data_dir if ctx.access_home is None else ctx.access_home
    with ops_access.edit_access(home, ctx.loopback_users) as (access, vhosts):
        result = change(access, vhosts)
    ctx.operations.install_access(access, vhosts)
    return result


# ------------------------------------------------------------------ vhosts


def vhost_info(request: web.Request, name: str, listing: bool = False) -> dict[str, Any]:
    operations = context(request).operations
    metadata = operations.access.vhost_metadata.get(name, {})
    description = metadata.get("description", DEFAULT_VHOST_DESCRIPTION if name == "/" else "")
    tags = list(metadata.get("tags", []))
    info: dict[str, Any] = {
        "cluster_state": {operations.node: "running"},
        "default_queue_type": "undefined",
        "description": description,
        "metadata": {"description": description, "tags": tags},
        "name": name,
        "tags": tags,
        "tracing": name in operations.access.traced_vhosts,
    }
    # message_stats, messages* and recv_oct/send_oct with rates, each once the vhost has had them
    info.update(context(request).operations.vhost_stats(name, ranges(request, listing)))
    return info


async def get_vhosts(request: web.Request) -> web.Response:
    return listed(request, [vhost_info(request, name, listing=True) for name in visible_vhosts(request)])


async def get_vhost(request: web.Request) -> web.Response:
    caller(request).require_administrator()  # RabbitMQ's rule, although the list is open to every user
    name = request.match_info["vhost"]
    if name not in context(request).operations.vhost_names():
        raise not_found()
    return reply(vhost_info(request, name))


async def put_vhost(request: web.Request) -> web.Response:
    """Create a vhost (201) or accept a repeat (204); the creator gets every permission on it, as in RabbitMQ."""
    who = caller(request)
    who.require_administrator()
    name = request.match_info["vhost"]
    body = await json_body(request)  # description, tags and tracing are kept; default_queue_type is not
    if not name or len(name.encode()) > 255:
        raise bad_request("vhost names are 1 to 255 bytes of UTF-8")
    metadata = ops_access.vhost_metadata_from_json(body)
    tracing = _tracing(body)

    def change(access: AccessControl, vhosts: list[str]) -> bool:
        if "description" in body or "tags" in body:
            access.vhost_metadata[name] = metadata
        ops_access.set_tracing(access, name, tracing)  # the firehose follows at once (install_access)
        if name in vhosts:
            return False
        vhosts.append(name)
        if who.name in access.users:
            access.set_permission(who.name, name, Permission())
        return True

    return no_content(201 if edit(context(request), change) else 204)


def _tracing(body: dict[str, Any]) -> bool | None:
    """A PUT's ``tracing`` as RabbitMQ parses it (``rabbit_mgmt_util:parse_bool``): true or false, also as strings;
    absent: None; anything else (null too): 400 with RabbitMQ's reason."""
    if "tracing" not in body:
        return None
    value = body["tracing"]
    if isinstance(value, bool):
        return value
    if value in ("true", "false"):
        return bool(value == "true")
    raise bad_request(["not_boolean", value])


async def delete_vhost(request: web.Request) -> web.Response:
    caller(request).require_administrator()
    name = request.match_info["vhost"]
    if name == ops_access.DEFAULT_VHOST:  # access.json always has "/": deleting it would not last
        raise bad_request("the default vhost '/' cannot be deleted")

    def change(access: AccessControl, vhosts: list[str]) -> None:
        if name not in vhosts:
            raise not_found()
        ops_access.remove_vhost(access, vhosts, name)

    edit(context(request), change)
    return no_content()


async def get_vhost_permissions(request: web.Request) -> web.Response:
    caller(request).require_administrator()
    name = request.match_info["vhost"]
    if name not in context(request).operations.vhost_names():
        raise not_found()
    access = context(request).operations.access
    items = [
        {"vhost": vhost, "user": user, **_patterns(permission)}
        for (user, vhost), permission in access.permissions.items()
        if vhost == name
    ]
    return listed(request, items, ("user",))


# ------------------------------------------------------------------ users


def user_info(access: AccessControl, name: str) -> dict[str, Any]:
    user = access.users[name]
    return {
        "name": user.name,
        "password_hash": user.password_hash,
        "hashing_algorithm": HASHING_ALGORITHM,
        "tags": list(user.tags),
        "limits": {},
    }


async def get_users(request: web.Request) -> web.Response:
    caller(request).require_administrator()
    access = context(request).operations.access
    return listed(request, [user_info(access, name) for name in access.users])


async def get_users_without_permissions(request: web.Request) -> web.Response:
    caller(request).require_administrator()
    access = context(request).operations.access
    with_permissions = {user for user, _ in access.permissions}
    return reply([user_info(access, name) for name in access.users if name not in with_permissions])


async def get_user(request: web.Request) -> web.Response:
    caller(request).require_administrator()
    access = context(request).operations.access
    name = request.match_info["user"]
    if name not in access.users:
        raise not_found()
    return reply(user_info(access, name))


async def put_user(request: web.Request) -> web.Response:
    """Create (201) or update (204) a user: ``tags`` required; ``password`` or ``password_hash``.

    An update that gives neither keeps the current password; a new user without one cannot log in
    with a password, as in RabbitMQ.
    """
    caller(request).require_administrator()
    name = request.match_info["user"]
    body = await json_body(request)
    if "tags" not in body:
        raise bad_request("tags_not_present")
    tags = tags_from(body["tags"])
    if tags is None:
        raise bad_request("tags must be a list of strings or a comma-separated string")
    password = body.get("password")
    password_hash = body.get("password_hash")
    if password is not None and not isinstance(password, str):
        raise bad_request("password must be a string")
    if password_hash is not None:
        if not isinstance(password_hash, str):
            raise bad_request("password_hash must be a string")
        algorithm = body.get("hashing_algorithm", HASHING_ALGORITHM)
        if algorithm != HASHING_ALGORITHM:
            raise bad_request(f"hashing_algorithm {algorithm!r} is not supported (only {HASHING_ALGORITHM})")

    def change(access: AccessControl, vhosts: list[str]) -> bool:
        existing = access.users.get(name)
        if password is not None:
            access.add_user(name, password, tags)
        elif password_hash is not None:
            access.add_user(name, tags=tags, password_hash=password_hash)
        elif existing is not None:
            existing.tags = list(tags)
        else:
            access.add_user(name, tags=tags, password_hash="")
        return existing is None

    return no_content(201 if edit(context(request), change) else 204)


async def delete_user(request: web.Request) -> web.Response:
    caller(request).require_administrator()
    name = request.match_info["user"]

    def change(access: AccessControl, vhosts: list[str]) -> None:
        if name not in access.users:
            raise not_found()
        access.delete_user(name)

    edit(context(request), change)
    return no_content()


async def bulk_delete_users(request: web.Request) -> web.Response:
    """Delete ``{"users": [...]}`` in order; a missing one stops there with 400 (those before it are gone)."""
    caller(request).require_administrator()
    body = await json_body(request)
    names = body.get("users")
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
        raise bad_request("[{key_missing,users}]")
    missing: list[str] = []

    def change(access: AccessControl, vhosts: list[str]) -> None:
        for name in names:
            if name not in access.users:
                missing.append(name)
                return
            access.delete_user(name)

    edit(context(request), change)
    if missing:
        raise bad_request(["no_such_user", missing[0]])
    return no_content()


async def get_user_permissions(request: web.Request) -> web.Response:
    caller(request).require_administrator()
    name = request.match_info["user"]
    access = context(request).operations.access
    if name not in access.users:
        raise not_found()
    items = [
        {"user": user, "vhost": vhost, **_patterns(permission)}
        for (user, vhost), permission in access.permissions.items()
        if user == name
    ]
    return listed(request, items, ("vhost",))


# ------------------------------------------------------------------ permissions


def _patterns(permission: Permission) -> dict[str, str]:
    return {"configure": permission.configure, "write": permission.write, "read": permission.read}


async def get_permissions(request: web.Request) -> web.Response:
    caller(request).require_administrator()
    access = context(request).operations.access
    items = [
        {"user": user, "vhost": vhost, **_patterns(permission)}
        for (user, vhost), permission in access.permissions.items()
    ]
    return listed(request, items, ("vhost", "user"))


async def get_permission(request: web.Request) -> web.Response:
    caller(request).require_administrator()
    vhost, user = request.match_info["vhost"], request.match_info["user"]
    permission = context(request).operations.access.permissions.get((user, vhost))
    if permission is None:
        raise not_found()
    return reply({"user": user, "vhost": vhost, **_patterns(permission)})


async def put_permission(request: web.Request) -> web.Response:
    caller(request).require_administrator()
    vhost, user = request.match_info["vhost"], request.match_info["user"]
    body = await json_body(request)
    require_keys(body, ("configure", "write", "read"))
    patterns = [body[key] for key in ("configure", "write", "read")]
    for pattern in patterns:
        problem = regex_problem(pattern) if isinstance(pattern, str) else "patterns must be strings"
        if problem is not None:
            raise bad_request(problem)

    def change(access: AccessControl, vhosts: list[str]) -> bool:
        if vhost not in vhosts or user not in access.users:
            raise bad_request("vhost_or_user_not_found")
        existed = (user, vhost) in access.permissions
        access.set_permission(user, vhost, Permission(*patterns))
        return not existed

    return no_content(201 if edit(context(request), change) else 204)


async def delete_permission(request: web.Request) -> web.Response:
    caller(request).require_administrator()
    vhost, user = request.match_info["vhost"], request.match_info["user"]

    def change(access: AccessControl, vhosts: list[str]) -> None:
        if (user, vhost) not in access.permissions:
            raise not_found()
        del access.permissions[(user, vhost)]  # a fresh AccessControl is installed: no cached check survives

    edit(context(request), change)
    return no_content()


# ------------------------------------------------------------------ topic permissions (enforced in core.access)


def _topic_items(request: web.Request, user: str | None = None, vhost: str | None = None) -> list[dict[str, str]]:
    access = context(request).operations.access
    return [
        ops_access.topic_permission_to_json(*key, permission)
        for key, permission in access.topic_permissions.items()
        if (user is None or key[0] == user) and (vhost is None or key[1] == vhost)
    ]


async def get_topic_permissions(request: web.Request) -> web.Response:
    caller(request).require_administrator()
    return listed(request, _topic_items(request), ("vhost", "user"))


async def get_topic_permission(request: web.Request) -> web.Response:
    """Every exchange's topic permission of one user in one vhost (a list, as RabbitMQ answers)."""
    caller(request).require_administrator()
    items = _topic_items(request, request.match_info["user"], request.match_info["vhost"])
    if not items:
        raise not_found()
    return reply(items)


async def get_vhost_topic_permissions(request: web.Request) -> web.Response:
    caller(request).require_administrator()
    vhost = request.match_info["vhost"]
    if vhost not in context(request).operations.vhost_names():
        raise not_found()
    items = [{"vhost": i["vhost"], "user": i["user"], **_topic_patterns(i)} for i in _topic_items(request, vhost=vhost)]
    return listed(request, items, ("user",))


async def get_user_topic_permissions(request: web.Request) -> web.Response:
    caller(request).require_administrator()
    user = request.match_info["user"]
    if user not in context(request).operations.access.users:
        raise not_found()
    return listed(request, _topic_items(request, user=user), ("vhost",))


def _topic_patterns(item: dict[str, str]) -> dict[str, str]:
    return {"exchange": item["exchange"], "write": item["write"], "read": item["read"]}


async def put_topic_permission(request: web.Request) -> web.Response:
    caller(request).require_administrator()
    vhost, user = request.match_info["vhost"], request.match_info["user"]
    body = await json_body(request)
    require_keys(body, ("exchange", "write", "read"))
    exchange, write, read = body["exchange"], body["write"], body["read"]
    for value in (exchange, write, read):
        if not isinstance(value, str):
            raise bad_request("exchange, write and read must be strings")
    for pattern in (write, read):
        problem = regex_problem(pattern)
        if problem is not None:
            raise bad_request(problem)

    def change(access: AccessControl, vhosts: list[str]) -> bool:
        if vhost not in vhosts or user not in access.users:
            raise bad_request("vhost_or_user_not_found")
        key = (user, vhost, exchange)
        existed = key in access.topic_permissions
        access.topic_permissions[key] = TopicPermission(write, read)
        return not existed

    return no_content(201 if edit(context(request), change) else 204)


async def delete_topic_permission(request: web.Request) -> web.Response:
    """Delete one user's topic permissions in a vhost: all of them, or ``?exchange=`` one."""
    caller(request).require_administrator()
    vhost, user = request.match_info["vhost"], request.match_info["user"]
    exchange = request.query.get("exchange")

    def change(access: AccessControl, vhosts: list[str]) -> None:
        keys = [
            key
            for key in access.topic_permissions
            if key[:2] == (user, vhost) and (exchange is None or key[2] == exchange)
        ]
        if not keys:
            raise not_found()
        for key in keys:
            del access.topic_permissions[key]

    edit(context(request), change)
    return no_content()
