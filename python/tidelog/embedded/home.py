"""One open data directory per process: its broker core and the event loop it runs on.

The core is used from one event loop thread only. A directory opened by the synchronous API
gets a private loop in a daemon thread ("tidelog-<dir>"); one opened from a running event loop
(`tidelog.aio.open`, `serve_async`) lives on that loop. Every later opening of the same
directory in this process (the native API and an in-process server together, or several
handles) shares it; the last close stops it. Calls from other threads or loops hop to the home
loop (`submit`); calls made on the home loop run inline.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import inspect
import logging
import os
import threading
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar, overload

from tidelog.config import BrokerConfig
from tidelog.core.broker import Broker
from tidelog.embedded.appender import Appender
from tidelog.errors import ClosedError
from tidelog.server.listener import Listener

log = logging.getLogger(__name__)

T = TypeVar("T")
# The embedded broker listens nowhere unless serve() asks; port 0 if it does without a port.
DEFAULT_LISTENER = "PLAINTEXT://127.0.0.1:0"

_homes: dict[Path, Home] = {}
_registry_lock = threading.Lock()


def broker_config(path: Path, settings: Mapping[str, str] | None) -> BrokerConfig:
    """Broker settings (Kafka's keys, as `tidelog serve --set`) for a data directory."""
    properties = {"listeners": DEFAULT_LISTENER, **(settings or {}), "log.dirs": str(path)}
    return BrokerConfig.from_properties(properties)


class Home:
    """A started broker core on its loop; shared by every handle on the directory."""

    def __init__(self, path: Path, settings: dict[str, str], broker: Broker, loop: asyncio.AbstractEventLoop) -> None:
        self.path = path
        self.settings = settings
        self.broker = broker
        self.loop = loop
        self.loop_thread_id = threading.get_ident()
        self.thread: threading.Thread | None = None
        self.appender = Appender(broker, loop)
        self.listener: Listener | None = None
        self.users = 0
        self.closed = False

    # ---- calling into the home ---------------------------------------------------------------

    def on_home_loop(self) -> bool:
        try:
            return asyncio.get_running_loop() is self.loop
        except RuntimeError:
            return False

    @overload
    def submit(self, call: Callable[[], Awaitable[T]]) -> concurrent.futures.Future[T]: ...
    @overload
    def submit(self, call: Callable[[], T]) -> concurrent.futures.Future[T]: ...

    def submit(self, call: Callable[[], Any]) -> concurrent.futures.Future[Any]:
        """Runs `call` on the home loop (awaiting what it returns); a future for its result."""
        if self.closed:
            raise ClosedError(f"{self.path} is closed")
        result: concurrent.futures.Future[Any] = concurrent.futures.Future()

        def start() -> None:
            try:
                outcome = call()
            except BaseException as error:
                result.set_exception(error)
                return
            if not inspect.isawaitable(outcome):
                result.set_result(outcome)
                return
            task = asyncio.ensure_future(outcome)
            task.add_done_callback(lambda done: _transfer(done, result))

        self.loop.call_soon_threadsafe(start)
        return result

    @overload
    def call(self, call: Callable[[], Awaitable[T]]) -> T: ...
    @overload
    def call(self, call: Callable[[], T]) -> T: ...

    def call(self, call: Callable[[], Any]) -> Any:
        """`submit`, then waits: for threads other than the home loop's."""
        if threading.get_ident() == self.loop_thread_id:
            raise RuntimeError(
                "the synchronous API would block the event loop that runs this broker; "
                "use tidelog.aio from inside the loop"
            )
        return self.submit(call).result()

    @overload
    async def call_async(self, call: Callable[[], Awaitable[T]]) -> T: ...
    @overload
    async def call_async(self, call: Callable[[], T]) -> T: ...

    async def call_async(self, call: Callable[[], Any]) -> Any:
        """From any running loop: inline on the home loop, else through `submit`."""
        if self.closed:
            raise ClosedError(f"{self.path} is closed")
        if self.on_home_loop():
            outcome = call()
            return await outcome if inspect.isawaitable(outcome) else outcome
        return await asyncio.wrap_future(self.submit(call))

    # ---- closing -----------------------------------------------------------------------------

    async def shutdown(self) -> None:
        """On the home loop: stops the listener (draining), then closes the broker cleanly."""
        if self.listener is not None:
            await self.listener.stop()
            self.listener = None
        await self.appender.drain()
        await self.broker.close()


def _transfer(done: asyncio.Future[Any], result: concurrent.futures.Future[Any]) -> None:
    if done.cancelled():
        result.cancel()
    elif done.exception() is not None:
        result.set_exception(done.exception())
    else:
        result.set_result(done.result())


def _key(path: str | os.PathLike[str]) -> Path:
    resolved = Path(path).resolve()
    resolved.mkdir(parents=True, exist_ok=True)
    return resolved


def _shared(key: Path, settings: dict[str, str]) -> Home | None:
    home = _homes.get(key)
    if home is None:
        return None
    if settings and settings != home.settings:
        raise ValueError(f"{key} is open in this process already, with other settings: {home.settings}")
    home.users += 1
    return home


def acquire(path: str | os.PathLike[str], settings: Mapping[str, str] | None = None) -> Home:
    """The directory's home, started on a private loop thread if it is not open yet."""
    key, wanted = _key(path), dict(settings or {})
    config = broker_config(key, wanted)  # bad settings fail here, in the caller's thread
    with _registry_lock:
        home = _shared(key, wanted)
        if home is not None:
            return home
        home = _start_thread(key, wanted, config)
        home.users = 1
        _homes[key] = home
        return home


async def acquire_async(path: str | os.PathLike[str], settings: Mapping[str, str] | None = None) -> Home:
    """The directory's home; started on the running loop if it is not open yet."""
    key, wanted = _key(path), dict(settings or {})
    config = broker_config(key, wanted)
    with _registry_lock:
        home = _shared(key, wanted)
        if home is not None:
            return home
    # Opening recovers every log: off the loop. (Two first openings racing: the directory lock
    # refuses the second, which reports it.)
    broker = await asyncio.to_thread(Broker.open, config)
    broker.start()
    home = Home(key, wanted, broker, asyncio.get_running_loop())
    home.users = 1
    with _registry_lock:
        _homes[key] = home
    return home


def _start_thread(key: Path, settings: dict[str, str], config: BrokerConfig) -> Home:
    started: concurrent.futures.Future[Home] = concurrent.futures.Future()

    def run() -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            broker = Broker.open(config)
        except BaseException as error:
            started.set_exception(error)
            loop.close()
            return
        home = Home(key, settings, broker, loop)
        loop.call_soon(broker.start)
        loop.call_soon(started.set_result, home)
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(home.shutdown())
            loop.close()

    thread = threading.Thread(target=run, name=f"tidelog-{key.name}", daemon=True)
    thread.start()
    home = started.result()
    home.thread = thread
    return home


def _last_user_leaves(home: Home) -> bool:
    """One user fewer; True for the last one, who then closes it (the home leaves the registry)."""
    with _registry_lock:
        home.users -= 1
        if home.users > 0 or home.closed:
            return False
        home.closed = True
        _homes.pop(home.path, None)
        return True


def release(home: Home) -> None:
    """One user fewer; the last one closes the broker (cleanly: flushed, marked clean)."""
    if not _last_user_leaves(home):
        return
    if home.thread is not None:
        home.loop.call_soon_threadsafe(home.loop.stop)
        home.thread.join()
    elif home.on_home_loop():
        raise RuntimeError("close a handle opened on this event loop with `await handle.aclose()`")
    else:
        asyncio.run_coroutine_threadsafe(home.shutdown(), home.loop).result()


async def release_async(home: Home) -> None:
    if not _last_user_leaves(home):
        return
    if home.thread is not None:
        home.loop.call_soon_threadsafe(home.loop.stop)
        await asyncio.to_thread(home.thread.join)
    elif home.on_home_loop():
        await home.shutdown()
    else:
        await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(home.shutdown(), home.loop))


@atexit.register
def _close_at_exit() -> None:
    """Brokers on private threads are closed cleanly when the interpreter exits."""
    for home in list(_homes.values()):
        if home.thread is not None and not home.closed:
            home.users = 1
            try:
                release(home)
            except Exception:  # at exit, the next start recovers instead
                log.exception("closing %s at exit failed", home.path)
