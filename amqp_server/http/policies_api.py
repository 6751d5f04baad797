"""``/api/policies`` and ``/api/operator-policies``: list, get, set and clear, as RabbitMQ 3.10's management plugin.

The broker side is ``BrokerOperations.policies`` (``core.policy_operations``; validation shared
with definitions import and the admin CLI).  What RabbitMQ answers, probed on 3.10.8: a new policy is 201, a
changed one 204, DELETE 204, a missing one 404 ``Object Not Found``; a PUT naming a
vhost that does not exist is 404 ``{"error": "not_found", "reason": "vhost_not_found"}``;
an invalid policy 400 with the validation text, HTML-escaped for ``/api/policies`` only
(``&lt;&lt;"x"&gt;&gt;``; the operator-policies handler does not escape).  Lists are
open to every management user, cut to the vhosts they may use; one policy, and changes,
need ``policymaker`` (else 401 "User not authorised to access object"), one operator
policy and its changes ``administrator`` (401 "Not administrator user").
"""

from __future__ import annotations

from aiohttp import web

from ..core.operations import NoSuchVhost, PolicyError
from .context import Handler, add, caller, context, json_body, listed, no_content, permitted_vhosts, reply, vhost_of
from .errors import ApiError, bad_request, not_authorised, not_found

KINDS = (("policies", False), ("operator-policies", True))


def add_routes(router: web.UrlDispatcher) -> None:
    for kind, operator in KINDS:
        add(router, "GET", f"/api/{kind}", _list_all(operator))
        add(router, "GET", f"/api/{kind}/{{vhost}}", _list_vhost(operator))
        add(router, "GET", f"/api/{kind}/{{vhost}}/{{name}}", _get(operator))
        add(router, "PUT", f"/api/{kind}/{{vhost}}/{{name}}", _put(operator))
        add(router, "DELETE", f"/api/{kind}/{{vhost}}/{{name}}", _delete(operator))


def _may_change(request: web.Request, operator: bool) -> str:
    """The URL's vhost name, once the caller may read and change its (operator) policies."""
    who, vhost = caller(request), request.match_info["vhost"]
    if operator:
        who.require_administrator()
    elif not who.is_policymaker or (vhost not in permitted_vhosts(request) and vhost in _vhosts(request)):
        raise not_authorised("User not authorised to access object")
    return vhost


def _vhosts(request: web.Request) -> list[str]:
    return context(request).operations.vhost_names()


def _list_all(operator: bool) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        policies = context(request).operations.policies.list(permitted_vhosts(request), operator)
        return listed(request, policies, ("vhost", "name"))

    return handler


def _list_vhost(operator: bool) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        policies = context(request).operations.policies.list([vhost_of(request)], operator)
        return listed(request, policies, ("vhost", "name"))

    return handler


def _get(operator: bool) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        vhost = _may_change(request, operator)
        try:
            found = context(request).operations.policies.get(vhost, request.match_info["name"], operator)
        except NoSuchVhost:
            found = None
        if found is None:
            raise not_found()
        return reply(found)

    return handler


def _put(operator: bool) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        vhost = _may_change(request, operator)
        body = await json_body(request)
        try:
            created = context(request).operations.policies.set(vhost, request.match_info["name"], body, operator)
        except NoSuchVhost:
            raise ApiError(404, "not_found", "vhost_not_found") from None
        except PolicyError as error:
            raise bad_request(error.reason if operator else _escape(error.reason)) from None
        return no_content(201 if created else 204)

    return handler


def _delete(operator: bool) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        vhost = _may_change(request, operator)
        try:
            cleared = context(request).operations.policies.clear(vhost, request.match_info["name"], operator)
        except NoSuchVhost:
            cleared = False
        if not cleared:
            raise not_found()
        return no_content()

    return handler


def _escape(reason: str) -> str:
    """What RabbitMQ's policy handler does to a reason before sending it (``&`` is left alone there too)."""
    return reason.replace("<", "&lt;").replace(">", "&gt;")
