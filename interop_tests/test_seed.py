"""The seed program ``examples/send.py`` (a verbatim copy of the project's seed ``send.py``) runs unchanged.

The script hard-codes ``pika.ConnectionParameters('localhost')`` on pika's default
port 5672.  To point it at the session broker without editing it, the subprocess
gets a ``sitecustomize.py`` on its ``PYTHONPATH`` that sets
``pika.connection.Parameters.DEFAULT_PORT`` (the class attribute every
``ConnectionParameters()`` reads when no port is given) from ``SEED_AMQP_PORT``.
The receiving side is the classic tutorial receiver: ``basic_consume`` on
'hello' with a callback, ``start_consuming``, stop after the first message.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace

import pika
import pytest
from pika.adapters.blocking_connection import BlockingChannel

SEED_SEND = Path(__file__).resolve().parent.parent / "examples" / "send.py"
QUEUE = "hello"
TIMEOUT = 10.0

SITECUSTOMIZE = """\
import os

import pika.connection

pika.connection.Parameters.DEFAULT_PORT = int(os.environ["SEED_AMQP_PORT"])
"""


@pytest.fixture
def seed_env(tmp_path: Path, broker: SimpleNamespace) -> dict[str, str]:
    """Environment for the seed subprocess: our sitecustomize first on PYTHONPATH, the broker's port."""
    (tmp_path / "sitecustomize.py").write_text(SITECUSTOMIZE)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(tmp_path), env.get("PYTHONPATH")]))
    env["SEED_AMQP_PORT"] = str(broker.port)
    return env


@pytest.fixture
def receiver(params: pika.ConnectionParameters) -> Iterator[BlockingChannel]:
    """A channel on 'hello', declared as the seed declares it and emptied of earlier tests' messages."""
    params.socket_timeout = params.stack_timeout = params.blocked_connection_timeout = TIMEOUT
    connection = pika.BlockingConnection(params)
    channel = connection.channel()
    channel.queue_declare(queue=QUEUE)
    channel.queue_purge(queue=QUEUE)
    yield channel
    if connection.is_open:
        connection.close()


def start_seed_send(env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(SEED_SEND)], env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )


def finish(process: subprocess.Popen[str]) -> None:
    try:
        stdout, stderr = process.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        raise AssertionError("send.py did not finish") from None
    assert process.returncode == 0, f"send.py failed:\n{stdout}\n{stderr}"


def receive_first_message(
    channel: BlockingChannel, before_consuming: Callable[[], object] = lambda: None
) -> list[bytes]:
    """The tutorial's receive loop, stopped after one message, or empty-handed by a safety timer."""
    bodies: list[bytes] = []

    def callback(ch, method, properties, body):
        bodies.append(body)
        ch.stop_consuming()

    channel.basic_consume(queue=QUEUE, on_message_callback=callback, auto_ack=True)
    before_consuming()
    channel.connection.call_later(TIMEOUT, channel.stop_consuming)
    channel.start_consuming()
    return bodies


def test_seed_send_delivers_hello_world_to_a_later_receiver(seed_env, receiver):
    finish(start_seed_send(seed_env))

    assert receive_first_message(receiver) == [b"Hello World!"]
    assert receiver.queue_declare(queue=QUEUE, passive=True).method.message_count == 0


def test_seed_send_delivers_hello_world_to_a_waiting_receiver(seed_env, receiver):
    processes: list[subprocess.Popen[str]] = []

    bodies = receive_first_message(receiver, before_consuming=lambda: processes.append(start_seed_send(seed_env)))

    finish(processes[0])
    assert bodies == [b"Hello World!"]
