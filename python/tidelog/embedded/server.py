"""The full broker inside the caller's process, on loopback: unmodified Kafka clients
(confluent-kafka, kafka-python, aiokafka, Java) talk to it over TCP. Shares the directory (and
its broker core) with any native handle (`tidelog.open`) opened in this process."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Mapping

from tidelog.embedded import home as homes
from tidelog.server.listener import Listener

LOOPBACK = "127.0.0.1"


class EmbeddedServer:
    """A listening broker: `bootstrap` is the address for clients' `bootstrap.servers`."""

    def __init__(self, home: homes.Home, host: str, port: int, started_s: float) -> None:
        self._home = home
        self.host = host
        self.port = port
        self.path = str(home.path)
        # Start to ready, for the curious (bench/embedded.py reports it).
        self.started_in_s = started_s
        self.closed = False

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def close(self) -> None:
        """Stops listening (in-flight requests finish), then releases the directory."""
        if not self.closed:
            self.closed = True
            self._home.call(self._stop_listening)
            homes.release(self._home)

    async def aclose(self) -> None:
        if not self.closed:
            self.closed = True
            await self._home.call_async(self._stop_listening)
            await homes.release_async(self._home)

    async def _stop_listening(self) -> None:
        listener, self._home.listener = self._home.listener, None
        if listener is not None:
            await listener.stop()

    def __enter__(self) -> EmbeddedServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> EmbeddedServer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"EmbeddedServer(bootstrap={self.bootstrap!r}, path={self.path!r})"


async def _listen(home: homes.Home, host: str, port: int) -> tuple[str, int]:
    if home.listener is not None:
        raise RuntimeError(f"{home.path} is served already, at {home.broker.host}:{home.broker.port}")
    listener = Listener(home.broker)
    home.listener = listener
    try:
        bound_host, bound_port = await listener.start((host, port))
    except BaseException:
        home.listener = None
        raise
    home.broker.advertise(host, bound_port)
    return bound_host, bound_port


def serve(
    path: str | os.PathLike[str], *, port: int = 0, host: str = LOOPBACK, config: Mapping[str, str] | None = None
) -> EmbeddedServer:
    """Starts the broker on `path` in this process (a background thread runs its event loop) and
    listens on `host:port` (port 0: any free port). Returns once clients can connect."""
    started = time.perf_counter()
    home = homes.acquire(path, config)
    try:
        bound_host, bound_port = home.call(lambda: _listen(home, host, port))
    except BaseException:
        homes.release(home)
        raise
    return EmbeddedServer(home, host, bound_port, time.perf_counter() - started)


async def serve_async(
    path: str | os.PathLike[str], *, port: int = 0, host: str = LOOPBACK, config: Mapping[str, str] | None = None
) -> EmbeddedServer:
    """`serve` on the running event loop (the broker shares it)."""
    started = asyncio.get_running_loop().time()
    home = await homes.acquire_async(path, config)
    try:
        _, bound_port = await home.call_async(lambda: _listen(home, host, port))
    except BaseException:
        await homes.release_async(home)
        raise
    return EmbeddedServer(home, host, bound_port, asyncio.get_running_loop().time() - started)
