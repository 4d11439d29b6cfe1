"""CreateTopics v2-v7: decode, `Broker.create_topics`, encode."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tidelog.core.types import NewTopic
from tidelog.protocol import apis
from tidelog.protocol.apis import ApiKey
from tidelog.protocol.framing import RequestHeader
from tidelog.server.handlers.build import element, has, make
from tidelog.server.handlers.common import NO_THROTTLE

if TYPE_CHECKING:
    from tidelog.server.context import ServerContext


def handle(server: ServerContext, header: RequestHeader, request: Any) -> bytes:
    version = header.api_version
    cls = apis.response_class(ApiKey.CREATE_TOPICS, version)
    result_cls = element(cls, "topics")
    new_topics = [
        NewTopic(
            topic.name,
            topic.num_partitions,
            topic.replication_factor,
            {a.partition_index: list(a.broker_ids) for a in topic.assignments} or None,
            {c.name: c.value for c in topic.configs},
        )
        for topic in request.topics
    ]
    created = server.broker.create_topics(new_topics, getattr(request, "validate_only", False))
    config_cls = element(result_cls, "configs") if has(result_cls, "configs") else None
    results = []
    for topic in created:
        ok = topic.error == 0
        configs = None
        if config_cls is not None and ok:
            configs = tuple(
                make(
                    config_cls,
                    name=e.name,
                    value=e.value,
                    read_only=e.read_only,
                    config_source=e.source,
                    is_sensitive=False,
                )
                for e in topic.configs
            )
        results.append(
            make(
                result_cls,
                name=topic.name,
                topic_id=topic.topic_id,
                error_code=topic.error,
                error_message=topic.message,
                topic_config_error_code=0,
                num_partitions=topic.num_partitions,
                replication_factor=topic.replication_factor,
                configs=configs,
            )
        )
    response = make(cls, throttle_time=NO_THROTTLE, topics=tuple(results))
    return apis.encode_response(ApiKey.CREATE_TOPICS, version, response)
