"""The TCP listener: accepts connections, closes idle ones, and stops gracefully."""

from __future__ import annotations

import asyncio
import logging
import time

from tidelog import limits
from tidelog.core.broker import Broker
from tidelog.server.connection import Connection
from tidelog.server.context import ServerContext
from tidelog.server.router import HANDLERS

log = logging.getLogger(__name__)


class Listener:
    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.context = ServerContext(broker)
        self.connections: set[Connection] = set()
        self.server: asyncio.Server | None = None
        self._idle_task: asyncio.Task[None] | None = None

    async def start(self, address: tuple[str, int] | None = None) -> tuple[str, int]:
        """Listens on `address`, or on the configured listener; answers the bound address."""
        host, port = address if address is not None else self.broker.config.listener_address()
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(
            lambda: Connection(self.context, HANDLERS, self.connections), host, port, reuse_address=True, backlog=1024
        )
        self._idle_task = asyncio.create_task(self._close_idle())
        bound = self.server.sockets[0].getsockname()
        if not self.broker.config.advertised_listeners and port != bound[1]:
            self.broker.advertise(host, bound[1])  # port 0: clients are told the port it got
        return bound[0], bound[1]

    async def _close_idle(self) -> None:
        idle_s = self.broker.config.connections_max_idle_ms / 1000
        while True:
            await asyncio.sleep(limits.IDLE_CHECK_INTERVAL_S)
            now = time.monotonic()
            for connection in list(self.connections):
                if now - connection.last_activity > idle_s and not connection.slots:
                    connection.close(f"idle for more than connections.max.idle.ms ({idle_s:.0f} s)")

    async def stop(self) -> None:
        """Stops accepting and reading, lets in-flight requests finish (bounded), then closes
        connections."""
        assert self.server is not None
        self.server.close()
        if self._idle_task is not None:
            self._idle_task.cancel()
        for connection in list(self.connections):
            connection.stop_reading()  # no new requests: clients that keep sending do not hold the drain
        deadline = time.monotonic() + limits.DRAIN_TIMEOUT_S
        while any(c.slots for c in self.connections) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        for connection in list(self.connections):
            if connection.transport is not None:
                connection.transport.close()
        await asyncio.sleep(0)
