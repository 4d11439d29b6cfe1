"""DescribeCluster v0-v2: this one broker."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kio.schema.errors import ErrorCode

from tidelog.protocol import apis
from tidelog.protocol.apis import ApiKey
from tidelog.protocol.framing import RequestHeader
from tidelog.server.handlers.build import element, make
from tidelog.server.handlers.common import AUTHORIZED_OPERATIONS_OMITTED, NO_THROTTLE

if TYPE_CHECKING:
    from tidelog.server.context import ServerContext

BROKERS_ENDPOINT = 1


def handle(server: ServerContext, header: RequestHeader, request: Any) -> bytes:
    broker = server.broker
    version = header.api_version
    cls = apis.response_class(ApiKey.DESCRIBE_CLUSTER, version)
    if getattr(request, "endpoint_type", BROKERS_ENDPOINT) != BROKERS_ENDPOINT:
        response = make(
            cls,
            throttle_time=NO_THROTTLE,
            error_code=ErrorCode.unsupported_endpoint_type,
            error_message=None,
            endpoint_type=request.endpoint_type,
            cluster_id=broker.cluster_id,
            controller_id=-1,
            brokers=(),
            cluster_authorized_operations=AUTHORIZED_OPERATIONS_OMITTED,
        )
        return apis.encode_response(ApiKey.DESCRIBE_CLUSTER, version, response)
    node = make(
        element(cls, "brokers"),
        broker_id=broker.node_id,
        host=broker.host,
        port=broker.port,
        rack=None,
        is_fenced=False,
    )
    response = make(
        cls,
        throttle_time=NO_THROTTLE,
        error_code=ErrorCode.none,
        error_message=None,
        endpoint_type=BROKERS_ENDPOINT,
        cluster_id=broker.cluster_id,
        controller_id=broker.node_id,
        brokers=(node,),
        cluster_authorized_operations=AUTHORIZED_OPERATIONS_OMITTED,
    )
    return apis.encode_response(ApiKey.DESCRIBE_CLUSTER, version, response)
