"""A fault-injecting Kafka proxy: clients talk to it, it talks to the cluster.

It listens on loopback for each broker of the cluster (the bootstrap address first; one more
listener per broker as Metadata, FindCoordinator and DescribeCluster answers name them) and
rewrites those answers so that they name its own listeners: every connection a client makes
after bootstrap comes through it too, against any Kafka-compatible cluster and without
reconfiguring its brokers (no `advertised.listeners` to change). It caps the versions
ApiVersions advertises for the messages it decodes at those kio knows.

Per connection it reads whole frames both ways, keeps their order, and asks its rules what to
do with each request and response (`Rule.on_request`, `Rule.on_response`): forward it, reset
the connection before the request reaches the broker, drop the answer (the request landed; the
client cannot know), delay it, send the request again later (a replay, its answer swallowed),
hold it until an awaitable completes, or replace its bytes. `RandomFaults` is the seeded,
per-API probabilistic rule; the heal switch (`enabled`) turns every healable rule off at once,
and `counters` count what was done, per action and API.

It runs its own event loop in a thread, so blocking clients can be used beside it.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import io
import random
import struct
import threading
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import kio.index
import kio.serial

FRAME_SIZE = struct.Struct(">i")
REQUEST_HEADER = struct.Struct(">hhi")  # api key, api version, correlation id
CORRELATION_ID = struct.Struct(">i")
# Kafka caps a request at socket.request.max.bytes (100 MiB); an answer may be larger.
FRAME_BYTES_MAX = 256 << 20
READY_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 10.0
# Correlation ids of replayed requests (their answers are swallowed): far above a client's.
REPLAY_CORRELATION_ID_BASE = 1 << 30

PRODUCE = 0
FETCH = 1
METADATA = 3
FIND_COORDINATOR = 10
API_VERSIONS = 18
END_TXN = 26
DESCRIBE_CLUSTER = 60
# The answers rewritten to name the proxy's listeners.
ADDRESS_APIS = (METADATA, FIND_COORDINATOR, DESCRIBE_CLUSTER)
# The highest version kio has a schema for is looked up to this bound.
KIO_VERSION_PROBE_MAX = 40

API_NAMES = {
    0: "Produce",
    1: "Fetch",
    2: "ListOffsets",
    3: "Metadata",
    8: "OffsetCommit",
    9: "OffsetFetch",
    10: "FindCoordinator",
    11: "JoinGroup",
    12: "Heartbeat",
    13: "LeaveGroup",
    14: "SyncGroup",
    18: "ApiVersions",
    22: "InitProducerId",
    24: "AddPartitionsToTxn",
    25: "AddOffsetsToTxn",
    26: "EndTxn",
    28: "TxnOffsetCommit",
}


def api_name(api_key: int) -> str:
    return API_NAMES.get(api_key, f"api-{api_key}")


@dataclass
class Request:
    """A client's request as the rules see it. `frame` is the message after the size prefix."""

    connection: int
    api_key: int
    api_version: int
    correlation_id: int
    frame: bytes
    upstream: tuple[str, int]

    def body(self) -> tuple[Any, int]:
        """(the kio request, the offset its body starts at); raises if kio cannot decode it."""
        cls = kio.index.load_request_schema(self.api_key, self.api_version)
        at = REQUEST_HEADER.size
        (client_id_length,) = struct.unpack_from(">h", self.frame, at)
        at += 2 + max(client_id_length, 0)
        if cls.__flexible__:
            at = _skip_tagged_fields(self.frame, at)
        message, _ = kio.serial.entity_reader(cls)(self.frame, at)
        return message, at

    def with_body(self, message: Any) -> bytes:
        """This request's frame with its body replaced by `message` (same header)."""
        _, at = self.body()
        return self.frame[:at] + _encode(message)


@dataclass
class Action:
    """What to do with a request or a response; the default forwards it untouched."""

    reset: bool = False  # request: reset before it reaches the broker; response: drop it and reset
    delay_s: float = 0.0
    replay_after_s: float | None = None  # requests only: send it again this long after
    replay_frame: bytes | None = None  # what the replay sends (default: the request itself)
    hold: Awaitable[object] | None = None  # forwarded once this completes
    frame: bytes | None = None  # replacement bytes (after the size prefix)
    answer: bytes | None = None  # requests only: answer this instead of forwarding
    name: str = ""  # what the counters call it (default: the action's kind)


class Rule(Protocol):
    """A per-request rule. `healable` rules stop when the proxy is healed (`enabled = False`)."""

    healable: bool

    def on_request(self, request: Request) -> Action | None: ...

    def on_response(self, request: Request, frame: bytes) -> Action | None: ...


@dataclass(frozen=True)
class FaultRates:
    """Probabilities, per request, of each fault."""

    reset_before: float = 0.0
    drop_response: float = 0.0
    delay: float = 0.0
    replay: float = 0.0
    delay_max_s: float = 0.05
    replay_after_max_s: float = 0.5


class RandomFaults:
    """Seeded random faults, with rates per API (`per_api`, else `default`)."""

    healable = True

    def __init__(self, default: FaultRates, per_api: dict[int, FaultRates] | None = None, seed: int = 0) -> None:
        self.default = default
        self.per_api = per_api or {}
        self.random = random.Random(seed)

    def rates(self, api_key: int) -> FaultRates:
        return self.per_api.get(api_key, self.default)

    def on_request(self, request: Request) -> Action | None:
        rates = self.rates(request.api_key)
        if self.random.random() < rates.reset_before:
            return Action(reset=True, name="reset")
        if self.random.random() < rates.replay:
            return Action(replay_after_s=self.random.uniform(0, rates.replay_after_max_s), name="replay")
        return None

    def on_response(self, request: Request, frame: bytes) -> Action | None:
        rates = self.rates(request.api_key)
        if self.random.random() < rates.drop_response:
            return Action(reset=True, name="drop")
        if self.random.random() < rates.delay:
            return Action(delay_s=self.random.uniform(0, rates.delay_max_s), name="delay")
        return None


# Verify's default faults (`--faults proxy`): every API may see resets and delays; Produce and
# the transaction APIs also lose answers and are replayed.
DEFAULT_RATES = FaultRates(reset_before=0.002, drop_response=0.002, delay=0.05, delay_max_s=0.1)
REPLAYED_RATES = FaultRates(
    reset_before=0.005, drop_response=0.02, delay=0.1, replay=0.02, delay_max_s=0.1, replay_after_max_s=0.5
)
REPLAYED_APIS = (PRODUCE, 24, 25, END_TXN, 28, 8)


def default_faults(seed: int, replays: bool = True) -> RandomFaults:
    """Verify's faults; without `replays`, requests are never sent twice. A replay stands for a
    client's retry that reaches the broker after a later request: with TV1 (librdkafka) a
    replayed EndTxn or Produce of one transaction can land in the next one, on any broker
    (KAFKA-17754's class), which the checker reports as an aborted or uncommitted read."""
    replayed = REPLAYED_RATES if replays else dataclasses.replace(REPLAYED_RATES, replay=0.0)
    return RandomFaults(DEFAULT_RATES, {api: replayed for api in REPLAYED_APIS}, seed)


class FaultProxy:
    def __init__(
        self,
        upstream: str,
        rules: Sequence[Rule] = (),
        listen_host: str = "127.0.0.1",
        enabled: bool = False,
    ) -> None:
        host, _, port = upstream.rpartition(":")
        self.upstream = (host, int(port))
        self.rules = list(rules)
        self.listen_host = listen_host
        self.enabled = enabled  # the heal switch: False turns the healable rules off
        self.counters: collections.Counter[str] = collections.Counter()
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="fault-proxy", daemon=True)
        self._ready = threading.Event()
        self._servers: dict[tuple[str, int], asyncio.Server] = {}
        self._listen_ports: dict[tuple[str, int], int] = {}
        self._writers: set[asyncio.StreamWriter] = set()
        self._connections = 0
        self._kio_max: dict[int, int] = {}

    @property
    def bootstrap(self) -> str:
        return f"{self.listen_host}:{self.port}"

    def start(self) -> FaultProxy:
        self._thread.start()
        if not self._ready.wait(READY_TIMEOUT_S):
            raise RuntimeError("the proxy did not start")
        return self

    def heal(self) -> None:
        self.enabled = False

    def stop(self) -> None:
        async def shutdown() -> None:
            for server in self._servers.values():
                server.close()
            for writer in list(self._writers):
                writer.transport.abort()

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(STOP_TIMEOUT_S)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(STOP_TIMEOUT_S)

    def total(self, name: str) -> int:
        """How many times an action (`reset`, `drop`, `delay`, `replay`, ...) was done, all APIs."""
        return sum(count for key, count in self.counters.items() if key.split(":")[0] == name)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self.port = self._loop.run_until_complete(self._listen(self.upstream))
        self._ready.set()
        self._loop.run_forever()
        self._loop.close()

    async def _listen(self, upstream: tuple[str, int]) -> int:
        if upstream not in self._listen_ports:

            async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
                await self._serve(reader, writer, upstream)

            server = await asyncio.start_server(serve, self.listen_host, 0)
            self._servers[upstream] = server
            self._listen_ports[upstream] = server.sockets[0].getsockname()[1]
        return self._listen_ports[upstream]

    def _active(self) -> list[Rule]:
        return [rule for rule in self.rules if self.enabled or not rule.healable]

    async def _serve(
        self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter, upstream: tuple[str, int]
    ) -> None:
        self._connections += 1
        connection = self._connections
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*upstream)
        except OSError:  # the broker is down (being restarted): the client sees a reset
            client_writer.transport.abort()
            return
        pair = (client_writer, upstream_writer)
        self._writers.update(pair)
        pending: dict[int, Request] = {}
        replays: set[int] = set()
        tasks = [
            asyncio.ensure_future(
                self._requests(client_reader, upstream_writer, client_writer, pending, replays, connection, upstream)
            ),
            asyncio.ensure_future(self._responses(upstream_reader, client_writer, pending, replays)),
        ]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for writer in pair:
            writer.transport.abort()
            self._writers.discard(writer)
        for task in tasks:
            task.cancel()

    @staticmethod
    async def _frame(reader: asyncio.StreamReader) -> bytes | None:
        try:
            (size,) = FRAME_SIZE.unpack(await reader.readexactly(FRAME_SIZE.size))
            if not 0 <= size <= FRAME_BYTES_MAX:
                return None
            return await reader.readexactly(size)
        except (asyncio.IncompleteReadError, ConnectionError):
            return None

    def _count(self, action: Action, kind: str, api_key: int) -> None:
        self.counters[f"{action.name or kind}:{api_name(api_key)}"] += 1

    async def _requests(
        self,
        reader: asyncio.StreamReader,
        upstream: asyncio.StreamWriter,
        client: asyncio.StreamWriter,
        pending: dict[int, Request],
        replays: set[int],
        connection: int,
        address: tuple[str, int],
    ) -> None:
        next_replay_id = REPLAY_CORRELATION_ID_BASE
        while (frame := await self._frame(reader)) is not None:
            if len(frame) < REQUEST_HEADER.size:
                return
            api_key, api_version, correlation_id = REQUEST_HEADER.unpack_from(frame)
            request = Request(connection, api_key, api_version, correlation_id, frame, address)
            self.counters[f"request:{api_name(api_key)}"] += 1
            action = self._decide_request(request)
            if action.reset:
                self._count(action, "reset", api_key)
                return
            if action.hold is not None:
                self._count(action, "hold", api_key)
                await action.hold
            if action.delay_s:
                self._count(action, "delay", api_key)
                await asyncio.sleep(action.delay_s)
            if action.answer is not None:
                self._count(action, "answer", api_key)
                client.write(FRAME_SIZE.pack(len(action.answer)) + action.answer)
                continue
            if action.frame is not None:
                self._count(action, "rewrite", api_key)
                frame = request.frame = action.frame
            pending[correlation_id] = request
            upstream.write(FRAME_SIZE.pack(len(frame)) + frame)
            if action.replay_after_s is not None:
                self._count(action, "replay", api_key)
                copy = bytearray(action.replay_frame or frame)
                CORRELATION_ID.pack_into(copy, 4, next_replay_id)
                replays.add(next_replay_id)
                next_replay_id += 1
                self._loop.call_later(action.replay_after_s, self._replay, upstream, bytes(copy))

    @staticmethod
    def _replay(upstream: asyncio.StreamWriter, frame: bytes) -> None:
        if not upstream.transport.is_closing():
            upstream.write(FRAME_SIZE.pack(len(frame)) + frame)

    def _decide_request(self, request: Request) -> Action:
        for rule in self._active():
            try:
                action = rule.on_request(request)
            except Exception:
                self.counters[f"rule-error:{api_name(request.api_key)}"] += 1
                continue
            if action is not None:
                return action
        return Action()

    def _decide_response(self, request: Request, frame: bytes) -> Action:
        for rule in self._active():
            try:
                action = rule.on_response(request, frame)
            except Exception:
                self.counters[f"rule-error:{api_name(request.api_key)}"] += 1
                continue
            if action is not None:
                return action
        return Action()

    async def _responses(
        self,
        reader: asyncio.StreamReader,
        client: asyncio.StreamWriter,
        pending: dict[int, Request],
        replays: set[int],
    ) -> None:
        while (frame := await self._frame(reader)) is not None:
            (correlation_id,) = CORRELATION_ID.unpack_from(frame)
            if correlation_id in replays:
                replays.discard(correlation_id)
                continue
            request = pending.pop(correlation_id, None)
            if request is not None:
                action = self._decide_response(request, frame)
                if action.reset:
                    self._count(action, "drop", request.api_key)
                    return
                if action.delay_s:
                    self._count(action, "delay", request.api_key)
                    await asyncio.sleep(action.delay_s)
                if action.frame is not None:
                    self._count(action, "rewrite", request.api_key)
                    frame = action.frame
                frame = await self._rewrite_answer(request, frame)
            client.write(FRAME_SIZE.pack(len(frame)) + frame)

    async def _rewrite_answer(self, request: Request, frame: bytes) -> bytes:
        if request.api_key == API_VERSIONS:
            return self._cap_versions(request, frame)
        if request.api_key not in ADDRESS_APIS:
            return frame
        try:
            response, at = decode_response(request.api_key, request.api_version, frame)
        except Exception:
            self.counters[f"undecoded:{api_name(request.api_key)}"] += 1
            return frame
        rewritten = await self._readdress(response)
        return frame[:at] + _encode(rewritten)

    async def _readdress(self, entity: Any) -> Any:
        """`entity` with every (host, port) naming a broker replaced by the proxy's listener."""
        changes: dict[str, Any] = {}
        names = {f.name for f in dataclasses.fields(entity)}
        if {"host", "port"} <= names and entity.host and entity.port >= 0:
            port = await self._listen((entity.host, int(entity.port)))
            changes["host"], changes["port"] = self.listen_host, type(entity.port)(port)
        for name in names & {"brokers", "coordinators"}:
            changes[name] = tuple([await self._readdress(item) for item in getattr(entity, name)])
        return dataclasses.replace(entity, **changes) if changes else entity

    def _cap_versions(self, request: Request, frame: bytes) -> bytes:
        try:
            response, at = decode_response(API_VERSIONS, request.api_version, frame)
        except Exception:
            return frame
        capped = []
        for key in response.api_keys:
            top = self._kio_version_max(int(key.api_key))
            if top >= 0 and key.max_version > top:
                key = dataclasses.replace(key, max_version=type(key.max_version)(max(top, key.min_version)))
            capped.append(key)
        return frame[:at] + _encode(dataclasses.replace(response, api_keys=tuple(capped)))

    def _kio_version_max(self, api_key: int) -> int:
        """The highest version of `api_key` kio can read (-1: none, or not one we decode)."""
        if api_key not in (*ADDRESS_APIS, PRODUCE, FETCH):
            return -1
        if api_key not in self._kio_max:
            top = -1
            for version in range(KIO_VERSION_PROBE_MAX):
                try:
                    kio.index.load_response_schema(api_key, version)
                    kio.index.load_request_schema(api_key, version)
                except Exception:
                    if top >= 0:
                        break
                    continue
                top = version
            self._kio_max[api_key] = top
        return self._kio_max[api_key]


def decode_response(api_key: int, api_version: int, frame: bytes) -> tuple[Any, int]:
    """(the kio response in `frame`, where its body starts)."""
    cls = kio.index.load_response_schema(api_key, api_version)
    at = CORRELATION_ID.size
    if cls.__flexible__ and api_key != API_VERSIONS:  # ApiVersions answers with header v0
        at = _skip_tagged_fields(frame, at)
    message, _ = kio.serial.entity_reader(cls)(frame, at)
    return message, at


def encode_response_frame(request: Request, message: Any) -> bytes:
    """An answer to `request` holding `message` (for rules that answer in the broker's place)."""
    header = CORRELATION_ID.pack(request.correlation_id)
    if type(message).__flexible__ and request.api_key != API_VERSIONS:
        header += b"\x00"
    return header + _encode(message)


def _encode(message: Any) -> bytes:
    out = io.BytesIO()
    kio.serial.entity_writer(type(message))(out, message)
    return out.getvalue()


def _read_uvarint(data: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, at
        shift += 7


def _skip_tagged_fields(data: bytes, at: int) -> int:
    count, at = _read_uvarint(data, at)
    for _ in range(count):
        _, at = _read_uvarint(data, at)
        size, at = _read_uvarint(data, at)
        at += size
    return at


@dataclass
class Window:
    """A span of time faults were on, for the plots (seconds since the run began)."""

    start: float
    end: float
    kind: str = "proxy"
    detail: dict[str, Any] = field(default_factory=dict)
