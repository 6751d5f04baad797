"""A real Celery worker (subprocess, solo pool) against the broker, with results over ``rpc://``.

The test process sends tasks with ``.delay()``/``apply_async`` and waits on
their results; the worker consumes them from the broker and replies on the
caller's rpc reply queue.  Covers a plain task, many tasks in flight, a task
with a countdown (the worker holds it unacked and raises its prefetch with
basic.qos), a chain, a group, an exception propagating back to the caller, and
a worker started with Celery's defaults (gossip, mingle, heartbeat events and
AMQP heartbeats, i.e. the fanout/topic exchanges and TTL'd queues real
deployments use) answering a remote-control ping and shutting down on a
remote-control shutdown.

Each worker gets its own queue and node name; it is stopped with SIGTERM, then
killed if it lingers, and its queue deleted.  Every wait is bounded.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from celery import Celery, chain, group
from celery.exceptions import TimeoutError as ResultTimeout
from celery.result import AsyncResult
from kombu import Connection

from . import celery_app
from .celery_app import TaskFailed, add, echo, fail, multiply

RESULT_TIMEOUT = 20
WORKER_START_TIMEOUT = 20.0
WORKER_STOP_TIMEOUT = 10.0
LEAN = ("--without-gossip", "--without-mingle", "--without-heartbeat")


class Worker:
    """``celery worker`` in a subprocess, consuming ``queue`` from the broker at ``broker_url``."""

    def __init__(self, broker_url: str, queue: str, *extra_args: str, env: dict[str, str] | None = None) -> None:
        self.broker_url = broker_url
        self.queue = queue
        self.nodename = f"interop-{uuid.uuid4().hex[:8]}@127.0.0.1"
        self.output: list[str] = []
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "interop_tests.celery_app",
                "worker",
                "--pool=solo",
                "--concurrency=1",
                "-l",
                "info",
                "-n",
                self.nodename,
                "-Q",
                queue,
                *extra_args,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            env={**os.environ, celery_app.BROKER_URL_ENV: broker_url, celery_app.QUEUE_ENV: queue, **(env or {})},
            cwd=Path(__file__).resolve().parent.parent,
        )
        self.ready = threading.Event()
        threading.Thread(target=self._read_output, daemon=True).start()

    def _read_output(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.output.append(line)
            if f"{self.nodename} ready." in line:
                self.ready.set()

    def wait_ready(self) -> Worker:
        deadline = time.monotonic() + WORKER_START_TIMEOUT
        while not self.ready.wait(0.1):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError("celery worker did not become ready:\n" + self.log)
        return self

    @property
    def log(self) -> str:
        return "".join(self.output)

    def stop(self) -> None:
        """SIGTERM (warm shutdown), SIGKILL if it lingers; then delete the worker's queue and its exchange."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(WORKER_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(WORKER_STOP_TIMEOUT)
        with Connection(self.broker_url, connect_timeout=5) as conn:
            channel = conn.channel()
            channel.queue_delete(self.queue)
            channel.exchange_delete(self.queue)  # Celery declares a direct exchange named after the queue


def result_of(result: AsyncResult, worker: Worker) -> object:
    """The task's return value (its exception propagates); a timeout fails with the worker's log."""
    try:
        return result.get(timeout=RESULT_TIMEOUT)
    except ResultTimeout:
        pytest.fail(f"no result within {RESULT_TIMEOUT} s; worker log:\n{worker.log}")


@pytest.fixture(scope="module")
def broker_url(broker: SimpleNamespace) -> str:
    return f"amqp://guest:guest@{broker.host}:{broker.port}//"


@pytest.fixture(scope="module")
def queue_name() -> str:
    return f"celery-interop-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def app(broker_url: str, queue_name: str) -> Iterator[Celery]:
    """The test process's side of ``celery_app.app``: sends to the broker under test and the worker's queue.

    Afterwards it deletes the exchanges Celery's remote control and events declare.
    """
    celery_app.app.conf.update(broker_url=broker_url, task_default_queue=queue_name)
    yield celery_app.app
    celery_app.app.close()
    with Connection(broker_url, connect_timeout=5) as conn:
        channel = conn.channel()
        for exchange in ("celery.pidbox", "reply.celery.pidbox", "celeryev"):
            channel.exchange_delete(exchange)


@pytest.fixture(scope="module")
def worker(app: Celery, broker_url: str, queue_name: str) -> Iterator[Worker]:
    """A worker without gossip/mingle/heartbeat events: just the task queue, remote control and rpc replies.

    Its AMQP heartbeat is off too: with heartbeats on, the worker's event loop sleeps
    up to 10 s between timer checks and only then notices a SIGTERM.
    """
    started = Worker(broker_url, queue_name, *LEAN, env={celery_app.HEARTBEAT_ENV: "0"}).wait_ready()
    yield started
    started.stop()


def test_delay_runs_the_task_in_the_worker_and_returns_its_result(worker):
    result = add.delay(2, 3)

    assert result_of(result, worker) == 5
    assert result.state == "SUCCESS"


def test_many_tasks_in_flight_each_get_their_own_result(worker):
    payloads = [{"n": n, "text": "x" * n} for n in range(40)]
    results = [echo.delay(payload) for payload in payloads]

    assert [result_of(r, worker) for r in results] == payloads


def test_task_with_countdown_runs_after_the_delay(worker):
    sent = time.monotonic()
    result = add.apply_async((20, 22), countdown=1)

    assert result_of(result, worker) == 42
    assert time.monotonic() - sent >= 1


def test_chain_passes_each_result_to_the_next_task(worker):
    result = chain(add.s(2, 3), multiply.s(4), add.s(1)).delay()

    assert result_of(result, worker) == 21
    assert result_of(result.parent, worker) == 20


def test_group_collects_every_member_result(worker):
    result = group(multiply.s(n, n) for n in range(6)).delay()

    assert result_of(result, worker) == [0, 1, 4, 9, 16, 25]


def test_task_exception_propagates_to_the_caller(worker):
    result = fail.delay("boom")

    with pytest.raises(TaskFailed, match="boom"):
        result_of(result, worker)
    assert result.state == "FAILURE"
    assert "TaskFailed" in result.traceback


def test_worker_with_default_features_runs_tasks_answers_ping_and_obeys_remote_shutdown(app, broker_url):
    default_worker = Worker(broker_url, f"celery-interop-defaults-{uuid.uuid4().hex[:8]}").wait_ready()
    try:
        result = add.apply_async((40, 2), queue=default_worker.queue)
        assert result_of(result, default_worker) == 42

        replies = app.control.ping(destination=[default_worker.nodename], timeout=5, limit=1)
        assert replies == [{default_worker.nodename: {"ok": "pong"}}], default_worker.log

        app.control.shutdown(destination=[default_worker.nodename])
        assert default_worker.process.wait(WORKER_STOP_TIMEOUT) == 0, default_worker.log
    finally:
        default_worker.stop()
