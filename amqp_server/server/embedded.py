"""The broker's event loop for the two ways it runs outside ``serve()``'s caller: the CLI's main
thread (``run``, which picks the event loop implementation) and a background thread inside a test
process (``BrokerThread``, behind ``amqp_server.running()``).  They live here because only
``server/`` may touch asyncio.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from ..core.clock import VirtualClock
from ..ops.config import Config
from ..ops.errors import ConfigError
from .server import serve


def run(config: Config) -> None:
    """Serve ``config`` until stopped, on uvloop when asked for, or when it is installed and the choice is ``auto``."""
    main = serve(config)
    event_loop = config.event_loop
    if event_loop != "asyncio":
        try:
            import uvloop
        except ImportError:
            if event_loop == "uvloop":
                main.close()
                raise ConfigError("event_loop", "uvloop is not installed: pip install 'amqp-server[uvloop]'") from None
        else:
            uvloop.run(main)
            return
    asyncio.run(main)


class BrokerThread(threading.Thread):
    """Runs ``serve()`` on its own event loop; ``listening`` is set once bound (or once it failed)."""

    def __init__(self, config: Config, virtual_clock: VirtualClock | None = None) -> None:
        super().__init__(name="amqp-server", daemon=True)
        self.config = config
        self.virtual_clock = virtual_clock
        self.listening = threading.Event()
        self.error: BaseException | None = None
        self.address: tuple[str, int] | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.stop_event: asyncio.Event | None = None
        self.broker: Any = None

    def run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as error:  # reported to the test thread, which re-raises it
            self.error = error
        finally:
            self.listening.set()

    async def _main(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.stop_event = asyncio.Event()
        await serve(
            self.config, stop=self.stop_event, on_listening=self._on_listening, virtual_clock=self.virtual_clock
        )

    def _on_listening(self, host: str, port: int, broker: Any) -> None:
        self.address, self.broker = (host, port), broker
        self.listening.set()

    def stop(self, timeout: float) -> None:
        if self.loop is not None and self.stop_event is not None:
            try:
                self.loop.call_soon_threadsafe(self.stop_event.set)
            except RuntimeError:  # the loop already closed: serve() ended by itself
                pass
        self.join(timeout)
        if self.is_alive():
            raise RuntimeError(f"the broker thread did not stop within {timeout} s")

    def add_vhost(self, name: str, timeout: float) -> None:
        from ..core.access import Permission

        async def add() -> None:
            self.broker.add_vhost(name)
            self.broker.access.set_permission("guest", name, Permission())  # configure/write/read ".*"

        assert self.loop is not None
        asyncio.run_coroutine_threadsafe(add(), self.loop).result(timeout)

    def advance(self, seconds: float, timeout: float) -> None:
        """Move the virtual clock ``seconds`` ahead on the loop thread; return once every timer due by then ran."""
        clock = self.virtual_clock
        if clock is None:
            raise RuntimeError("advance needs a broker started with virtual_clock=True")

        async def advance() -> None:
            clock.advance(seconds, self.broker.scheduler)
            if self.broker.scheduler.on_change is not None:
                self.broker.scheduler.on_change()  # the loop timer, for whatever is due next

        assert self.loop is not None
        asyncio.run_coroutine_threadsafe(advance(), self.loop).result(timeout)
