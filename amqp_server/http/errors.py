"""The management API's error answers, with RabbitMQ's status codes and JSON bodies.

Handlers raise ``ApiError``; the middleware in ``app`` turns it (and aiohttp's own
404/405/413) into the response RabbitMQ would send.
"""

from __future__ import annotations

import json

from aiohttp import web

REALM = 'Basic realm="RabbitMQ Management"'


class ApiError(Exception):
    """An error answer: status, RabbitMQ's ``error`` and ``reason`` (``None``: an empty body, as for 405)."""

    def __init__(
        self, status: int, error: str | None = None, reason: object = None, headers: dict[str, str] | None = None
    ):
        super().__init__(reason if reason is not None else error)
        self.status = status
        self.error = error
        self.reason = reason
        self.headers = headers or {}

    def response(self) -> web.Response:
        if self.error is None:
            return web.Response(status=self.status, headers=self.headers)
        body = json.dumps({"error": self.error, "reason": self.reason}, separators=(",", ":"))
        return web.Response(status=self.status, text=body, content_type="application/json", headers=self.headers)


def not_found() -> ApiError:
    return ApiError(404, "Object Not Found", "Not Found")


def bad_request(reason: object) -> ApiError:
    return ApiError(400, "bad_request", reason)


def require_keys(body: dict[str, object], keys: tuple[str, ...]) -> None:
    """400 naming every one of ``keys`` the JSON body lacks, as RabbitMQ lists them (``[{key_missing,K},...]``)."""
    missing = [key for key in keys if key not in body]
    if missing:
        raise bad_request("[" + ",".join(f"{{key_missing,{key}}}" for key in missing) + "]")


def unauthorized_login() -> ApiError:
    return ApiError(401, "not_authorized", "Login failed", {"WWW-Authenticate": REALM})


def no_credentials() -> ApiError:
    return ApiError(401, headers={"WWW-Authenticate": REALM})


def not_authorised(reason: str) -> ApiError:
    """A logged-in user without the tag (or vhost access) an endpoint needs: 401, no challenge (RabbitMQ)."""
    return ApiError(401, "not_authorised", reason)


def method_not_allowed(allowed: str) -> ApiError:
    return ApiError(405, headers={"Allow": allowed})
