"""Request frames for the fuzz tests: valid ones for every API and version the broker answers
(bodies drawn by Hypothesis from kio's schemas), mutations of them, and a real `Connection`
to feed them to in process.

A frame here is the message after the 4-byte size prefix, as `Connection._dispatch` sees it.
"""

from __future__ import annotations

import asyncio
import io
import os
import random
import struct
import time
import tracemalloc
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import kio.serial
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kio.static.primitive import Records

from tests.conftest import make_batch
from tidelog.config import BrokerConfig
from tidelog.protocol import apis, framing
from tidelog.server.connection import Connection
from tidelog.server.metrics import RequestStats

SEED_TIMESTAMP_MS = 1_700_000_000_000
# Produce's records field: real batches, or any bytes (the broker validates them later).
st.register_type_strategy(
    Records,
    st.one_of(
        st.builds(lambda n: Records(make_batch(count=n, timestamp_ms=SEED_TIMESTAMP_MS)), st.integers(1, 3)),
        st.binary().map(Records),
    ),
)

# Every (api key, version) the broker decodes: the advertised ranges, less Produce v0-2 (refused
# before decoding).
API_VERSIONS: list[tuple[int, int]] = [
    (int(key), version)
    for key, (low, high) in sorted(apis.SUPPORTED_VERSIONS.items())
    for version in range(low, high + 1)
    if apis.is_supported(key, version)
]

# Inputs one frame may grow to in the mutation loop.
FRAME_BYTES_MAX = 64 << 10
# Bytes a decoded request may hold per byte of its frame, plus a constant: kio makes one object
# per element, and an element can be one byte (a struct of tagged fields only). A decoder that
# allocated from a claimed length would blow far past this on small frames.
DECODE_BYTES_PER_FRAME_BYTE_MAX = 512
DECODE_BYTES_CONSTANT = 256 << 10
# One input that takes longer is a hang.
INPUT_SECONDS_MAX = 2.0


def encode_frame(api_key: int, version: int, body: Any, correlation_id: int = 7, client_id: str | None = "f") -> bytes:
    cls = apis.request_class(api_key, version)
    out = io.BytesIO()
    kio.serial.entity_writer(cls)(out, body)
    if client_id is None:
        header = struct.pack(">hhih", api_key, version, correlation_id, -1)
    else:
        raw = client_id.encode()
        header = struct.pack(">hhih", api_key, version, correlation_id, len(raw)) + raw
    if cls.__flexible__:
        header += b"\x00"
    return header + out.getvalue()


def frame_strategy(api_key: int, version: int) -> st.SearchStrategy[bytes]:
    cls = apis.request_class(api_key, version)
    return st.builds(
        encode_frame,
        st.just(api_key),
        st.just(version),
        st.from_type(cls),
        st.integers(-(2**31), 2**31 - 1),
        st.one_of(st.none(), st.text(max_size=20)),
    )


def seed_frames(per_version: int = 3) -> list[bytes]:
    """A few valid frames per API and version, the same on every run (derandomized)."""
    frames: list[bytes] = []
    for api_key, version in API_VERSIONS:
        drawn: list[bytes] = []
        collect = _collector(api_key, version, per_version, drawn)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            collect()
        frames.extend(drawn[-per_version:])
    return frames


def _collector(api_key: int, version: int, per_version: int, drawn: list[bytes]) -> Callable[[], None]:
    @settings(
        max_examples=per_version,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(frame_strategy(api_key, version))
    def collect(frame: bytes) -> None:
        drawn.append(frame)

    return collect  # type: ignore[no-any-return]


# --- mutation -------------------------------------------------------------------------------

INTERESTING = [0, 1, 0x7F, 0x80, 0xFF, 0x7FFF, 0x8000, 0xFFFF, 2**31 - 1, 2**31, 2**32 - 1, 2**63 - 1]


def _uvarint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def mutate(rng: random.Random, frame: bytes, pool: list[bytes]) -> bytes:
    """1-4 byte-level mutations that aim at lengths: interesting integers at any offset (int16
    and int32 lengths, compact lengths as varints), flips, inserts, deletes, cuts, splices. The
    api key and version are kept most of the time so the body reaches its decoder."""
    data = bytearray(frame)
    for _ in range(rng.randint(1, 4)):
        at = rng.randrange(len(data) + 1)
        choice = rng.randrange(10)
        if choice == 0 and data:
            data[min(at, len(data) - 1)] ^= 1 << rng.randrange(8)
        elif choice in (1, 2):
            width = rng.choice((1, 2, 4, 8))
            value = rng.choice(INTERESTING) & ((1 << (8 * width)) - 1)
            data[at : at + width] = value.to_bytes(width, "big")
        elif choice == 3:
            data[at : at + rng.randint(1, 5)] = _uvarint(rng.choice(INTERESTING) & 0xFFFFFFFF)
        elif choice == 4:
            data[at:at] = rng.randbytes(rng.randint(1, 16))
        elif choice == 5 and data:
            del data[at : at + rng.randint(1, 32)]
        elif choice == 6:
            del data[at:]
        elif choice == 7 and data:
            start = rng.randrange(len(data))
            data[at:at] = data[start : start + rng.randint(1, 64)]
        elif choice == 8 and pool:
            other = rng.choice(pool)
            data[at:] = other[rng.randrange(len(other) + 1) :]
        elif data:
            data[min(at, len(data) - 1)] = rng.randrange(256)
    if len(frame) >= 4 and len(data) >= 4 and rng.random() < 0.9:
        data[0:4] = frame[0:4]  # api key and version
    return bytes(data[:FRAME_BYTES_MAX])


# --- a real connection, fed in process --------------------------------------------------------


class RecordingTransport:
    """The transport side of one connection: what was written, whether it was closed."""

    def __init__(self) -> None:
        self.written = bytearray()
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written += data

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 9) if name == "peername" else default

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


@dataclass
class Outcomes:
    """How inputs ended: decoded and handed to the handler, or the connection closed."""

    decoded: int = 0
    closed: int = 0
    largest_ratio: float = 0.0
    by_api: dict[int, int] = field(default_factory=dict)


class FrameTarget:
    """Feeds frames to a real `Connection` whose handlers record the decoded request and answer
    an empty body: everything up to the handler is the broker's own code. The handlers
    themselves are exercised over TCP by test_broker_frames.py."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.config = BrokerConfig()
        self.decoded: list[Any] = []
        self.handlers: dict[int, Callable[..., Any]] = {int(key): self._handle for key in apis.SUPPORTED_VERSIONS}
        self.outcomes = Outcomes()

    def _handle(self, server: Any, header: framing.RequestHeader, request: Any) -> bytes:
        self.decoded.append(request)
        return b""

    def close(self) -> None:
        self.loop.close()

    def run(self, frame: bytes, measure: bool = False) -> None:
        """One frame on a fresh connection. Raises AssertionError on any escape from the
        connection, a hang, a connection left neither answered nor closed, or an allocation
        out of proportion to the frame."""
        server = SimpleNamespace(config=self.config, requests=RequestStats())
        connection = Connection(server, self.handlers, set())  # type: ignore[arg-type]
        transport = RecordingTransport()
        connection.connection_made(transport)  # type: ignore[arg-type]
        self.decoded.clear()
        data = struct.pack(">i", len(frame)) + frame
        started = time.monotonic()
        if measure:
            tracemalloc.reset_peak()
            before = tracemalloc.get_traced_memory()[0]
        try:
            self.loop.run_until_complete(self._feed(connection, data))
        except BaseException as error:
            raise AssertionError(
                f"{type(error).__name__} escaped the connection: {error!r}; frame {frame.hex()}"
            ) from error
        if measure:
            peak = tracemalloc.get_traced_memory()[1] - before
            bound = DECODE_BYTES_PER_FRAME_BYTE_MAX * len(frame) + DECODE_BYTES_CONSTANT
            assert peak <= bound, f"decoding a {len(frame)}-byte frame peaked at {peak} bytes; frame {frame.hex()}"
            self.outcomes.largest_ratio = max(self.outcomes.largest_ratio, peak / max(len(frame), 1))
        elapsed = time.monotonic() - started
        assert elapsed < INPUT_SECONDS_MAX, f"a frame took {elapsed:.1f} s; frame {frame.hex()}"
        answered = len(transport.written) > 0
        assert transport.closed or answered or self.decoded, f"neither answered nor closed; frame {frame.hex()}"
        if transport.closed:
            self.outcomes.closed += 1
        else:
            self.outcomes.decoded += 1
            key = struct.unpack_from(">h", frame)[0]
            self.outcomes.by_api[key] = self.outcomes.by_api.get(key, 0) + 1
        connection.connection_lost(None)

    @staticmethod
    async def _feed(connection: Connection, data: bytes) -> None:
        connection.data_received(data)
        await asyncio.sleep(0)  # let an answer that went through the slot queue out


def mutation_loop(
    target: FrameTarget, seeds: list[bytes], count: int | None, seconds: float | None, seed: int = 0
) -> Iterator[int]:
    """Runs mutants of `seeds` until `count` inputs or `seconds` pass; yields the count every
    10,000 inputs and at the end. Every 64th input is measured with tracemalloc."""
    rng = random.Random(seed)
    pool = list(seeds)
    deadline = None if seconds is None else time.monotonic() + seconds
    done = 0
    while (count is None or done < count) and (deadline is None or time.monotonic() < deadline):
        frame = mutate(rng, rng.choice(pool), pool)
        if os.environ.get("TIDELOG_FUZZ_TRACE"):
            with open(os.environ["TIDELOG_FUZZ_TRACE"], "wb") as trace:
                trace.write(frame)
        target.run(frame, measure=done % 64 == 0)
        if rng.random() < 1 / 32:
            if len(pool) < 4096:
                pool.append(frame)
            else:
                pool[len(seeds) + rng.randrange(4096 - len(seeds))] = frame
        done += 1
        if done % 10_000 == 0:
            yield done
    yield done


def env_seconds() -> float | None:
    value = os.environ.get("TIDELOG_FUZZ_SECONDS")
    return float(value) if value else None
