"""The Celery app the Celery interop tests run in a real worker subprocess (and send tasks from).

The broker URL and the task queue come from the environment
(``INTEROP_CELERY_BROKER_URL``, ``INTEROP_CELERY_QUEUE``) so the worker started by
the tests talks to the broker under test on its own queue; results travel back
over the ``rpc://`` backend (reply queues on the same broker).
``INTEROP_CELERY_BROKER_HEARTBEAT`` overrides the AMQP heartbeat (Celery's
default is 120 s).
"""

from __future__ import annotations

import os

from celery import Celery

BROKER_URL_ENV = "INTEROP_CELERY_BROKER_URL"
QUEUE_ENV = "INTEROP_CELERY_QUEUE"
HEARTBEAT_ENV = "INTEROP_CELERY_BROKER_HEARTBEAT"

app = Celery("interop_tests.celery_app", broker=os.environ.get(BROKER_URL_ENV), backend="rpc://")
app.conf.update(
    task_default_queue=os.environ.get(QUEUE_ENV, "celery"),
    broker_connection_timeout=5,
    broker_connection_retry_on_startup=False,
    broker_connection_max_retries=2,
)
if HEARTBEAT_ENV in os.environ:
    app.conf.broker_heartbeat = int(os.environ[HEARTBEAT_ENV])


class TaskFailed(Exception):
    """Raised on purpose by ``fail`` to check that errors propagate to the caller."""


@app.task
def add(x: int, y: int) -> int:
    return x + y


@app.task
def multiply(x: int, y: int) -> int:
    return x * y


@app.task
def echo(value: object) -> object:
    return value


@app.task
def fail(message: str) -> None:
    raise TaskFailed(message)
