"""CreateTopics v2-v7. Replication factor must be 1 (or -1 for the default) on one broker."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kio.schema.errors import ErrorCode

from tidelog.config import ConfigError
from tidelog.protocol import apis
from tidelog.protocol.apis import ApiKey
from tidelog.protocol.framing import RequestHeader
from tidelog.server.handlers.build import element, has, make
from tidelog.server.handlers.common import NO_THROTTLE
from tidelog.server.handlers.describe_configs import topic_entries
from tidelog.storage import TopicError
from tidelog.storage.log_manager import check_topic_name

if TYPE_CHECKING:
    from tidelog.server.broker import Broker

USE_DEFAULT = -1


def handle(broker: Broker, header: RequestHeader, request: Any) -> bytes:
    version = header.api_version
    cls = apis.response_class(ApiKey.CREATE_TOPICS, version)
    result_cls = element(cls, "topics")
    results = [
        create_one(broker, result_cls, topic, getattr(request, "validate_only", False)) for topic in request.topics
    ]
    return apis.encode_response(
        ApiKey.CREATE_TOPICS, version, make(cls, throttle_time=NO_THROTTLE, topics=tuple(results))
    )


def refusal(broker: Broker, topic: Any) -> tuple[ErrorCode, str] | None:
    partitions = broker.config.num_partitions if topic.num_partitions == USE_DEFAULT else topic.num_partitions
    if topic.name in broker.logs.topics:
        return ErrorCode.topic_already_exists, f"Topic '{topic.name}' already exists."
    try:
        check_topic_name(topic.name)
    except TopicError as error:
        return ErrorCode.invalid_topic_exception, str(error)
    if topic.assignments:
        return ErrorCode.invalid_request, "manual replica assignment is not supported"
    if topic.replication_factor not in (USE_DEFAULT, 1):
        return (
            ErrorCode.invalid_replication_factor,
            f"replication factor {topic.replication_factor} is larger than the 1 available broker",
        )
    if partitions < 1:
        return ErrorCode.invalid_partitions, f"number of partitions {partitions} must be at least 1"
    try:
        broker.config.topic_defaults.with_overrides({c.name: c.value for c in topic.configs})
    except ConfigError as error:
        return ErrorCode.invalid_config, str(error)
    return None


def failed(result_cls: type, name: str, error: ErrorCode, message: str) -> Any:
    return make(
        result_cls,
        name=name,
        topic_id=None,
        error_code=error,
        error_message=message,
        topic_config_error_code=0,
        num_partitions=-1,
        replication_factor=-1,
        configs=None,
    )


def create_one(broker: Broker, result_cls: type, topic: Any, validate_only: bool) -> Any:
    partitions = broker.config.num_partitions if topic.num_partitions == USE_DEFAULT else topic.num_partitions
    refused = refusal(broker, topic)
    if refused is not None:
        return failed(result_cls, topic.name, *refused)
    configs = {c.name: c.value for c in topic.configs}
    topic_id = None
    if not validate_only:
        try:
            topic_id = broker.create_topic(topic.name, partitions, configs).topic_id
        except TopicError as error:
            return failed(result_cls, topic.name, ErrorCode.invalid_request, str(error))
    entries: tuple[Any, ...] = ()
    if has(result_cls, "configs"):
        config_cls = element(result_cls, "configs")
        config = broker.config.topic_defaults.with_overrides(configs)
        entries = tuple(
            make(config_cls, name=name, value=value, read_only=False, config_source=source, is_sensitive=False)
            for name, value, source in topic_entries(config, configs)
        )
    return make(
        result_cls,
        name=topic.name,
        topic_id=topic_id,
        error_code=ErrorCode.none,
        error_message=None,
        topic_config_error_code=0,
        num_partitions=partitions,
        replication_factor=1,
        configs=entries,
    )
