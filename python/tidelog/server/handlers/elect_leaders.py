"""ElectLeaders v0-v2 (`kafka-leader-election`): decode, `Broker.elect_leaders`, encode. One
node: every partition's only replica leads it already."""

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
    cls = apis.response_class(ApiKey.ELECT_LEADERS, version)
    result_cls = element(cls, "replica_election_results")
    partition_cls = element(result_cls, "partition_result")
    wanted = None if request.topic_partitions is None else [(t.topic, t.partitions) for t in request.topic_partitions]
    results = tuple(
        make(
            result_cls,
            topic=topic,
            partition_result=tuple(
                make(partition_cls, partition_id=index, error_code=error, error_message=message)
                for _, index, error, message in answers
            ),
        )
        for topic, answers in groupby(server.broker.elect_leaders(wanted), key=lambda a: a[0])
    )
    return response(
        ApiKey.ELECT_LEADERS,
        version,
        throttle_time=NO_THROTTLE,
        error_code=ErrorCode.none,
        replica_election_results=results,
    )
