"""Fetch answers go out with sendfile straight to the socket while it takes them, the rest once it
drains: answers bigger than every socket buffer, pipelined behind and before others, to a reader
with a tiny receive window, arrive whole and in request order; a reader that leaves mid-answer
costs nobody else anything."""

from __future__ import annotations

import socket
import struct
import time
from typing import Any

from kio.schema.api_versions.v0.request import ApiVersionsRequest
from kio.schema.errors import ErrorCode

from tests.conftest import make_batch
from tests.server.conftest import BrokerProcess
from tests.server.test_bad_input import create_topic, produce
from tests.server.wire_client import WireClient, encode_request
from tests.transactions.txn_wire import FETCH_VERSION, READ_UNCOMMITTED, TxnClient
from tidelog.protocol.record_batch import iter_batches

BATCHES, RECORDS_PER_BATCH, VALUE_BYTES = 64, 100, 1000  # about 6.5 MB: more than a socket's 4 MiB buffer
FETCH_MAX_BYTES = 16 << 20
# txn_wire's FETCH_VERSION (12) is flexible: tagged fields follow the records, so an answer has
# bytes after its file part.
TINY_RECEIVE_BUFFER = 4096
SOCKET_FILLS_S = 0.3  # time for the broker to fill the socket and wait for it to drain


def fetch_request(topic: str, offset: int) -> Any:
    return TxnClient.fetch_request(
        topic, 0, offset, READ_UNCOMMITTED, max_bytes=FETCH_MAX_BYTES, partition_max_bytes=FETCH_MAX_BYTES
    )


def fill(client: WireClient, topic: str) -> int:
    create_topic(client, topic)
    for tag in range(BATCHES):
        answer = produce(client, topic, make_batch(count=RECORDS_PER_BATCH, value_bytes=VALUE_BYTES, tag=tag))
        assert answer.error_code == ErrorCode.none
    return BATCHES * RECORDS_PER_BATCH


def records_of(answer: Any) -> bytes:
    partition = answer.responses[0].partitions[0]
    assert partition.error_code == ErrorCode.none
    return bytes(partition.records)


def slow_reader(port: int) -> WireClient:
    """A client whose receive window is tiny: the broker's sends fill its socket and wait."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, TINY_RECEIVE_BUFFER)
    sock.settimeout(10)
    sock.connect(("127.0.0.1", port))
    client = WireClient.__new__(WireClient)
    client.sock = sock
    return client


def test_big_fetch_answers_to_a_slow_reader_arrive_whole_and_in_order(broker: BrokerProcess) -> None:
    writer = WireClient(broker.port)
    count = fill(writer, "big")
    expected_all = records_of(writer.request(1, FETCH_VERSION, fetch_request("big", 0)))
    expected_tail = records_of(writer.request(1, FETCH_VERSION, fetch_request("big", count // 2)))
    assert len(expected_all) > 4 << 20  # more than the socket can hold at once

    reader = slow_reader(broker.port)
    reader.send_raw(
        encode_request(1, FETCH_VERSION, fetch_request("big", 0), correlation_id=1)
        + encode_request(18, 0, ApiVersionsRequest(), correlation_id=2)
        + encode_request(1, FETCH_VERSION, fetch_request("big", count // 2), correlation_id=3)
        + encode_request(1, FETCH_VERSION, fetch_request("big", 0), correlation_id=4)
    )
    time.sleep(SOCKET_FILLS_S)
    assert records_of(reader.receive(1, FETCH_VERSION, correlation_id=1)) == expected_all
    assert reader.receive(18, 0, correlation_id=2).error_code == ErrorCode.none
    assert records_of(reader.receive(1, FETCH_VERSION, correlation_id=3)) == expected_tail
    got = records_of(reader.receive(1, FETCH_VERSION, correlation_id=4))
    assert got == expected_all
    offsets = [header.base_offset for header, _ in iter_batches(got)]
    assert offsets == [i * RECORDS_PER_BATCH for i in range(BATCHES)]
    reader.close()
    writer.close()


def test_a_reader_that_leaves_mid_answer_costs_the_others_nothing(broker: BrokerProcess) -> None:
    writer = WireClient(broker.port)
    fill(writer, "left")
    expected = records_of(writer.request(1, FETCH_VERSION, fetch_request("left", 0)))
    for _ in range(3):
        leaver = slow_reader(broker.port)
        leaver.send_raw(encode_request(1, FETCH_VERSION, fetch_request("left", 0)) * 3)
        time.sleep(SOCKET_FILLS_S)
        assert leaver.sock.recv(1000)  # the answer started
        # Gone with a reset: the broker's next send to it fails.
        leaver.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        leaver.close()
    assert records_of(writer.request(1, FETCH_VERSION, fetch_request("left", 0))) == expected
    other = WireClient(broker.port)
    assert records_of(other.request(1, FETCH_VERSION, fetch_request("left", 0))) == expected
    log = broker.log_text()
    assert "Traceback" not in log and "internal error" not in log
    other.close()
    writer.close()
