"""Metadata v0-13: this broker, and the requested topics with their partitions.

Encoded with kio, then cached by (version, requested topics, auto-create) until the next topic
change, so repeated requests cost a dict lookup.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kio.schema.errors import ErrorCode

from tidelog.protocol import apis
from tidelog.protocol.apis import ApiKey
from tidelog.protocol.framing import RequestHeader
from tidelog.server.handlers.build import element, make
from tidelog.server.handlers.common import NO_THROTTLE, ZERO_UUID
from tidelog.storage import TopicError
from tidelog.storage.log_manager import check_topic_name

if TYPE_CHECKING:
    from tidelog.server.broker import Broker

VERSION_AUTO_CREATE_FLAG = 4


def handle(broker: Broker, header: RequestHeader, request: Any) -> bytes:
    version = header.api_version
    names = None if request.topics is None else tuple((t.name, getattr(t, "topic_id", None)) for t in request.topics)
    auto_create = version < VERSION_AUTO_CREATE_FLAG or request.allow_auto_topic_creation
    key = (ApiKey.METADATA, version, names, auto_create)
    cached = broker.response_cache.get(key)
    if cached is None:
        cached = encode(broker, version, names, auto_create)
        broker.response_cache[key] = cached  # after encode: auto-creation clears the cache
    return cached


def encode(broker: Broker, version: int, names: tuple[tuple[str | None, Any], ...] | None, auto_create: bool) -> bytes:
    cls = apis.response_class(ApiKey.METADATA, version)
    topic_cls = element(cls, "topics")
    topics = []
    for name, topic_id in names if names is not None else ((n, None) for n in sorted(broker.logs.topics)):
        if name is None and topic_id is not None:
            meta = broker.topic_by_id(topic_id)
            name = meta.name if meta else None
        topics.append(describe_topic(broker, topic_cls, name, topic_id, auto_create))
    broker_cls = element(cls, "brokers")
    response = make(
        cls,
        throttle_time=NO_THROTTLE,
        brokers=(make(broker_cls, node_id=broker.node_id, host=broker.host, port=broker.port, rack=None),),
        cluster_id=broker.cluster_id,
        controller_id=broker.node_id,
        topics=tuple(topics),
        error_code=ErrorCode.none,
    )
    return apis.encode_response(ApiKey.METADATA, version, response)


def describe_topic(broker: Broker, topic_cls: type, name: str | None, topic_id: Any, auto_create: bool) -> Any:
    meta = broker.logs.topics.get(name) if name is not None else None
    error = ErrorCode.none
    if meta is None and name is not None:
        try:
            check_topic_name(name)
        except TopicError:
            error = ErrorCode.invalid_topic_exception
        else:
            meta = broker.auto_create(name) if auto_create else None
            if meta is None:
                error = ErrorCode.unknown_topic_or_partition
    elif meta is None:
        error = ErrorCode.unknown_topic_id
    partition_cls = element(topic_cls, "partitions")
    node = (broker.node_id,)
    partitions = tuple(
        make(
            partition_cls,
            error_code=ErrorCode.none,
            partition_index=index,
            leader_id=broker.node_id,
            leader_epoch=0,
            replica_nodes=node,
            isr_nodes=node,
            offline_replicas=(),
        )
        for index in range(meta.partitions if meta else 0)
    )
    return make(
        topic_cls,
        error_code=error,
        name=name,
        topic_id=meta.topic_id if meta else (topic_id or ZERO_UUID),
        is_internal=broker.is_internal(name) if name else False,
        partitions=partitions,
    )
