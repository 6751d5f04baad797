"""The management API answers a change only after the store sync that makes it durable, and a 500 when that
sync fails (in-process app; interop_tests/test_http_durability.py kills a real broker right after answers).

The test plays the server's persister (``server.persister``) with a gate: each sync starts only when the
test opens it, so "the answer came before the sync" shows as an answer arriving while the gate is shut.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from amqp_server.core.broker import Broker
from amqp_server.core.operations import BrokerOperations
from amqp_server.http.app import create_app
from amqp_server.http.context import Context
from storage.segment_store import SegmentStore
from tests.frames import FakeClock

GUEST = {"Authorization": "Basic " + base64.b64encode(b"guest:guest").decode()}
POLICY = {"pattern": "^p", "definition": {"max-length": 1}}
HELD = 0.3  # seconds an answer gets to show up early while the sync is held (it must not)


class GatedPersister:
    """Group commit as the server's persister does it, each sync waiting for ``gate``; ``ok`` is its outcome."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.gate = asyncio.Event()
        self.ok = True
        self.syncs = 0
        self._task: asyncio.Task[None] | None = None
        broker.sync_barrier.on_request = self._kick

    def _kick(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        barrier = self.broker.sync_barrier
        try:
            await asyncio.sleep(0)
            while barrier.requested:
                await self.gate.wait()
                snapshot = barrier.begin()
                self.broker.store.sync()
                self.syncs += 1
                barrier.end(snapshot, self.ok)
        finally:
            self._task = None


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[tuple[TestClient[Any, Any], GatedPersister]]:
    store = SegmentStore(tmp_path / "data")
    broker = Broker(store=store, clock=FakeClock())
    persister = GatedPersister(broker)
    app = create_app(Context(BrokerOperations(broker, "rabbit@test"), tmp_path))
    client: TestClient[Any, Any] = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    try:
        yield client, persister
    finally:
        persister.gate.set()
        await client.close()
        store.close()


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("PUT", "/api/policies/%2F/p", POLICY, 201),
        ("PUT", "/api/operator-policies/%2F/p", POLICY, 201),
        ("PUT", "/api/queues/%2F/q", {"durable": True}, 201),
        ("PUT", "/api/exchanges/%2F/x", {"type": "direct", "durable": True}, 201),
        ("POST", "/api/bindings/%2F/e/amq.direct/q/q0", {"routing_key": "k"}, 201),
    ],
)
async def test_a_durable_change_is_answered_after_its_sync(setup, method, path, body, status):
    http, persister = setup
    persister.gate.set()
    assert (await http.put("/api/queues/%2F/q0", json={"durable": True}, headers=GUEST)).status == 201
    persister.gate.clear()
    answer = asyncio.ensure_future(http.request(method, path, json=body, headers=GUEST))
    done, _ = await asyncio.wait({answer}, timeout=HELD)
    assert not done, "answered before the store synced the change"
    syncs = persister.syncs
    persister.gate.set()
    assert (await answer).status == status
    assert persister.syncs > syncs


async def test_a_failed_sync_is_a_500_not_a_201(setup):
    http, persister = setup
    persister.ok = False
    persister.gate.set()
    answer = await http.put("/api/policies/%2F/p", json=POLICY, headers=GUEST)
    assert answer.status == 500
    assert await answer.json() == {"error": "internal_server_error", "reason": "could not write the change to disk"}


async def test_a_change_that_writes_nothing_durable_answers_without_a_sync(setup):
    http, persister = setup  # the gate stays shut: a sync would never come
    assert (await http.put("/api/queues/%2F/t", json={"durable": False}, headers=GUEST)).status == 201
    assert persister.syncs == 0
