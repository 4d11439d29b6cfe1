"""Codec micro-benchmarks: our hot-path encoders against kio's, in the same run.

    .venv/bin/pytest bench/bench_protocol.py --benchmark-enable -p no:cacheprovider

The summary prints `ours / kio`: how many times kio's speed our path reaches. Metadata and
ApiVersions answers are cached per (version, request); their "ours" is the cached path.
"""

from __future__ import annotations

import datetime
import io
import uuid
from typing import Any

import pytest
from kio.schema.errors import ErrorCode
from kio.schema.metadata.v12.request import MetadataRequest
from kio.schema.produce.v9.request import PartitionProduceData, ProduceRequest, TopicProduceData
from kio.serial import entity_writer

from tidelog.protocol import apis
from tidelog.protocol.apis import ApiKey
from tidelog.protocol.fetch import FetchedPartition, FetchedTopic, encode_fetch_response
from tidelog.protocol.framing import RequestHeader
from tidelog.protocol.produce import PartitionResult, encode_produce_response
from tidelog.protocol.record_batch import build_batch
from tidelog.server.handlers import api_versions, metadata
from tidelog.server.handlers.build import element, make

PRODUCE_VERSION, FETCH_VERSION, METADATA_VERSION = 9, 12, 12
NO_THROTTLE = datetime.timedelta(0)
METADATA_TOPICS, METADATA_PARTITIONS = 10, 3


class FakeSlice:
    size, position = 16 * 1024, 0


def test_produce_response_ours(benchmark: Any) -> None:
    topics = [("events", [PartitionResult(0, 0, 123_456, -1, 0)])]
    benchmark.extra_info.update(case="ProduceResponse encode", baseline="ProduceResponse encode (kio)")
    benchmark(encode_produce_response, PRODUCE_VERSION, topics)


def test_produce_response_kio(benchmark: Any) -> None:
    cls = apis.response_class(ApiKey.PRODUCE, PRODUCE_VERSION)
    topic_cls = element(cls, "responses")
    partition_cls = element(topic_cls, "partition_responses")

    def encode() -> bytes:
        partition = make(
            partition_cls,
            index=0,
            error_code=ErrorCode.none,
            base_offset=123_456,
            log_append_time=None,
            log_start_offset=0,
            record_errors=(),
            error_message=None,
        )
        response = make(
            cls,
            throttle_time=NO_THROTTLE,
            responses=(make(topic_cls, name="events", partition_responses=(partition,)),),
        )
        return apis.encode_response(ApiKey.PRODUCE, PRODUCE_VERSION, response)

    benchmark.extra_info.update(case="ProduceResponse encode (kio)")
    benchmark(encode)


def test_fetch_response_ours(benchmark: Any) -> None:
    topics = [
        FetchedTopic("events", uuid.uuid4(), [FetchedPartition(p, 0, 10, 10, 0, None, FakeSlice()) for p in range(3)])
    ]  # type: ignore[arg-type]
    benchmark.extra_info.update(
        case="FetchResponse encode (3 partitions, sendfile parts)", baseline="FetchResponse encode (kio)"
    )
    benchmark(encode_fetch_response, FETCH_VERSION, topics)


def test_fetch_response_kio(benchmark: Any) -> None:
    cls = apis.response_class(ApiKey.FETCH, FETCH_VERSION)
    topic_cls = element(cls, "responses")
    partition_cls = element(topic_cls, "partitions")
    records = bytes(16 * 1024)

    def encode() -> bytes:
        partitions = tuple(
            make(
                partition_cls,
                partition_index=p,
                error_code=ErrorCode.none,
                high_watermark=10,
                last_stable_offset=10,
                log_start_offset=0,
                aborted_transactions=None,
                preferred_read_replica=-1,
                records=records,
            )
            for p in range(3)
        )
        response = make(
            cls,
            throttle_time=NO_THROTTLE,
            error_code=ErrorCode.none,
            session_id=0,
            responses=(make(topic_cls, topic="events", partitions=partitions),),
        )
        return apis.encode_response(ApiKey.FETCH, FETCH_VERSION, response)

    benchmark.extra_info.update(case="FetchResponse encode (kio)")
    benchmark(encode)


class StubLogs:
    def __init__(self) -> None:
        self.topics = {
            f"topic-{i}": type(
                "Meta", (), {"name": f"topic-{i}", "topic_id": uuid.uuid4(), "partitions": METADATA_PARTITIONS}
            )()
            for i in range(METADATA_TOPICS)
        }


class StubBroker:
    """Just what the Metadata encoder reads: no logs are opened."""

    def __init__(self) -> None:
        self.logs = StubLogs()
        self.node_id, self.host, self.port, self.cluster_id = 1, "127.0.0.1", 9092, "bench"
        self.response_cache: dict[Any, bytes] = {}

    def topic_by_id(self, topic_id: uuid.UUID) -> None:
        return None


@pytest.fixture
def metadata_request() -> Any:
    return MetadataRequest(topics=None, allow_auto_topic_creation=False, include_topic_authorized_operations=False)


def test_metadata_cached(benchmark: Any, metadata_request: Any) -> None:
    broker = StubBroker()
    header = RequestHeader(ApiKey.METADATA, METADATA_VERSION, 1, "bench", 0)
    metadata.handle(broker, header, metadata_request)  # type: ignore[arg-type]
    benchmark.extra_info.update(
        case=f"Metadata {METADATA_TOPICS}x{METADATA_PARTITIONS} (cached)", baseline="Metadata encode (kio)"
    )
    benchmark(metadata.handle, broker, header, metadata_request)


def test_metadata_kio(benchmark: Any) -> None:
    broker = StubBroker()
    benchmark.extra_info.update(case="Metadata encode (kio)")
    benchmark(metadata.encode, broker, METADATA_VERSION, None, False)


def test_api_versions_cached(benchmark: Any) -> None:
    api_versions.encoded(3)
    benchmark.extra_info.update(case="ApiVersions v3 (cached)", baseline="ApiVersions v3 encode (kio)")
    benchmark(api_versions.encoded, 3)


def test_api_versions_kio(benchmark: Any) -> None:
    benchmark.extra_info.update(case="ApiVersions v3 encode (kio)")
    benchmark(api_versions.encoded.__wrapped__, 3)


def test_produce_request_decode(benchmark: Any) -> None:
    batch = build_batch([(1_700_000_000_000, None, bytes(1024), [])] * 16)
    data = TopicProduceData(name="events", partition_data=(PartitionProduceData(index=0, records=batch),))
    request = ProduceRequest(transactional_id=None, acks=-1, timeout=datetime.timedelta(seconds=30), topic_data=(data,))
    out = io.BytesIO()
    entity_writer(ProduceRequest)(out, request)
    body = out.getvalue()
    benchmark.extra_info.update(case="ProduceRequest v9 decode, 16 KiB (kio)")
    benchmark(apis.decode_request, ApiKey.PRODUCE, PRODUCE_VERSION, body, 0)
