"""The aiohttp application: authentication and error middleware, the routes, and binding the site.

Embedded in the broker's event loop with ``web.AppRunner`` / ``web.TCPSite`` (no second
thread or loop): handlers run between AMQP reads, call the synchronous
``BrokerOperations`` and answer, so they see and change the broker exactly as the
AMQP handlers do, with no locking.
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from ..errors import AMQPError
from . import access_api, dashboard, entities, overview, policies_api, sessions, tail_api
from .auth import MANAGEMENT_TAGS, Caller, basic_credentials
from .context import CALLER, CONTEXT, Context, Handler, context
from .errors import ApiError, bad_request, no_credentials, not_authorised, not_found, unauthorized_login
from .listing import ListingError

log = logging.getLogger("amqp_server.http")

MAX_BODY_SIZE = 20 * 1024 * 1024  # bytes of a request body (RabbitMQ's management.http.max_body_size: 20 MB)
SHUTDOWN_TIMEOUT = 2.0  # seconds requests still running at shutdown get to finish (aiohttp's default: 60)
__all__ = ["Context", "create_app", "start"]


def create_app(ctx: Context) -> web.Application:
    app = web.Application(middlewares=[_errors, _durable, _authenticate], client_max_size=MAX_BODY_SIZE)
    app[CONTEXT] = ctx
    app.on_response_prepare.append(_server_header)
    for module in (overview, access_api, entities, policies_api, sessions, tail_api, dashboard):
        module.add_routes(app.router)
    return app


async def start(app: web.Application, host: str, port: int) -> tuple[web.AppRunner, int]:
    """Bind ``app`` on ``host:port`` (0: a free port); returns the runner (to ``cleanup()``) and the port."""
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_address=True, shutdown_timeout=SHUTDOWN_TIMEOUT)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    bound = runner.addresses[0][1]  # (host, port[, …]) of the listening socket: the real port of port 0
    return runner, int(bound)


async def _server_header(request: web.Request, response: web.StreamResponse) -> None:
    """Name the product, not the HTTP library and its version (RabbitMQ says "Cowboy")."""
    response.headers["Server"] = "amqp-server"


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """RabbitMQ's error bodies for every failure; an unexpected exception is a logged 500, never a traceback."""
    try:
        return await handler(request)
    except ApiError as error:
        return error.response()
    except ListingError as error:
        return ApiError(400, error.error, error.reason).response()
    except AMQPError as error:
        return _amqp_error(error).response()
    except web.HTTPNotFound:
        return not_found().response()
    except web.HTTPMethodNotAllowed as error:
        return ApiError(405, headers={"Allow": ", ".join(sorted(error.allowed_methods))}).response()
    except web.HTTPRequestEntityTooLarge:
        return ApiError(413, "bad_request", "Request entity too large").response()
    except web.HTTPException:
        raise
    except Exception:
        log.exception("management API: %s %s failed", request.method, request.path)
        return ApiError(500, "internal_server_error", "Internal Server Error").response()


def _amqp_error(error: AMQPError) -> ApiError:
    """What the management plugin answers when the AMQP operation it ran fails."""
    if error.reply_code == 404:
        return not_found()
    if error.reply_code == 403:  # a permission, a reserved name or a system exchange: RabbitMQ says only this
        return ApiError(401, "not_authorised", "Access refused.")
    reason = error.reply_text.split(" - ", 1)[-1]
    return bad_request(reason)


@web.middleware
async def _durable(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A change (PUT, POST, DELETE) is answered once the store has synced what it wrote, as RabbitMQ answers
    after its commit: a policy, queue or binding confirmed with 201/204 survives a kill -9 right after.
    Waits on the group commit AMQP's declare-ok waits for; a failed sync is a 500 (AMQP closes the channel)."""
    if request.method in ("GET", "HEAD", "OPTIONS"):
        return await handler(request)
    try:
        response = await handler(request)
    except Exception:
        await _synced(request)  # what a failed request wrote too (a definitions import stopped half way)
        raise
    if not await _synced(request):
        raise ApiError(500, "internal_server_error", "could not write the change to disk")
    return response


async def _synced(request: web.Request) -> bool:
    """Wait for the store sync covering every write so far (at once if none is pending); whether it succeeded."""
    synced: asyncio.Future[bool] = asyncio.get_running_loop().create_future()

    def finished(ok: bool) -> None:
        if not synced.done():
            synced.set_result(ok)

    if not context(request).operations.after_pending_writes(finished):
        return True
    return await synced


@web.middleware
async def _authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
    if dashboard.is_public(request):  # the dashboard's page and scripts; they log in through the API
        return await handler(request)
    if dashboard.is_cross_site(request):
        raise ApiError(403, "forbidden", "cross-site request refused")
    header = request.headers.get("Authorization")
    if not header:
        raise no_credentials()
    credentials = basic_credentials(header)
    if credentials is None:
        if header.partition(" ")[0].lower() == "basic":
            raise ApiError(400)  # RabbitMQ: an undecodable Basic header is a bare 400
        raise unauthorized_login()  # another scheme (Bearer …): no such login here
    username, password = credentials
    peer_host = request.remote or ""
    user = context(request).operations.authenticate(username, password, peer_host)
    if user is None:
        log.warning("management API: login refused for user '%s' from %s", username, peer_host)
        raise unauthorized_login()
    tags = frozenset(user["tags"])
    if not tags & MANAGEMENT_TAGS:
        raise not_authorised("Not management user")
    request[CALLER] = Caller(username, tags)
    return await handler(request)
