"""One client connection: frames in, handlers, responses out in request order.

Reading: bytes accumulate in one buffer; whole frames are cut out and dispatched. A size prefix
that is negative or above `socket.request.max.bytes`, a header or body that does not parse, an
unknown API or version: the connection is closed (as Kafka does) with one log line. Memory
grows only with bytes that arrived, never with a claimed length. A frame must arrive whole
within `tidelog.frame.deadline.ms` of its first byte.

Writing: each request that expects an answer takes a slot in a queue; answers go out strictly in
slot order. All ready answers are joined into one write per read event; record bytes of a fetch
go out with sendfile. Reading pauses while too many requests are unanswered or the socket's
write buffer is full.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import socket
import struct
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from kio.schema.errors import ErrorCode
from kio.serial.errors import SerialError

from tidelog.core.stats import CURRENT_REQUEST
from tidelog.protocol import apis, framing
from tidelog.protocol.wire import Sendable, parts_size
from tidelog.server.handlers import api_versions
from tidelog.server.handlers.common import CLIENT_HOST, CloseConnection
from tidelog.server.metrics import RequestStats, Timed

if TYPE_CHECKING:
    from tidelog.server.context import ServerContext

log = logging.getLogger(__name__)

Parts = list[bytes | Sendable]
HandlerResult = Parts | bytes | None | Awaitable[Parts | bytes | None]
Handler = Callable[["ServerContext", framing.RequestHeader, Any], HandlerResult]
FRAME_HEAD = struct.Struct(">ihh")  # size prefix, api key, api version


class Slot:
    """One answer owed, in request order. `parts` is None while its handler is still running;
    `timed` follows the request for the metrics."""

    __slots__ = ("parts", "task", "timed")

    def __init__(self, timed: Timed) -> None:
        self.parts: Parts | None = None
        self.task: asyncio.Future[Any] | None = None
        self.timed = timed


class Connection(asyncio.Protocol):
    def __init__(self, server: ServerContext, handlers: dict[int, Handler], registry: set[Connection]) -> None:
        self.server = server
        self.handlers = handlers
        self.registry = registry
        self.config = server.config
        self.requests: RequestStats = server.requests
        self.transport: asyncio.Transport | None = None
        self.peer = "?"
        self.client_host = "/?"
        self.buffer = bytearray()
        self.slots: collections.deque[Slot] = collections.deque()
        self.frame_deadline: asyncio.TimerHandle | None = None
        self.pause_reasons: set[str] = set()
        self.sending = False
        self.sendfile_supported = True
        self.socket_fd = -1
        self.closed = False
        self.last_activity = time.monotonic()

    # --- lifecycle -------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's transports are not asyncio subclasses
        host, port = (transport.get_extra_info("peername") or ("?", "?"))[:2]
        self.peer = f"{host}:{port}"
        self.client_host = "/" + self.peer.rsplit(":", 1)[0]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # Record bytes go out with sendfile straight to the socket on asyncio's own selector loop
        # over plain TCP; uvloop has no sendfile (they are copied), and TLS could not take it.
        # (No running loop: a protocol driven by hand, as the frame fuzz tests do; copies too.)
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        self.sendfile_supported = isinstance(loop, asyncio.selector_events.BaseSelectorEventLoop)
        plain = sock is not None and transport.get_extra_info("sslcontext") is None
        self.socket_fd = sock.fileno() if self.sendfile_supported and plain else -1
        self.requests.connections_created += 1
        if len(self.registry) >= self.config.max_connections:
            self.close(f"max.connections {self.config.max_connections} reached")
            return
        self.registry.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.requests.connections_closed += 1
        self.registry.discard(self)
        if self.frame_deadline is not None:
            self.frame_deadline.cancel()
        for slot in self.slots:
            if slot.task is not None:
                slot.task.cancel()
        self.slots.clear()

    def close(self, reason: str) -> None:
        if not self.closed:
            log.warning("closing connection from %s: %s", self.peer, reason)
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    # --- reading ---------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        self.last_activity = time.monotonic()
        self.buffer += data
        consumed = self._dispatch_whole_frames(time.perf_counter())
        if self.closed:
            return
        if consumed:
            del self.buffer[:consumed]
        self._watch_partial_frame()
        self._pump()

    def _dispatch_whole_frames(self, received: float) -> int:
        at = 0
        buffer = self.buffer
        while len(buffer) - at >= 4 and not self.closed:
            (size,) = framing.SIZE_PREFIX.unpack_from(buffer, at)
            if size < framing.HEADER_FIXED.size or size > self.config.socket_request_max_bytes:
                self.close(f"frame size {size} outside [{framing.HEADER_FIXED.size}, socket.request.max.bytes]")
                return at
            if len(buffer) - at - 4 < size:
                break
            with memoryview(buffer) as view:  # one copy out of the buffer, released before it resizes
                frame = bytes(view[at + 4 : at + 4 + size])
            at += 4 + size
            self._dispatch(frame, received)
        return at

    def _watch_partial_frame(self) -> None:
        if not self.buffer:
            if self.frame_deadline is not None:
                self.frame_deadline.cancel()
                self.frame_deadline = None
        elif self.frame_deadline is None:
            loop = asyncio.get_running_loop()
            deadline_s = self.config.tidelog_frame_deadline_ms / 1000
            self.frame_deadline = loop.call_later(deadline_s, self._frame_too_slow)

    def _frame_too_slow(self) -> None:
        self.close(f"frame not complete within tidelog.frame.deadline.ms ({len(self.buffer)} bytes buffered)")

    def _dispatch(self, frame: bytes, received: float) -> None:
        if self.frame_deadline is not None:
            self.frame_deadline.cancel()
            self.frame_deadline = None
        api_key, api_version = framing.HEADER_FIXED.unpack_from(frame, 0)[:2]
        timed = self.requests.received(api_key, api_version, received)
        if api_key == apis.ApiKey.API_VERSIONS and not apis.is_supported(api_key, api_version):
            try:
                header = framing.parse_request_header(frame, flexible=False)
            except framing.FrameError as error:
                self.close(f"malformed ApiVersions header: {error}")
                return
            timed.record.error(ErrorCode.unsupported_version)
            self._answer_now(timed, header, api_versions.unsupported_version_body(), flexible_header=False)
            return
        if not apis.is_supported(api_key, api_version):
            self.close(f"unsupported api key {api_key} version {api_version}")
            return
        try:
            header = framing.parse_request_header(frame, apis.is_flexible(api_key, api_version))
            request = apis.decode_request(api_key, api_version, frame, header.body_offset)
        except (framing.FrameError, SerialError, UnicodeDecodeError, ValueError) as error:
            self.close(f"malformed {apis.ApiKey(api_key).name} v{api_version} request: {error}")
            return
        CLIENT_HOST.set(self.client_host)
        CURRENT_REQUEST.set(timed.record)
        timed.started = time.perf_counter()
        try:
            result = self.handlers[api_key](self.server, header, request)
        except CloseConnection as reason:
            self.close(str(reason))
            return
        except Exception:
            log.exception("handler for %s v%d failed", apis.ApiKey(api_key).name, api_version)
            self.close("internal error")
            return
        flexible = apis.response_is_flexible(api_key, api_version)
        if result is None:  # acks=0: no answer
            timed.ready = now = time.perf_counter()
            self.requests.finished(timed, now, now)
            return
        if isinstance(result, (bytes, list)):
            self._answer_now(timed, header, result, flexible)
            return
        slot = Slot(timed)
        self.slots.append(slot)
        slot.task = asyncio.ensure_future(result)
        slot.task.add_done_callback(lambda task: self._completed(slot, header, flexible, task))
        self._limit_inflight()

    def _answer_now(
        self, timed: Timed, header: framing.RequestHeader, body: Parts | bytes, flexible_header: bool
    ) -> None:
        timed.ready = time.perf_counter()
        slot = Slot(timed)
        slot.parts = self._frame(header, body, flexible_header)
        self.slots.append(slot)
        self._limit_inflight()

    def _completed(self, slot: Slot, header: framing.RequestHeader, flexible: bool, task: asyncio.Future[Any]) -> None:
        if task.cancelled() or self.closed:
            return
        error = task.exception()
        if isinstance(error, CloseConnection):
            self.close(str(error))
            return
        if error is not None:
            log.error("handler for api %d failed", header.api_key, exc_info=error)
            self.close("internal error")
            return
        result = task.result()
        slot.timed.ready = now = time.perf_counter()
        if result is None:  # a handler that decided not to answer (acks=0)
            self.slots.remove(slot)
            self.requests.finished(slot.timed, now, now)
        else:
            slot.parts = self._frame(header, result, flexible)
        self._pump()

    @staticmethod
    def _frame(header: framing.RequestHeader, body: Parts | bytes, flexible_header: bool) -> Parts:
        parts: Parts = [body] if isinstance(body, bytes) else body
        response_header = framing.response_header(header.correlation_id, flexible_header)
        size = len(response_header) + parts_size(parts)
        first = framing.SIZE_PREFIX.pack(size) + response_header
        return [first, *parts]

    # --- writing ---------------------------------------------------------------------------

    def _pump(self) -> None:
        """Writes every ready answer at the head of the queue: answers of bytes only are joined
        into one write; an answer with record bytes in a file goes out at once too while the
        socket takes it (see `_write_now`), and the rest of it, and what follows, once the socket
        drains."""
        if self.sending or self.closed or self.transport is None:
            return
        ready: list[bytes] = []
        written: list[Timed] = []
        try:
            while self.slots and self.slots[0].parts is not None:
                parts = self.slots[0].parts
                if all(isinstance(p, bytes) for p in parts):
                    ready.extend(parts)  # type: ignore[arg-type]
                    written.append(self.slots.popleft().timed)
                    continue
                self._write_joined(ready, written)
                slot = self.slots.popleft()
                started = time.perf_counter()
                rest = self._write_now(parts)
                if rest is not None:
                    self.sending = True
                    asyncio.ensure_future(self._send_rest(slot, parts, rest, started))
                    break
                self.requests.finished(slot.timed, started, time.perf_counter())
            self._write_joined(ready, written)
        except OSError as error:  # the direct sendfile: a reset or closed peer
            self.close(f"send failed: {error}")
            return
        self._limit_inflight()

    def _write_joined(self, ready: list[bytes], written: list[Timed]) -> None:
        if not ready:
            return
        assert self.transport is not None
        started = time.perf_counter()
        self.transport.write(b"".join(ready))
        now = time.perf_counter()
        for timed in written:
            self.requests.finished(timed, started, now)
        ready.clear()
        written.clear()

    def _write_now(self, parts: Parts) -> tuple[int, int] | None:
        """Writes `parts` as far as the socket takes them without waiting: each run of bytes as
        one write, each file part with `os.sendfile` straight to the socket (zero copy) while the
        transport holds nothing unsent, which is what `loop.sendfile` does too, without its
        futures, task and reader pause on every answer. Returns None when all went out, else
        (index of the part, bytes of it already sent)."""
        transport = self.transport
        assert transport is not None
        run: list[bytes] = []
        for index, part in enumerate(parts):
            if isinstance(part, bytes):
                run.append(part)
                continue
            if run:
                transport.write(b"".join(run))
                run.clear()
            if not self.sendfile_supported:  # uvloop: a copy
                transport.write(part.read())
                continue
            sent = self._sendfile_now(part)
            if sent < part.size:
                return index, sent
        if run:
            transport.write(b"".join(run))
        return None

    def _sendfile_now(self, part: Sendable) -> int:
        """Bytes of `part` sendfile put in the socket's buffer before it was full (0 when the
        transport still holds unsent bytes, which go first, or is closing: its socket may be)."""
        assert self.transport is not None
        if self.socket_fd < 0 or self.transport.is_closing() or self.transport.get_write_buffer_size():
            return 0
        sent = 0
        while sent < part.size:
            try:
                count = os.sendfile(self.socket_fd, part.fileno(), part.position + sent, part.size - sent)
            except BlockingIOError:
                break
            except InterruptedError:
                continue
            if count == 0:
                break  # the end of the file: the rest takes the loop's path, which says so
            sent += count
        return sent

    async def _send_rest(self, slot: Slot, parts: Parts, rest: tuple[int, int], started: float) -> None:
        """The rest of an answer the socket did not take at once: the loop's sendfile waits for
        it to drain; what follows goes out directly again while the socket takes it."""
        loop = asyncio.get_running_loop()
        transport = self.transport
        assert transport is not None
        try:
            index, sent = rest
            while not self.closed:
                part = parts[index]
                assert not isinstance(part, bytes)
                await self._send_file_part(loop, transport, part, sent)
                after = self._write_now(parts[index + 1 :])
                if after is None:
                    break
                index, sent = index + 1 + after[0], after[1]
            self.requests.finished(slot.timed, started, time.perf_counter())
        except (OSError, RuntimeError) as error:
            self.close(f"send failed: {error}")
        finally:
            self.sending = False
        self._pump()

    async def _send_file_part(
        self, loop: asyncio.AbstractEventLoop, transport: asyncio.Transport, part: Sendable, skip: int
    ) -> None:
        """The part's bytes after the first `skip`, with the loop's sendfile (it waits for the
        transport's buffer and the socket to drain)."""
        with os.fdopen(part.fileno(), "rb", buffering=0, closefd=False) as file:
            await loop.sendfile(transport, file, part.position + skip, part.size - skip)

    def _limit_inflight(self) -> None:
        limit = self.config.tidelog_inflight_requests_max
        if len(self.slots) >= limit:
            self._pause("inflight")
        elif len(self.slots) <= limit // 2:
            self._resume("inflight")

    def stop_reading(self) -> None:
        """The listener is stopping: no more requests are read; the answers owed still go out."""
        self._pause("stopping")

    def pause_writing(self) -> None:
        self._pause("writing")

    def resume_writing(self) -> None:
        self._resume("writing")

    def _pause(self, reason: str) -> None:
        if not self.pause_reasons and self.transport is not None and not self.closed:
            self.transport.pause_reading()
        self.pause_reasons.add(reason)

    def _resume(self, reason: str) -> None:
        if reason not in self.pause_reasons:
            return
        self.pause_reasons.discard(reason)
        if not self.pause_reasons and self.transport is not None and not self.closed:
            self.transport.resume_reading()
