"""A small client of the management HTTP API (ours or RabbitMQ's) for the CLI: stdlib ``urllib``, no dependency.

Every failure is an ``ApiRequestError`` with one line to print — RabbitMQ's error body
(``{"error": …, "reason": …}``) turned into words, or why the broker could not be reached.
"""

from __future__ import annotations

import base64
import html
import json
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import quote, unquote, urlsplit

DEFAULT_USER = "guest"
TIMEOUT = 60.0  # seconds for one request (a listing of many queues on a busy broker takes a while)
# no proxy from http_proxy & co.: the API is usually on this machine, and rabbitmqadmin ignores them too
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class ApiRequestError(Exception):
    """A request that failed; ``str()`` is the one line for the user, ``status`` the HTTP status (0: no answer)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


def segment(name: str) -> str:
    """One path segment of an API URL: everything quoted, so ``/`` (the default vhost) is ``%2F``."""
    return quote(name, safe="")


def error_message(method: str, path: str, status: int, body: bytes) -> str:
    """The line for a failed request, from RabbitMQ's JSON error body when there is one."""
    path = path.partition("?")[0]
    error: Any = None
    reason: Any = None
    try:
        data = json.loads(body) if body.strip() else None
    except ValueError:
        data = None
    if isinstance(data, dict):
        error, reason = data.get("error"), data.get("reason")
    if reason is not None and not isinstance(reason, str):
        reason = json.dumps(reason, separators=(",", ":"))  # e.g. ["not_boolean","yes"]
    if isinstance(reason, str):  # policy validation reasons span lines and are HTML-escaped (for the web UI)
        reason = html.unescape(" ".join(reason.split()))
    if status == 404:
        return f"not found: {method} {path}"
    if status == 401:
        return f"access refused ({reason or 'no credentials'}): {method} {path}"
    if status == 400 and reason:
        return str(reason)
    detail = ": ".join(str(part) for part in (error, reason) if part)
    return f"HTTP {status} on {method} {path}" + (f": {detail}" if detail else "")


class ManagementClient:
    """Requests to one management API as one user; answers are the decoded JSON (``None`` when empty).

    The user is ``username``/``password``, else the URL's ``user:password@``, else guest/guest.
    """

    def __init__(
        self, base_url: str, username: str | None = None, password: str | None = None, timeout: float = TIMEOUT
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ApiRequestError(f"not an http(s) URL of the management API: {base_url!r}")
        if username is None:
            username = unquote(parts.username) if parts.username else DEFAULT_USER
        if password is None:
            password = unquote(parts.password) if parts.password is not None else DEFAULT_USER
        netloc = parts.netloc.rpartition("@")[2]
        self.base_url = f"{parts.scheme}://{netloc}{parts.path}".rstrip("/")
        if self.base_url.endswith("/api"):
            self.base_url = self.base_url[: -len("/api")]
        self.username = username
        credentials = f"{username}:{password}".encode()
        self._authorization = "Basic " + base64.b64encode(credentials).decode("ascii")
        self.timeout = timeout

    def get(self, path: str) -> Any:
        return self.request("GET", path)

    def request(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None) -> Any:
        """``method`` on ``/api`` + ``path`` (segments already quoted), with ``body`` sent as JSON."""
        url = f"{self.base_url}/api{path}"
        data = None if body is None else json.dumps(body).encode("utf-8")
        request = urllib.request.Request(url, data=data, method=method)
        request.add_header("Authorization", self._authorization)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        for name, value in (headers or {}).items():
            if not value.isascii():
                raise ApiRequestError(f"{name} must be ASCII text (an HTTP header), got {value!r}")
            request.add_header(name, value)
        try:
            with _OPENER.open(request, timeout=self.timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as error:
            raise ApiRequestError(error_message(method, f"/api{path}", error.code, error.read()), error.code) from None
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise ApiRequestError(f"cannot reach the management API at {self.base_url}: {reason}") from None
        if not raw.strip():
            return None
        try:
            return json.loads(raw)
        except ValueError:
            raise ApiRequestError(f"{method} {url}: the answer is not JSON") from None
