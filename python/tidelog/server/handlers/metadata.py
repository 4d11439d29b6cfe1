"""Metadata v0-13: decode, `Broker.describe_topics`, encode.

Encoded answers are cached by (version, requested topics, auto-create) for one metadata epoch
(`ResponseCache`), so repeated requests cost a dict lookup.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kio.schema.errors import ErrorCode

from tidelog.core.types import TopicDescription
from tidelog.protocol import apis
from tidelog.protocol.apis import ApiKey
from tidelog.protocol.framing import RequestHeader
from tidelog.server.handlers.build import element, make
from tidelog.server.handlers.common import NO_THROTTLE

if TYPE_CHECKING:
    from tidelog.server.context import ServerContext

VERSION_AUTO_CREATE_FLAG = 4


def handle(server: ServerContext, header: RequestHeader, request: Any) -> bytes:
    version = header.api_version
    names = None if request.topics is None else tuple((t.name, getattr(t, "topic_id", None)) for t in request.topics)
    auto_create = version < VERSION_AUTO_CREATE_FLAG or request.allow_auto_topic_creation
    key = (ApiKey.METADATA, version, names, auto_create)
    cached = server.responses.get(key)
    if cached is None:
        epoch = server.broker.metadata_epoch
        topics = server.broker.describe_topics(names, auto_create)
        cached = encode(server, version, topics)
        # Kept only if nothing changed meanwhile: an answer that auto-created a topic says
        # UNKNOWN_TOPIC_OR_PARTITION for it, and the next request must see the topic.
        server.responses.put(key, cached, epoch)
    return cached


def encode(server: ServerContext, version: int, topics: list[TopicDescription]) -> bytes:
    broker = server.broker
    cls = apis.response_class(ApiKey.METADATA, version)
    topic_cls = element(cls, "topics")
    partition_cls = element(topic_cls, "partitions")
    encoded_topics = tuple(
        make(
            topic_cls,
            error_code=topic.error,
            name=topic.name,
            topic_id=topic.topic_id,
            is_internal=topic.is_internal,
            partitions=tuple(
                make(
                    partition_cls,
                    error_code=p.error,
                    partition_index=p.partition,
                    leader_id=p.leader,
                    leader_epoch=p.leader_epoch,
                    replica_nodes=p.replicas,
                    isr_nodes=p.isr,
                    offline_replicas=(),
                )
                for p in topic.partitions
            ),
        )
        for topic in topics
    )
    broker_cls = element(cls, "brokers")
    response = make(
        cls,
        throttle_time=NO_THROTTLE,
        brokers=(make(broker_cls, node_id=broker.node_id, host=broker.host, port=broker.port, rack=None),),
        cluster_id=broker.cluster_id,
        controller_id=broker.node_id,
        topics=encoded_topics,
        error_code=ErrorCode.none,
    )
    return apis.encode_response(ApiKey.METADATA, version, response)
