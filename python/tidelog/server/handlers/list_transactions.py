"""ListTransactions v0-v2: the transactional ids this coordinator holds, filtered by state,
producer id, duration (v1+: running longer than that many ms) and id pattern (v2+, KIP-1152, a
Java regular expression; Python's `re` reads the patterns tools use)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from kio.schema.errors import ErrorCode

from tidelog.coordinator.runtime import now_ms
from tidelog.coordinator.transaction.records import TxnState
from tidelog.protocol import apis
from tidelog.protocol.apis import ApiKey
from tidelog.protocol.framing import RequestHeader
from tidelog.server.handlers.build import element, make, response
from tidelog.server.handlers.common import NO_THROTTLE

if TYPE_CHECKING:
    from tidelog.server.context import ServerContext

STATE_NAMES = {state.kafka_name: state for state in TxnState}
NO_DURATION_FILTER = -1


def handle(server: ServerContext, header: RequestHeader, request: Any) -> bytes:
    version = header.api_version
    state_cls = element(apis.response_class(ApiKey.LIST_TRANSACTIONS, version), "transaction_states")
    unknown = tuple(name for name in request.state_filters if name not in STATE_NAMES)
    wanted_states = {STATE_NAMES[name] for name in request.state_filters if name in STATE_NAMES}
    wanted_ids = set(request.producer_id_filters)
    duration = int(getattr(request, "duration_filter", NO_DURATION_FILTER))
    pattern_text = getattr(request, "transactional_id_pattern", None)
    try:
        pattern = re.compile(pattern_text) if pattern_text else None
    except re.error:
        return response(
            ApiKey.LIST_TRANSACTIONS,
            version,
            throttle_time=NO_THROTTLE,
            error_code=ErrorCode.invalid_regular_expression,
            unknown_state_filters=unknown,
            transaction_states=(),
        )
    error = ErrorCode.none
    if not server.broker.transactions.loaded():
        error = ErrorCode.coordinator_load_in_progress
    now = now_ms()
    states = []
    for metadata in server.broker.transactions.list_transactions():
        stored = metadata.stored
        if wanted_states and stored.state not in wanted_states:
            continue
        if wanted_ids and stored.producer_id not in wanted_ids:
            continue
        if duration >= 0 and (stored.start_ms < 0 or now - stored.start_ms <= duration):
            continue
        if pattern is not None and not pattern.fullmatch(metadata.transactional_id):
            continue
        states.append(
            make(
                state_cls,
                transactional_id=metadata.transactional_id,
                producer_id=stored.producer_id,
                transaction_state=stored.state.kafka_name,
            )
        )
    return response(
        ApiKey.LIST_TRANSACTIONS,
        version,
        throttle_time=NO_THROTTLE,
        error_code=error,
        unknown_state_filters=unknown,
        transaction_states=tuple(states),
    )
