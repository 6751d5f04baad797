"""The management API's authentication, sans sockets: Basic parsing, tags, and the loopback rule for guest
(a request from another host is refused as over AMQP), through the real middleware on mocked requests."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from amqp_server.core.broker import Broker
from amqp_server.core.operations import BrokerOperations
from amqp_server.http import app as http_app
from amqp_server.http.auth import Caller, basic_credentials
from amqp_server.http.context import Context


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_basic_credentials_parsing() -> None:
    assert basic_credentials(basic("guest", "pa:ss")) == ("guest", "pa:ss")
    assert basic_credentials("basic " + base64.b64encode(b"u:").decode()) == ("u", "")
    assert basic_credentials("Basic !!!") is None
    assert basic_credentials("Basic " + base64.b64encode(b"no-colon").decode()) is None
    assert basic_credentials("Bearer abc") is None
    assert basic_credentials(None) is None


def test_tags_grant_what_rabbitmq_grants() -> None:
    admin = Caller("a", frozenset({"administrator"}))
    monitor = Caller("m", frozenset({"monitoring"}))
    manager = Caller("p", frozenset({"management", "policymaker"}))
    assert admin.is_monitoring and admin.is_policymaker
    assert monitor.is_monitoring and not monitor.is_administrator and not monitor.is_policymaker
    assert manager.is_policymaker and not manager.is_monitoring


async def answer(app: web.Application, authorization: str | None, peer: str) -> web.StreamResponse:
    transport = mock.Mock()
    transport.get_extra_info.side_effect = lambda name, default=None: (peer, 40000) if name == "peername" else default
    headers = {"Authorization": authorization} if authorization else {}
    request = make_mocked_request("GET", "/api/whoami", headers=headers, app=app, transport=transport)
    match = await app.router.resolve(request)
    match.add_app(app)
    request._match_info = match  # what the server does between parsing and the middlewares
    handler = match.handler
    for middleware in reversed(app.middlewares):
        handler = _wrap(middleware, handler)
    return await handler(request)


def _wrap(middleware: Any, handler: Any) -> Any:
    async def call(request: web.Request) -> web.StreamResponse:
        return await middleware(request, handler)

    return call


@pytest.fixture
def app(tmp_path: Path) -> web.Application:
    broker = Broker()
    broker.access.add_user("ops", "pw", ["monitoring"])
    broker.access.add_user("app", "pw", [])
    return http_app.create_app(Context(BrokerOperations(broker), tmp_path))


async def test_guest_is_refused_from_another_host_but_not_other_users(app: web.Application) -> None:
    local = await answer(app, basic("guest", "guest"), "127.0.0.1")
    assert local.status == 200
    remote = await answer(app, basic("guest", "guest"), "10.1.2.3")
    assert remote.status == 401
    assert json.loads(remote.body) == {"error": "not_authorized", "reason": "Login failed"}
    assert (await answer(app, basic("ops", "pw"), "10.1.2.3")).status == 200


async def test_a_user_without_a_management_tag_is_not_a_management_user(app: web.Application) -> None:
    refused = await answer(app, basic("app", "pw"), "127.0.0.1")
    assert refused.status == 401 and "WWW-Authenticate" not in refused.headers
    assert json.loads(refused.body) == {"error": "not_authorised", "reason": "Not management user"}


async def test_missing_and_malformed_credentials(app: web.Application) -> None:
    missing = await answer(app, None, "127.0.0.1")
    assert (missing.status, missing.headers["WWW-Authenticate"]) == (401, 'Basic realm="RabbitMQ Management"')
    assert (await answer(app, "Basic !!!", "127.0.0.1")).status == 400
