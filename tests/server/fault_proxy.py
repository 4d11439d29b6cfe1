"""A fault-injecting TCP proxy between Kafka clients and the broker, for the tests.

The broker advertises the proxy's port (`advertised.listeners`), so every connection a client
makes after bootstrap goes through it. Per connection it reads whole frames both ways and, at
random (seeded), does what networks do to a producer:

- drops a Produce response after the broker appended the batch, and resets the connection (the
  client cannot know whether its batch landed: it must retry, the broker must deduplicate);
- resets a connection before a request reaches the broker;
- delays Produce responses (keeping their order, as TCP does).

It runs its own event loop in a thread, so blocking clients can be used beside it.
"""

from __future__ import annotations

import asyncio
import random
import struct
import threading
from dataclasses import dataclass, field

PRODUCE = 0
FRAME_SIZE = struct.Struct(">i")
REQUEST_HEADER = struct.Struct(">hhi")  # api key, api version, correlation id
READY_TIMEOUT_S = 10


@dataclass
class Faults:
    drop_produce_response: float = 0.0
    reset_before_request: float = 0.0
    delay_produce_response: float = 0.0
    delay_max_s: float = 0.05


@dataclass
class Counters:
    connections: int = 0
    requests: int = 0
    responses_dropped: int = 0
    resets_before_request: int = 0
    responses_delayed: int = 0


@dataclass
class FaultProxy:
    listen_port: int
    upstream_port: int
    seed: int = 0
    faults: Faults = field(default_factory=Faults)
    enabled: bool = False
    counters: Counters = field(default_factory=Counters)

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._ready = threading.Event()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    def start(self) -> FaultProxy:
        self._thread.start()
        if not self._ready.wait(READY_TIMEOUT_S):
            raise AssertionError("the proxy did not start")
        return self

    def stop(self) -> None:
        async def shutdown() -> None:
            if self._server is not None:
                self._server.close()
            for writer in list(self._writers):
                writer.transport.abort()

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(READY_TIMEOUT_S)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(READY_TIMEOUT_S)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(asyncio.start_server(self._serve, "127.0.0.1", self.listen_port))
        self._ready.set()
        self._loop.run_forever()
        self._loop.close()

    def _chance(self, probability: float) -> bool:
        return self.enabled and self._random.random() < probability

    async def _serve(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        self.counters.connections += 1
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:  # the broker is down (being restarted): the client sees a reset
            client_writer.transport.abort()
            return
        pair = (client_writer, upstream_writer)
        self._writers.update(pair)
        produce_ids: set[int] = set()
        requests = asyncio.ensure_future(self._requests(client_reader, upstream_writer, produce_ids, pair))
        responses = asyncio.ensure_future(self._responses(upstream_reader, client_writer, produce_ids, pair))
        await asyncio.wait((requests, responses), return_when=asyncio.FIRST_COMPLETED)
        for writer in pair:
            writer.transport.abort()
            self._writers.discard(writer)
        for task in (requests, responses):
            task.cancel()

    @staticmethod
    async def _frame(reader: asyncio.StreamReader) -> bytes | None:
        try:
            size_bytes = await reader.readexactly(FRAME_SIZE.size)
            (size,) = FRAME_SIZE.unpack(size_bytes)
            return size_bytes + await reader.readexactly(size)
        except (asyncio.IncompleteReadError, ConnectionError):
            return None

    async def _requests(
        self,
        reader: asyncio.StreamReader,
        upstream: asyncio.StreamWriter,
        produce_ids: set[int],
        pair: tuple[asyncio.StreamWriter, ...],
    ) -> None:
        while (frame := await self._frame(reader)) is not None:
            self.counters.requests += 1
            api_key, _, correlation_id = REQUEST_HEADER.unpack_from(frame, FRAME_SIZE.size)
            if self._chance(self.faults.reset_before_request):
                self.counters.resets_before_request += 1
                return
            if api_key == PRODUCE:
                produce_ids.add(correlation_id)
            upstream.write(frame)

    async def _responses(
        self,
        reader: asyncio.StreamReader,
        client: asyncio.StreamWriter,
        produce_ids: set[int],
        pair: tuple[asyncio.StreamWriter, ...],
    ) -> None:
        while (frame := await self._frame(reader)) is not None:
            (correlation_id,) = struct.unpack_from(">i", frame, FRAME_SIZE.size)
            if correlation_id in produce_ids:
                produce_ids.discard(correlation_id)
                if self._chance(self.faults.drop_produce_response):
                    self.counters.responses_dropped += 1
                    return
                if self._chance(self.faults.delay_produce_response):
                    self.counters.responses_delayed += 1
                    await asyncio.sleep(self._random.uniform(0, self.faults.delay_max_s))
            client.write(frame)
