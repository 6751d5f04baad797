"""``GET /api/tail/{vhost}[?exchange=NAME][&queue=NAME]``: the live message tail, streamed as NDJSON.

One JSON object per line (``Content-Type: application/x-ndjson``) per message passing through
the vhost — or only those published to the exchange (``amq.default`` is the default exchange)
and their deliveries, or those published to and delivered from the queue — without consuming
anything::

    {"kind": "publish"|"deliver", "exchange": str, "routing_keys": [str], "queue": str|null,
     "properties": {…as /api/queues/{vhost}/{queue}/get shows them}, "payload": str (the first 2 KiB),
     "payload_encoding": "string"|"base64", "payload_bytes": int, "timestamp": float (ms since the epoch),
     "routed_queues": [str] (publish) | "redelivered": bool (deliver)}

then ``{"kind": "heartbeat"}`` at once and every 5 s, and ``{"kind": "dropped", "count": N}`` when
this reader fell behind and the broker dropped the N oldest lines for it (``core.tail``: a slow
reader never blocks the broker nor grows its memory).  Who may watch: as the vhost's other
endpoints (``vhost_of``: 401 without permissions on it); monitoring and administrator users see
everything there, others the named exchange or queue only if they may read it (401 otherwise)
and, on the whole vhost, what they may read.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web

from ..core.operations import Watcher
from .context import add, caller, context, vhost_of

HEARTBEAT_SECONDS = 5.0
HEARTBEAT = {"kind": "heartbeat"}
DEFAULT_EXCHANGE = "amq.default"  # the default exchange "" in the query string, as in the API's paths


def add_routes(router: web.UrlDispatcher) -> None:
    add(router, "GET", "/api/tail/{vhost}", get_tail)


async def get_tail(request: web.Request) -> web.StreamResponse:
    name = vhost_of(request)
    who = caller(request)
    exchange = request.query.get("exchange")
    if exchange == DEFAULT_EXCHANGE:
        exchange = ""
    tail = context(request).operations.tail
    wake = asyncio.Event()
    reader = None if who.is_monitoring else who.name
    watcher = tail.watch(name, exchange, request.query.get("queue"), reader, wake.set)  # 404 / 403 → 401
    try:
        response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson", "Cache-Control": "no-cache"})
        await response.prepare(request)
        if request.method != "HEAD":
            await _stream(request, response, watcher, wake)
    finally:
        tail.unwatch(watcher)
    return response


async def _stream(request: web.Request, response: web.StreamResponse, watcher: Watcher, wake: asyncio.Event) -> None:
    """Write what passes until the reader goes away (or the vhost does): a write to a closed connection raises."""
    loop = asyncio.get_running_loop()
    tail = context(request).operations.tail
    lines: list[dict[str, Any]] = [HEARTBEAT]
    next_heartbeat = loop.time() + HEARTBEAT_SECONDS
    try:
        while True:
            # one write per wake-up; it waits while the reader's socket is full (the watcher drops meanwhile)
            await response.write(b"".join(json.dumps(line, separators=(",", ":")).encode() + b"\n" for line in lines))
            if not tail.watching(watcher) or request.transport is None or request.transport.is_closing():
                return
            try:
                await asyncio.wait_for(wake.wait(), max(0.0, next_heartbeat - loop.time()))
            except TimeoutError:
                pass
            wake.clear()
            lines = watcher.take()
            if loop.time() >= next_heartbeat:
                lines.append(HEARTBEAT)
                next_heartbeat = loop.time() + HEARTBEAT_SECONDS
    except (ConnectionResetError, ConnectionError):
        return  # the reader hung up
