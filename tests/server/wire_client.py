"""A minimal blocking Kafka client for protocol tests: raw frames in and out, kio bodies."""

from __future__ import annotations

import io
import socket
import struct
from typing import Any

import kio.index
import kio.serial

TIMEOUT_S = 10


def encode_request(
    api_key: int, version: int, body: Any, correlation_id: int = 1, client_id: str = "wire-test"
) -> bytes:
    cls = kio.index.load_request_schema(api_key, version)
    out = io.BytesIO()
    kio.serial.entity_writer(cls)(out, body)
    client = client_id.encode()
    header = struct.pack(">hhih", api_key, version, correlation_id, len(client)) + client
    if cls.__flexible__:
        header += b"\x00"
    message = header + out.getvalue()
    return struct.pack(">i", len(message)) + message


class WireClient:
    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT_S)

    def close(self) -> None:
        self.sock.close()

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read_frame(self) -> bytes | None:
        """The next response frame, or None if the broker closed the connection."""
        size_bytes = self._read_exactly(4)
        if size_bytes is None:
            return None
        (size,) = struct.unpack(">i", size_bytes)
        return self._read_exactly(size)

    def _read_exactly(self, count: int) -> bytes | None:
        data = b""
        while len(data) < count:
            try:
                chunk = self.sock.recv(count - len(data))
            except ConnectionResetError:
                return None
            if not chunk:
                return None
            data += chunk
        return data

    def request(self, api_key: int, version: int, body: Any, correlation_id: int = 1) -> Any:
        """Sends one request and decodes its response body with kio."""
        self.send(api_key, version, body, correlation_id)
        return self.receive(api_key, version, correlation_id)

    def send(self, api_key: int, version: int, body: Any, correlation_id: int = 1) -> None:
        """Sends a request without waiting (for requests the broker holds, like JoinGroup)."""
        self.send_raw(encode_request(api_key, version, body, correlation_id))

    def receive(self, api_key: int, version: int, correlation_id: int = 1) -> Any:
        """The next response, decoded; it must answer `correlation_id`."""
        frame = self.read_frame()
        assert frame is not None, "the broker closed the connection"
        (received_id,) = struct.unpack_from(">i", frame)
        assert received_id == correlation_id
        cls = kio.index.load_response_schema(api_key, version)
        at = 5 if cls.__flexible__ and api_key != 18 else 4
        response, _ = kio.serial.entity_reader(cls)(frame, at)
        return response

    def closed_by_broker(self) -> bool:
        """True once the broker has closed its end (reads hit end of stream)."""
        try:
            return self.sock.recv(1 << 16) == b""
        except ConnectionResetError:
            return True
        except TimeoutError:
            return False
