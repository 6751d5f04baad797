"""pytest fixtures for tests that need a real AMQP 0-9-1 broker.

- ``amqp_broker`` (session): one broker for the whole run, started in a thread
  with ``amqp_server.running()``; it has ``.url``, ``.host``, ``.port`` and
  ``.data_dir``.
- ``amqp_vhost`` (function): the URL of a fresh virtual host on that broker, so
  each test starts with no queues, exchanges or messages left by other tests.
- ``amqp_virtual_broker`` (function): a broker of this test's own on a virtual
  clock (``running(virtual_clock=True)``): ``amqp_virtual_broker.advance(30)``
  expires a 30 s message TTL at once.  Skipped against an external broker,
  whose clock cannot be moved.

``--amqp-broker-url URL`` (or the ``AMQP_URL`` environment variable; the flag
wins) runs the same tests against an external broker, e.g. a RabbitMQ: then
nothing is started, ``amqp_broker.url`` is that URL and ``amqp_vhost`` is that
URL too (its vhost, ``/`` by default), shared by all tests.

Registered through the ``pytest11`` entry point, so installing the package is
enough; ``-p no:amqp_server.pytest_plugin`` (the entry point's name) turns it off.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import pytest

if TYPE_CHECKING:
    from .embedding import RunningBroker

_vhost_numbers = itertools.count(1)


@dataclass(frozen=True)
class ExternalBroker:
    """A broker this plugin did not start (``--amqp-broker-url`` / ``AMQP_URL``)."""

    url: str
    data_dir: Path | None = None

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or "localhost"

    @property
    def port(self) -> int:
        parts = urlsplit(self.url)
        return parts.port or (5671 if parts.scheme == "amqps" else 5672)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("amqp-server", "AMQP broker fixtures (amqp_server)")
    group.addoption(
        "--amqp-broker-url",
        dest="amqp_broker_url",
        default=None,
        metavar="URL",
        help="run the amqp_broker/amqp_vhost fixtures against the broker at URL instead of "
        "starting one (default: $AMQP_URL)",
    )


@pytest.fixture(scope="session")
def amqp_broker(pytestconfig: pytest.Config) -> Iterator[RunningBroker | ExternalBroker]:
    """One broker for the test session: started here, or the external one named by URL."""
    url = pytestconfig.getoption("amqp_broker_url") or os.environ.get("AMQP_URL")
    if url:
        yield ExternalBroker(url)
        return
    from .embedding import running  # the broker stack loads only when a test asks for it

    with running() as broker:
        yield broker


@pytest.fixture
def amqp_vhost(amqp_broker: RunningBroker | ExternalBroker, request: pytest.FixtureRequest) -> str:
    """The URL of a virtual host of this test's own (the external broker's URL as is)."""
    if isinstance(amqp_broker, ExternalBroker):
        return amqp_broker.url
    name = f"test-{next(_vhost_numbers)}-{request.node.name}"
    return amqp_broker.add_vhost(name.encode()[:255].decode(errors="ignore"))


@pytest.fixture
def amqp_virtual_broker(pytestconfig: pytest.Config) -> Iterator[RunningBroker]:
    """A broker started for this test on a clock the test moves with ``.advance(seconds)``."""
    if pytestconfig.getoption("amqp_broker_url") or os.environ.get("AMQP_URL"):
        pytest.skip("amqp_virtual_broker needs the embedded broker: an external broker's clock cannot be moved")
    from .embedding import running

    with running(virtual_clock=True) as broker:
        yield broker
