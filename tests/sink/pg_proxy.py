"""A TCP proxy in front of PostgreSQL that can cut a connection around a COMMIT.

It reads the frontend protocol (a startup message, then typed messages: one byte, a length)
only to spot a simple Query whose text is COMMIT. Armed with `drop_after_commit`, it forwards
that COMMIT, waits for the server's answer and closes both sides without passing it on: the
transaction happened and the client cannot know. With `drop_before_commit`, it closes without
forwarding: the transaction did not happen. Everything else passes through unchanged.
"""

from __future__ import annotations

import socket
import struct
import threading

ANSWER_WAIT_S = 2.0


class PostgresProxy:
    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self.drop_after_commit = 0  # how many commits to answer with a dropped connection
        self.drop_before_commit = 0
        self.dropped_after = 0
        self.dropped_before = 0
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def dsn(self, database_dsn: str) -> str:
        """`database_dsn` pointed at the proxy."""
        parts = [p for p in database_dsn.split() if not p.startswith("port=")]
        return " ".join([*parts, f"port={self.port}"])

    def close(self) -> None:
        self._closed = True
        self._listener.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.upstream_port))
            armed, answered = threading.Event(), threading.Event()
            threading.Thread(target=self._backward, args=(server, client, armed, answered), daemon=True).start()
            threading.Thread(target=self._forward, args=(client, server, armed, answered), daemon=True).start()

    def _take(self, what: str) -> bool:
        with self._lock:
            if what == "after" and self.drop_after_commit > 0:
                self.drop_after_commit -= 1
                self.dropped_after += 1
                return True
            if what == "before" and self.drop_before_commit > 0:
                self.drop_before_commit -= 1
                self.dropped_before += 1
                return True
        return False

    def _forward(
        self, client: socket.socket, server: socket.socket, armed: threading.Event, answered: threading.Event
    ) -> None:
        buffer = b""
        started = False
        try:
            while True:
                data = client.recv(65536)
                if not data:
                    break
                buffer += data
                while True:
                    if not started:  # the startup message: a length and no type byte
                        if len(buffer) < 4:
                            break
                        (length,) = struct.unpack(">i", buffer[:4])
                        if len(buffer) < length:
                            break
                        server.sendall(buffer[:length])
                        buffer = buffer[length:]
                        started = True
                        continue
                    if len(buffer) < 5:
                        break
                    (length,) = struct.unpack(">i", buffer[1:5])
                    if len(buffer) < 1 + length:
                        break
                    message, buffer = buffer[: 1 + length], buffer[1 + length :]
                    is_commit = message[:1] == b"Q" and message[5:].rstrip(b"\x00").strip().upper() == b"COMMIT"
                    if is_commit and self._take("before"):
                        raise ConnectionAbortedError("dropped before COMMIT")
                    if is_commit and self._take("after"):
                        armed.set()
                        server.sendall(message)
                        answered.wait(ANSWER_WAIT_S)  # the server has committed and answered
                        raise ConnectionAbortedError("dropped after COMMIT")
                    server.sendall(message)
        except OSError:
            pass
        finally:
            for side in (client, server):
                try:
                    side.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                side.close()

    def _backward(
        self, server: socket.socket, client: socket.socket, armed: threading.Event, answered: threading.Event
    ) -> None:
        try:
            while True:
                data = server.recv(65536)
                if not data:
                    break
                if armed.is_set():
                    answered.set()  # the COMMIT's answer, swallowed: the client never sees it
                    return
                client.sendall(data)
        except OSError:
            pass
