"""A small HTTP client for the management API tests (urllib: no dependency a user would not have).

``AMQP_HTTP_URL=http://guest:guest@127.0.0.1:15691`` (with ``AMQP_URL`` for the same broker) runs the
management tests against that broker — RabbitMQ's management plugin — instead of a broker process
of ours, so field names and status codes are checked against the real thing.
"""

from __future__ import annotations

import base64
import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote, urlparse

T = TypeVar("T")
TIMEOUT = 10.0  # seconds for one request, and for a poll to see a change (RabbitMQ's stats lag ~5 s)


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


class Api:
    """Requests to ``base`` (``http://HOST:PORT``) as ``user``/``password``."""

    def __init__(self, base: str, user: str = "guest", password: str = "guest") -> None:
        parsed = urlparse(base)
        self.base = f"{parsed.scheme}://{parsed.hostname}:{parsed.port}"
        self.user = parsed.username or user
        self.password = parsed.password or password

    def as_user(self, user: str, password: str) -> Api:
        return Api(self.base, user, password)

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
        auth: bool = True,
        raw: bytes | None = None,
    ) -> Response:
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        request = urllib.request.Request(self.base + path, data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if auth:
            token = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
            request.add_header("Authorization", f"Basic {token}")
        for key, value in (headers or {}).items():
            request.add_header(key, value)
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT) as answer:
                return Response(answer.status, {k.lower(): v for k, v in answer.headers.items()}, answer.read())
        except urllib.error.HTTPError as error:
            return Response(error.code, {k.lower(): v for k, v in error.headers.items()}, error.read())

    def get(self, path: str, **kwargs: Any) -> Response:
        return self.request("GET", path, **kwargs)

    def put(self, path: str, body: Any = None, **kwargs: Any) -> Response:
        return self.request("PUT", path, {} if body is None else body, **kwargs)

    def post(self, path: str, body: Any = None, **kwargs: Any) -> Response:
        return self.request("POST", path, {} if body is None else body, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> Response:
        return self.request("DELETE", path, **kwargs)

    def ok(self, method: str, path: str, body: Any = None, **kwargs: Any) -> Any:
        """The JSON of a 2xx answer (None for an empty body); fails the test on any other status."""
        answer = self.request(method, path, body, **kwargs)
        assert 200 <= answer.status < 300, (method, path, answer.status, answer.body)
        return answer.json if answer.body else None


def q(name: str) -> str:
    """A path segment: ``/`` is ``%2F``."""
    return quote(name, safe="")


def poll(fetch: Callable[[], T], until: Callable[[T], bool], what: str, timeout: float = TIMEOUT) -> T:
    """``fetch()`` again until ``until`` holds (RabbitMQ shows connections and counts a few seconds late)."""
    deadline = time.monotonic() + timeout
    while True:
        value = fetch()
        if until(value):
            return value
        assert time.monotonic() < deadline, f"{what}: last seen {value!r}"
        time.sleep(0.05)


def external_http_url() -> str | None:
    return os.environ.get("AMQP_HTTP_URL") or None
