"""DescribeLogDirs v1-v4 (`kafka-log-dirs`): decode, `Broker.describe_log_dirs`, encode."""

from __future__ import annotations

from itertools import groupby
from typing import TYPE_CHECKING, Any

from kio.schema.errors import ErrorCode

from tidelog.protocol import apis
from tidelog.protocol.apis import ApiKey
from tidelog.protocol.framing import RequestHeader
from tidelog.server.handlers.build import element, make, response
from tidelog.server.handlers.common import NO_THROTTLE

if TYPE_CHECKING:
    from tidelog.server.context import ServerContext


def handle(server: ServerContext, header: RequestHeader, request: Any) -> bytes:
    version = header.api_version
    cls = apis.response_class(ApiKey.DESCRIBE_LOG_DIRS, version)
    result_cls = element(cls, "results")
    topic_cls = element(result_cls, "topics")
    partition_cls = element(topic_cls, "partitions")
    wanted = None if request.topics is None else [(t.topic, t.partitions) for t in request.topics]
    described = server.broker.describe_log_dirs(wanted)
    topics = tuple(
        make(
            topic_cls,
            name=name,
            partitions=tuple(
                make(partition_cls, partition_index=index, partition_size=size, offset_lag=lag, is_future_key=False)
                for _, index, size, lag in partitions
            ),
        )
        for name, partitions in groupby(described.partitions, key=lambda p: p[0])
    )
    result = make(
        result_cls,
        error_code=ErrorCode.none,
        log_dir=described.path,
        topics=topics,
        total_bytes=described.total_bytes,
        usable_bytes=described.usable_bytes,
    )
    return response(
        ApiKey.DESCRIBE_LOG_DIRS, version, throttle_time=NO_THROTTLE, error_code=ErrorCode.none, results=(result,)
    )
