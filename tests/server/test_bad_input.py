"""Bad input: a clear Kafka error for a well-formed request with a bad field, a closed connection
(as Kafka does) for bytes that are not a request; bounded memory; other clients unaffected;
nothing acknowledged lost."""

from __future__ import annotations

import datetime
import os
import random
import struct
import time
from pathlib import Path
from typing import Any

import pytest
from kio.schema.api_versions.v0.request import ApiVersionsRequest
from kio.schema.errors import ErrorCode
from kio.schema.metadata.v12.request import MetadataRequest, MetadataRequestTopic
from kio.schema.produce.v9.request import PartitionProduceData, ProduceRequest, TopicProduceData

from tests.conftest import make_batch, with_attribute_bits
from tests.server.conftest import BrokerProcess, free_port, wait_until
from tests.server.wire_client import WireClient, encode_request
from tidelog.protocol.record_batch import CONTROL_FLAG

TIMEOUT = datetime.timedelta(seconds=5)
AUTO_CREATE_TIMEOUT_S = 10


def produce_request(topic: str, records: bytes, acks: int = -1) -> ProduceRequest:
    data = TopicProduceData(name=topic, partition_data=(PartitionProduceData(index=0, records=records),))
    return ProduceRequest(transactional_id=None, acks=acks, timeout=TIMEOUT, topic_data=(data,))


def create_topic(client: WireClient, topic: str) -> None:
    """Auto-creates `topic` as a client does: Kafka answers the first Metadata request that
    creates it UNKNOWN_TOPIC_OR_PARTITION, and shows the topic from the next one on."""
    request = MetadataRequest(
        topics=(MetadataRequestTopic(topic_id=None, name=topic),),
        allow_auto_topic_creation=True,
        include_topic_authorized_operations=False,
    )
    deadline = time.monotonic() + AUTO_CREATE_TIMEOUT_S
    while client.request(3, 12, request).topics[0].error_code != ErrorCode.none:
        assert time.monotonic() < deadline, f"{topic} was not auto-created"
        time.sleep(0.01)


def produce(client: WireClient, topic: str, records: bytes, acks: int = -1) -> Any:
    response = client.request(0, 9, produce_request(topic, records, acks))
    return response.responses[0].partition_responses[0]


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


BAD_BATCH_ERRORS = {
    "bad crc": (lambda b: b[:-1] + bytes([b[-1] ^ 1]), ErrorCode.corrupt_message),
    "truncated batch": (lambda b: b[:-10], ErrorCode.invalid_record),
    "wrong magic": (lambda b: b[:16] + b"\x01" + b[17:], ErrorCode.invalid_record),
    "two batches": (lambda b: b + b, ErrorCode.invalid_record),
    "control batch": (lambda b: with_attribute_bits(b, CONTROL_FLAG), ErrorCode.corrupt_message),  # CRC first, as Kafka
    "negative length": (lambda b: b[:8] + struct.pack(">i", -7) + b[12:], ErrorCode.corrupt_message),
}


@pytest.mark.parametrize("case", sorted(BAD_BATCH_ERRORS))
def test_a_bad_batch_gets_its_error_code_and_nothing_is_appended(broker: BrokerProcess, case: str) -> None:
    client = WireClient(broker.port)
    create_topic(client, "t")
    good = make_batch(count=3)
    assert produce(client, "t", good).base_offset == 0
    mangle, expected = BAD_BATCH_ERRORS[case]
    answer = produce(client, "t", mangle(good))
    assert answer.error_code == expected
    assert produce(client, "t", good).base_offset == 3, "nothing of the bad batch was appended"
    client.close()


def test_field_errors_unknown_topic_too_large_bad_acks(broker: BrokerProcess) -> None:
    client = WireClient(broker.port)
    assert produce(client, "no-such-topic", make_batch()).error_code == ErrorCode.unknown_topic_or_partition
    create_topic(client, "t")
    assert produce(client, "t", make_batch(count=5, value_bytes=300_000)).error_code == ErrorCode.message_too_large
    assert produce(client, "t", make_batch(), acks=2).error_code == ErrorCode.invalid_required_acks
    client.close()


def test_unsupported_api_versions_version_gets_the_v0_table(broker: BrokerProcess) -> None:
    client = WireClient(broker.port)
    frame = encode_request(18, 0, ApiVersionsRequest())
    client.send_raw(frame[:6] + struct.pack(">h", 99) + frame[8:])  # same bytes, version 99
    answer = client.read_frame()
    assert answer is not None
    correlation_id, error_code, count = struct.unpack_from(">ihi", answer)
    assert (correlation_id, error_code) == (1, ErrorCode.unsupported_version)
    keys = {struct.unpack_from(">h", answer, 10 + 6 * i)[0] for i in range(count)}
    assert {0, 1, 2, 3, 18} <= keys
    client.close()


def garbage_frames() -> dict[str, bytes]:
    metadata = encode_request(
        3, 12, MetadataRequest(topics=None, allow_auto_topic_creation=False, include_topic_authorized_operations=False)
    )
    return {
        "oversize prefix": struct.pack(">i", 200 * 1024 * 1024) + b"x" * 100,
        "negative prefix": struct.pack(">i", -5) + b"x" * 100,
        "http request": b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
        "tls client hello": bytes.fromhex("16030100a5010000a10303") + os.urandom(64),
        "random bytes": struct.pack(">i", 64) + random.Random(3).randbytes(64),
        "unknown api key": struct.pack(">i", 10) + struct.pack(">hhih", 999, 0, 1, -1),
        "unsupported fetch version": struct.pack(">i", 10) + struct.pack(">hhih", 1, 99, 1, -1),
        "produce v2": struct.pack(">i", 10) + struct.pack(">hhih", 0, 2, 1, -1),
        "truncated body": struct.pack(">i", len(metadata) - 4 - 3) + metadata[4:-3],
    }


@pytest.mark.parametrize("case", sorted(garbage_frames()))
def test_bytes_that_are_not_a_request_close_only_that_connection(broker: BrokerProcess, case: str) -> None:
    healthy = WireClient(broker.port)
    create_topic(healthy, "t")
    assert produce(healthy, "t", make_batch()).error_code == ErrorCode.none
    bad = WireClient(broker.port)
    bad.send_raw(garbage_frames()[case])
    deadline = time.monotonic() + 5
    while not bad.closed_by_broker():
        assert time.monotonic() < deadline, "the broker kept the connection open"
    wait_until(lambda: "closing connection from" in broker.log_text())
    assert produce(healthy, "t", make_batch()).base_offset == 3, "other connections keep working"
    healthy.close()


def test_acks_zero_failure_closes_the_connection(broker: BrokerProcess) -> None:
    client = WireClient(broker.port)
    create_topic(client, "t")
    bad = make_batch()[:-1] + b"\x00"
    client.send_raw(encode_request(0, 9, produce_request("t", bad, acks=0)))
    deadline = time.monotonic() + 5
    while not client.closed_by_broker():
        assert time.monotonic() < deadline


def test_slow_frames_are_cut_off_and_claimed_sizes_are_not_allocated(tmp_path: Path) -> None:
    broker = BrokerProcess(tmp_path / "data", free_port(), {"tidelog.frame.deadline.ms": "500"}).start()
    try:
        assert broker.process is not None
        before = rss_kib(broker.process.pid)
        clients = [WireClient(broker.port) for _ in range(20)]
        for client in clients:  # each claims 100 MB and sends a few bytes
            client.send_raw(struct.pack(">i", 100 * 1024 * 1024 - 1) + b"\x00\x03\x00\x0c")
        time.sleep(0.2)
        assert rss_kib(broker.process.pid) - before < 50 * 1024, "claimed sizes were allocated"
        deadline = time.monotonic() + 5
        for client in clients:
            while not client.closed_by_broker():
                assert time.monotonic() < deadline, "a slow frame was not cut off"
        wait_until(lambda: "tidelog.frame.deadline.ms" in broker.log_text())
    finally:
        broker.stop()


def test_nothing_acknowledged_is_lost_after_a_storm_of_bad_input(broker: BrokerProcess) -> None:
    client = WireClient(broker.port)
    create_topic(client, "t")
    acked = [produce(client, "t", make_batch(count=2, tag=i)).base_offset for i in range(20)]
    for data in garbage_frames().values():
        bad = WireClient(broker.port)
        bad.send_raw(data)
        bad.close()
    for mangle, _ in BAD_BATCH_ERRORS.values():
        produce(client, "t", mangle(make_batch()))
    assert acked == list(range(0, 40, 2))
    assert produce(client, "t", make_batch()).base_offset == 40
    client.close()
