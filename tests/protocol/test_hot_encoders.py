"""The hand-written Produce and Fetch response encoders give kio's bytes, in every version."""

from __future__ import annotations

import datetime
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kio.schema.errors import ErrorCode

from tidelog.protocol import apis
from tidelog.protocol.apis import ApiKey
from tidelog.protocol.fetch import FetchedPartition, FetchedTopic, encode_fetch_response
from tidelog.protocol.produce import PartitionResult, encode_produce_response
from tidelog.protocol.wire import materialize
from tidelog.server.handlers.build import element, make
from tidelog.server.handlers.common import datetime_from_ms

NO_THROTTLE = datetime.timedelta(0)
errors = st.sampled_from([ErrorCode.none, ErrorCode.corrupt_message, ErrorCode.unknown_topic_or_partition])
offsets = st.integers(-1, 2**40)
names = st.text("abcxyz-._", min_size=1, max_size=12)


@dataclass
class InMemorySlice:
    """Stands in for a storage FileSlice: the encoder only needs size, and materialize read()."""

    data: bytes

    @property
    def size(self) -> int:
        return len(self.data)

    @property
    def position(self) -> int:
        return 0

    def fileno(self) -> int:
        raise NotImplementedError

    def read(self) -> bytes:
        return self.data


partition_results = st.builds(
    PartitionResult,
    index=st.integers(0, 100),
    error_code=errors,
    base_offset=offsets,
    log_append_time_ms=st.sampled_from([-1, 1_700_000_000_123]),
    log_start_offset=offsets,
    error_message=st.none() | st.text(max_size=20),
    record_errors=st.lists(st.tuples(st.integers(0, 5), st.none() | st.text(max_size=10)), max_size=2),
)


@pytest.mark.parametrize("version", range(3, apis.SUPPORTED_VERSIONS[ApiKey.PRODUCE][1] + 1))
@settings(max_examples=30, deadline=None)
@given(topics=st.lists(st.tuples(names, st.lists(partition_results, min_size=1, max_size=3)), max_size=3))
def test_produce_response_matches_kio(version: int, topics: list[tuple[str, list[PartitionResult]]]) -> None:
    cls = apis.response_class(ApiKey.PRODUCE, version)
    topic_cls = element(cls, "responses")
    partition_cls = element(topic_cls, "partition_responses")
    error_cls = (
        element(partition_cls, "record_errors") if "record_errors" in partition_cls.__dataclass_fields__ else None
    )
    reference = make(
        cls,
        throttle_time=NO_THROTTLE,
        responses=tuple(
            make(
                topic_cls,
                name=name,
                partition_responses=tuple(
                    make(
                        partition_cls,
                        index=p.index,
                        error_code=p.error_code,
                        base_offset=p.base_offset,
                        log_append_time=datetime_from_ms(p.log_append_time_ms),
                        log_start_offset=p.log_start_offset,
                        error_message=p.error_message,
                        record_errors=tuple(
                            make(error_cls, batch_index=i, batch_index_error_message=m) for i, m in p.record_errors
                        )
                        if error_cls
                        else (),
                    )
                    for p in partitions
                ),
            )
            for name, partitions in topics
        ),
    )
    assert encode_produce_response(version, topics) == apis.encode_response(ApiKey.PRODUCE, version, reference)


fetched_partitions = st.builds(
    FetchedPartition,
    index=st.integers(0, 100),
    error_code=errors,
    high_watermark=offsets,
    last_stable_offset=offsets,
    log_start_offset=offsets,
    aborted_transactions=st.none() | st.lists(st.tuples(st.integers(0, 1000), offsets), max_size=2),
    records=st.none() | st.binary(min_size=1, max_size=200).map(InMemorySlice),
)


@pytest.mark.parametrize("version", range(4, apis.SUPPORTED_VERSIONS[ApiKey.FETCH][1] + 1))
@settings(max_examples=30, deadline=None)
@given(
    topics=st.lists(
        st.builds(FetchedTopic, name=names, topic_id=st.uuids(), partitions=st.lists(fetched_partitions, max_size=3)),
        max_size=3,
    )
)
def test_fetch_response_matches_kio(version: int, topics: list[FetchedTopic]) -> None:
    cls = apis.response_class(ApiKey.FETCH, version)
    topic_cls = element(cls, "responses")
    partition_cls = element(topic_cls, "partitions")
    aborted_cls = element(partition_cls, "aborted_transactions")
    reference = make(
        cls,
        throttle_time=NO_THROTTLE,
        error_code=ErrorCode.none,
        session_id=0,
        responses=tuple(
            make(
                topic_cls,
                topic=t.name,
                topic_id=t.topic_id,
                partitions=tuple(
                    make(
                        partition_cls,
                        partition_index=p.index,
                        error_code=p.error_code,
                        high_watermark=p.high_watermark,
                        last_stable_offset=p.last_stable_offset,
                        log_start_offset=p.log_start_offset,
                        aborted_transactions=None
                        if p.aborted_transactions is None
                        else tuple(
                            make(aborted_cls, producer_id=pid, first_offset=first)
                            for pid, first in p.aborted_transactions
                        ),
                        preferred_read_replica=-1,
                        records=p.records.data if p.records else b"",
                    )
                    for p in t.partitions
                ),
            )
            for t in topics
        ),
    )
    ours = materialize(encode_fetch_response(version, topics))
    assert ours == apis.encode_response(ApiKey.FETCH, version, reference)
